-- Each dashboard session remembers which credential opened it (the SHA-256 of the
-- admin token, as api_tokens.token_hash stores it), so it ends when that credential
-- stops being valid: a revoked database token, or a rotated bootstrap
-- REPLYLINE_API_TOKEN (whose hash no longer equals the current setting's).
-- Sessions opened before this column existed have none and are no longer accepted.
ALTER TABLE dashboard_sessions ADD COLUMN IF NOT EXISTS credential_hash TEXT;
