-- A fenced lease on each outbox row (see docs/sender.md, "The send lease").
--
-- A worker that drives a row first takes its lease: lease_epoch + 1 (the fencing
-- token), its owner name and lease_until on the database clock. Every write the
-- worker then makes to the row names the epoch it holds, so a worker that lost
-- the lease (its session died, it stalled) changes nothing. While a row is
-- SENDING, lease_until is past the end of the Twilio call (call timeout + margin):
-- no one else may act on the row before the attempt can no longer be in flight.
ALTER TABLE outbound_messages
    ADD COLUMN lease_owner  TEXT,
    ADD COLUMN lease_epoch  BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN lease_until  TIMESTAMPTZ;
