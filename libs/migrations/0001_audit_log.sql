-- Shared, append-only audit trail. Every service writes its own rows.
CREATE TABLE IF NOT EXISTS audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    service     TEXT NOT NULL,
    actor       TEXT NOT NULL CHECK (actor IN ('SYSTEM', 'HUMAN')),
    action      TEXT NOT NULL,
    thread      TEXT,
    details     JSONB NOT NULL DEFAULT '{}'::jsonb,
    trace_id    TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_thread_at ON audit_log (thread, at);

-- Append-only: updates and deletes are refused.
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
