-- The drafter's slice: drafts (every version), approvals, AI traces and the
-- manual-intervention queue.

-- Short refs the owner types ("YES 1042"): numeric so they never read as a word,
-- 4 digits for the first 9000 drafts. Unique among pending drafts (index below);
-- after wrapping at 999999 an old decided draft may share a ref with a new one,
-- and lookups prefer the pending one.
CREATE SEQUENCE IF NOT EXISTS draft_ref_seq START 1000 MINVALUE 1000 MAXVALUE 999999 CYCLE;

-- One row per draft version. An edit supersedes the current version and adds the
-- next one; nothing is ever overwritten, so the original AI/template text stays.
CREATE TABLE IF NOT EXISTS drafts (
    id                 BIGSERIAL PRIMARY KEY,
    draft_id           UUID NOT NULL,
    version            INTEGER NOT NULL CHECK (version >= 1),
    ref                TEXT NOT NULL,
    thread             TEXT NOT NULL,
    to_number          TEXT NOT NULL,
    body               TEXT NOT NULL,
    source             TEXT NOT NULL CHECK (source IN ('llm', 'template', 'edit')),
    status             TEXT NOT NULL CHECK (status IN (
                           'DRAFT_PENDING_APPROVAL', 'APPROVED_TO_SEND', 'REJECTED', 'SUPERSEDED')),
    in_reply_to        TEXT NOT NULL DEFAULT '',   -- the lead's inbound MessageSid
    inbound_body       TEXT NOT NULL DEFAULT '',   -- what the lead wrote (thread history)
    inbound_seq        BIGINT NOT NULL DEFAULT 0,  -- stream seq of that inbound (ordering)
    intent             TEXT,
    language           TEXT,
    created_by         TEXT NOT NULL DEFAULT 'SYSTEM',  -- the reviewer, for edits
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    decided_at         TIMESTAMPTZ,
    decided_by         TEXT,
    expires_at         TIMESTAMPTZ,
    expiry_alerted_at  TIMESTAMPTZ,
    UNIQUE (draft_id, version)
);
-- One draft per inbound message, so a redelivered inbound.routed never drafts twice.
CREATE UNIQUE INDEX IF NOT EXISTS drafts_one_per_inbound
    ON drafts (in_reply_to) WHERE version = 1 AND in_reply_to <> '';
CREATE UNIQUE INDEX IF NOT EXISTS drafts_pending_ref
    ON drafts (ref) WHERE status = 'DRAFT_PENDING_APPROVAL';
CREATE INDEX IF NOT EXISTS drafts_thread_created ON drafts (thread, created_at);
CREATE INDEX IF NOT EXISTS drafts_ref ON drafts (ref, created_at);

-- Every decision attempt, accepted or not: who, what, through which channel.
CREATE TABLE IF NOT EXISTS approvals (
    id                 BIGSERIAL PRIMARY KEY,
    decision_event_id  TEXT NOT NULL UNIQUE,   -- draft.decided id: a redelivery is a no-op
    draft_id           UUID,
    version            INTEGER,
    ref                TEXT,
    reviewer           TEXT NOT NULL,
    source             TEXT NOT NULL,          -- sms | api | dashboard
    action             TEXT NOT NULL,          -- approve | reject | edit | unclear
    outcome            TEXT NOT NULL CHECK (outcome IN ('accepted', 'refused', 'clarify')),
    notes              TEXT NOT NULL DEFAULT '',
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS approvals_draft ON approvals (draft_id, created_at);

-- One row per LLM call attempt (a fallback makes two rows for one draft).
CREATE TABLE IF NOT EXISTS ai_traces (
    id                 BIGSERIAL PRIMARY KEY,
    draft_id           UUID,                   -- NULL when every provider failed
    thread             TEXT NOT NULL,
    in_reply_to        TEXT NOT NULL DEFAULT '',
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    ok                 BOOLEAN NOT NULL,
    error              TEXT NOT NULL DEFAULT '',
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    total_tokens       INTEGER NOT NULL DEFAULT 0,
    cost_usd           NUMERIC(14, 8),         -- NULL when the model has no configured price
    latency_ms         INTEGER NOT NULL,
    prompt             TEXT,                   -- only with REPLYLINE_RECORD_PROMPTS=true
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ai_traces_draft ON ai_traces (draft_id);
CREATE INDEX IF NOT EXISTS ai_traces_created ON ai_traces (created_at);

-- Threads a human has to handle: needs-review messages, rejected drafts, LLM
-- failures, expired drafts. Resolved when the thread is resumed (contact.paused
-- with paused=false).
CREATE TABLE IF NOT EXISTS manual_queue (
    id                 BIGSERIAL PRIMARY KEY,
    key                TEXT NOT NULL UNIQUE,   -- idempotency: reason + message or draft
    thread             TEXT NOT NULL,
    number             TEXT NOT NULL,
    reason             TEXT NOT NULL CHECK (reason IN (
                           'needs_review', 'rejected', 'llm_failed', 'draft_expired')),
    detail             TEXT NOT NULL DEFAULT '',
    message_sid        TEXT NOT NULL DEFAULT '',
    draft_id           UUID,
    body               TEXT NOT NULL DEFAULT '',  -- the lead's message
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at        TIMESTAMPTZ,
    resolved_by        TEXT
);
CREATE INDEX IF NOT EXISTS manual_queue_open ON manual_queue (created_at) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS manual_queue_thread ON manual_queue (thread) WHERE resolved_at IS NULL;
