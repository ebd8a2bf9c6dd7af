-- The router's slice: one row per routed inbound message, and per-thread
-- controls (pause / opt-out) that must survive restarts.

CREATE TABLE IF NOT EXISTS routing_decisions (
    id                   BIGSERIAL PRIMARY KEY,
    message_sid          TEXT NOT NULL UNIQUE,          -- rule 1: decided once
    thread               TEXT NOT NULL,
    stream_seq           BIGINT NOT NULL,               -- of the inbound.received event
    from_number          TEXT NOT NULL,
    body                 TEXT NOT NULL DEFAULT '',
    num_media            INTEGER NOT NULL DEFAULT 0,
    decision             TEXT NOT NULL,
    rule                 TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('RECEIVED', 'NEEDS_REVIEW', 'DRAFT_PENDING_APPROVAL')),
    keyword              TEXT,                          -- opt-out/opt-in/help keyword as received
    language             TEXT,
    language_confidence  DOUBLE PRECISION,
    sentiment            TEXT,
    sentiment_score      DOUBLE PRECISION,
    intent               TEXT,
    intent_score         DOUBLE PRECISION,
    classifier           TEXT,                          -- 'local' or 'llm'
    received_at          TIMESTAMPTZ,
    decided_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS routing_decisions_thread_seq ON routing_decisions (thread, stream_seq);

-- One row per thread. The row is locked (SELECT ... FOR UPDATE) while a message
-- of the thread is decided, which serialises replicas on a thread; last_seq is
-- the highest inbound.received sequence acted on, so an older message that
-- arrives after a newer one is recorded but not acted on.
CREATE TABLE IF NOT EXISTS thread_controls (
    thread          TEXT PRIMARY KEY,
    number          TEXT NOT NULL,
    paused          BOOLEAN NOT NULL DEFAULT false,
    paused_by       TEXT NOT NULL DEFAULT '',
    paused_reason   TEXT NOT NULL DEFAULT '',
    opted_out       BOOLEAN NOT NULL DEFAULT false,
    consent_keyword TEXT NOT NULL DEFAULT '',
    consent_at      TIMESTAMPTZ,
    last_seq        BIGINT NOT NULL DEFAULT 0,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
