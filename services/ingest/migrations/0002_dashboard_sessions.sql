-- Dashboard login sessions. The browser holds a random session id in an HttpOnly
-- cookie; only its SHA-256 is stored, so a leaked table cannot be replayed. Sessions
-- live in Postgres (not in process memory) so every ingest replica honours them, and
-- a logout or the revocation of the admin token that opened one ends it everywhere.
CREATE TABLE IF NOT EXISTS dashboard_sessions (
    id_hash     TEXT PRIMARY KEY,
    principal   TEXT NOT NULL,            -- the api_tokens name (or 'settings')
    csrf_token  TEXT NOT NULL,            -- must come back in every POST form
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS dashboard_sessions_expires ON dashboard_sessions (expires_at);
