-- A retried webhook whose first attempt committed but could not publish looks its
-- leftover outbox rows up by msg_id (EventOutbox.publish_pending) before its 200.
-- During a long NATS outage the table grows with every webhook: without this index
-- each retry would scan all of it.
CREATE INDEX IF NOT EXISTS ingest_event_outbox_msg_id ON ingest_event_outbox (msg_id);
