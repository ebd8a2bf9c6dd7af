-- Human takeover (docs/drafter.md, "Human takeover").

-- Every owner alert and prompt carries a ref the owner can answer with
-- ("SEND 1006 <text>", "RESUME 1006"). Drafts have their own refs; a thread without
-- a draft gets one here, from the same sequence, so a ref names one thing.
CREATE TABLE IF NOT EXISTS thread_refs (
    thread      TEXT PRIMARY KEY,
    number      TEXT NOT NULL,
    ref         TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS thread_refs_ref ON thread_refs (ref);

-- Every free-text reply a person sent a lead: who, what, from which channel, and
-- what became of it (the sender's outbound.sent / outbound.failed).
CREATE TABLE IF NOT EXISTS human_replies (
    request_id   TEXT PRIMARY KEY,          -- outbound.human request_id (idempotency)
    thread       TEXT NOT NULL,
    number       TEXT NOT NULL,
    body         TEXT NOT NULL,
    author       TEXT NOT NULL,
    channel      TEXT NOT NULL CHECK (channel IN ('sms', 'api', 'dashboard')),
    notify       TEXT NOT NULL DEFAULT '',  -- the owner number told the delivery result
    ref          TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL DEFAULT 'requested'
                 CHECK (status IN ('requested', 'sent', 'failed', 'refused')),
    error        TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    outcome_at   TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS human_replies_thread ON human_replies (thread, created_at);

-- Lead messages forwarded to the owners while a person answers the thread wait in
-- the manual queue too (resolved by the next human reply).
ALTER TABLE manual_queue DROP CONSTRAINT IF EXISTS manual_queue_reason_check;
ALTER TABLE manual_queue ADD CONSTRAINT manual_queue_reason_check CHECK (reason IN (
    'needs_review', 'rejected', 'llm_failed', 'draft_expired', 'forwarded'));
