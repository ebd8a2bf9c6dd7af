-- outbound.sent / outbound.failed now commit with the row's final status in one unit
-- (libs/event_outbox.py, the sender_event_outbox table of 0004): the per-row
-- "event is on the bus" flag and the sweep of unpublished outcomes are gone.
--
-- Deploy note: a final row whose event the old code had not published yet (NATS
-- away at the time) is not republished after this migration; stop the old sender
-- only once `SELECT count(*) FROM outbound_messages WHERE NOT event_published` is 0.
DROP INDEX IF EXISTS outbound_messages_open;
ALTER TABLE outbound_messages DROP COLUMN event_published;
-- The sweep's index: rows that may still need a drive.
CREATE INDEX outbound_messages_open ON outbound_messages (updated_at)
    WHERE status IN ('PENDING', 'DEFERRED', 'SENDING', 'UNKNOWN');
