-- A pending reply draft withdrawn before anyone decided it (docs/drafter.md,
-- "Withdrawn drafts"): status SUPERSEDED, and why, so a later YES/NO/EDIT naming it
-- is answered with the reason and nothing is sent.
--   lead_wrote   the lead wrote again; with replaced_by NULL a new draft is coming,
--                then replaced_by names it
--   review       the lead wrote again and that needs a person (manual queue)
--   opted_out    the lead opted out (contact.optout)
--   human_reply  a person answered the lead themselves (SEND, API, dashboard)
--   paused       the thread was paused before the new draft was written
ALTER TABLE drafts ADD COLUMN IF NOT EXISTS withdrawn_reason TEXT
    CHECK (withdrawn_reason IN ('lead_wrote', 'review', 'opted_out', 'human_reply', 'paused'));
-- The drafts of a thread waiting for the draft that will replace them.
CREATE INDEX IF NOT EXISTS drafts_awaiting_replacement ON drafts (thread)
    WHERE withdrawn_reason = 'lead_wrote' AND replaced_by IS NULL;
