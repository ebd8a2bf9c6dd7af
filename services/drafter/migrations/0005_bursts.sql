-- One draft per burst (docs/drafter.md, "Bursts"): lead messages that arrive close
-- together wait here for the debounce timer, so a restart of the drafter or the
-- scheduler mid-debounce loses nothing; and a lead message that arrives while a
-- reply draft is pending supersedes it.

-- An open burst collects a thread's draftable messages until its timer fires
-- (debounce after the last message, bounded after the first). 'review': a message
-- of the burst needs a person, so nothing of it is drafted; later messages inside
-- the window join it and go to review too.
CREATE TABLE IF NOT EXISTS bursts (
    burst_id     UUID PRIMARY KEY,
    thread       TEXT NOT NULL,
    number       TEXT NOT NULL,                  -- the lead
    status       TEXT NOT NULL CHECK (status IN ('open', 'review', 'drafted', 'dropped', 'closed')),
    first_at     TIMESTAMPTZ NOT NULL,
    last_at      TIMESTAMPTZ NOT NULL,
    fire_at      TIMESTAMPTZ NOT NULL,           -- the debounce timer's current fire_at
    draft_id     UUID,                           -- the draft it became ('drafted')
    reason       TEXT NOT NULL DEFAULT '',       -- why it went to review / was dropped
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    closed_at    TIMESTAMPTZ
);
-- At most one open (or reviewing) burst per thread.
CREATE UNIQUE INDEX IF NOT EXISTS bursts_one_open ON bursts (thread) WHERE status IN ('open', 'review');

CREATE TABLE IF NOT EXISTS burst_messages (
    id           BIGSERIAL PRIMARY KEY,
    message_sid  TEXT NOT NULL UNIQUE,           -- a redelivered inbound.routed joins once
    burst_id     UUID NOT NULL REFERENCES bursts (burst_id),
    body         TEXT NOT NULL DEFAULT '',
    seq          BIGINT NOT NULL DEFAULT 0,      -- inbound stream seq (ordering)
    intent       TEXT,
    language     TEXT,
    decision     TEXT NOT NULL,                  -- the router's: draft | needs_review
    rule         TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS burst_messages_burst ON burst_messages (burst_id, seq, id);

-- Every lead message a draft answers, oldest first (a burst, plus the messages of
-- the drafts it supersedes); inbound_body keeps them joined for the history and
-- the dashboard.
ALTER TABLE drafts ADD COLUMN IF NOT EXISTS lead_messages TEXT[] NOT NULL DEFAULT '{}';
-- The refs of the pending drafts this one replaced (shown in its prompt).
ALTER TABLE drafts ADD COLUMN IF NOT EXISTS replaces_refs TEXT[] NOT NULL DEFAULT '{}';
-- Set on a version SUPERSEDED because the lead wrote again (not by an edit): the
-- draft that replaced it. A decision naming it is answered "replaced by #new".
ALTER TABLE drafts ADD COLUMN IF NOT EXISTS replaced_by UUID;
ALTER TABLE drafts ADD COLUMN IF NOT EXISTS burst_id UUID;
