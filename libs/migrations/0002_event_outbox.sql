-- The transactional outbox (libs/event_outbox.py): one table per slice, made by
-- this function so that every slice's table is the same. A slice's migration calls
-- SELECT create_event_outbox('<slice>'); the table is <slice>_event_outbox.
--
-- A row is an event a handler emitted in the same transaction as the rows the event
-- describes. The emitting process publishes it right after the commit (Nats-Msg-Id =
-- msg_id, so JetStream's duplicate window makes publishing twice harmless) and then
-- deletes it; rows a crash left behind are published by the slice's sweeper.
CREATE OR REPLACE FUNCTION create_event_outbox(slice TEXT) RETURNS void AS $$
BEGIN
    IF slice !~ '^[a-z][a-z0-9_]*$' THEN
        RAISE EXCEPTION 'bad slice name %', slice;
    END IF;
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %I ('
        '    id           BIGSERIAL PRIMARY KEY,'
        '    msg_id       TEXT NOT NULL,'
        '    subject      TEXT NOT NULL,'
        '    data         BYTEA NOT NULL,'
        '    traceparent  TEXT,'
        '    created_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()'
        ')',
        slice || '_event_outbox'
    );
END;
$$ LANGUAGE plpgsql;
