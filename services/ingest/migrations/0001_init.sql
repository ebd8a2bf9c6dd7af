-- Ingest's slice: raw inbound webhooks and owner API tokens.

-- One row per Twilio MessageSid, committed only after inbound.received was acked
-- by JetStream, so a row here means the event is in the stream.
CREATE TABLE IF NOT EXISTS inbound_messages (
    id                    BIGSERIAL PRIMARY KEY,
    message_sid           TEXT NOT NULL UNIQUE,
    account_sid           TEXT NOT NULL DEFAULT '',
    messaging_service_sid TEXT NOT NULL DEFAULT '',
    from_number           TEXT NOT NULL,
    to_number             TEXT NOT NULL DEFAULT '',
    thread                TEXT NOT NULL,
    body                  TEXT NOT NULL DEFAULT '',
    num_media             INTEGER NOT NULL DEFAULT 0,
    media                 JSONB NOT NULL DEFAULT '[]'::jsonb,
    -- The whole form exactly as Twilio posted it, including fields added without notice.
    raw                   JSONB NOT NULL,
    event_id              TEXT NOT NULL,
    stream_seq            BIGINT,
    received_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS inbound_messages_thread_received
    ON inbound_messages (thread, received_at);

-- Bearer tokens for the owner API and the lead webhook; only a SHA-256 of the
-- token is kept (tokens are 256-bit random, so a slow hash adds nothing).
CREATE TABLE IF NOT EXISTS api_tokens (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    token_hash    TEXT NOT NULL UNIQUE,
    scope         TEXT NOT NULL CHECK (scope IN ('admin', 'leads')),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);
