-- HUMAN_TAKEOVER (docs/router.md, "Human takeover"): a person replied to the lead
-- from the business number, so the AI stops drafting for the thread and new lead
-- messages are forwarded to the owners until the quiet period passes without a
-- human reply (a takeover_quiet timer), or someone resumes the thread.
ALTER TABLE thread_controls ADD COLUMN IF NOT EXISTS takeover_since TIMESTAMPTZ;
ALTER TABLE thread_controls ADD COLUMN IF NOT EXISTS takeover_until TIMESTAMPTZ;
ALTER TABLE thread_controls ADD COLUMN IF NOT EXISTS last_human_reply_at TIMESTAMPTZ;
ALTER TABLE thread_controls ADD COLUMN IF NOT EXISTS takeover_by TEXT NOT NULL DEFAULT '';

ALTER TABLE routing_decisions DROP CONSTRAINT IF EXISTS routing_decisions_status_check;
ALTER TABLE routing_decisions ADD CONSTRAINT routing_decisions_status_check
    CHECK (status IN ('RECEIVED', 'NEEDS_REVIEW', 'DRAFT_PENDING_APPROVAL', 'HUMAN_TAKEOVER'));
