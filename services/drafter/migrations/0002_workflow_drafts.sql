-- Workflow messages that need the owner's approval (draft.requested from the
-- scheduler) are drafts too: same refs, versions, prompts, expiry and decisions.

ALTER TABLE drafts DROP CONSTRAINT IF EXISTS drafts_source_check;
ALTER TABLE drafts ADD CONSTRAINT drafts_source_check
    CHECK (source IN ('llm', 'template', 'edit', 'workflow'));

-- Carried by every version of a workflow draft, so an edited version still
-- answers the enrollment that asked for it. NULL for replies to inbound messages.
ALTER TABLE drafts ADD COLUMN IF NOT EXISTS request_id TEXT;
ALTER TABLE drafts ADD COLUMN IF NOT EXISTS workflow_enrollment_id TEXT;
ALTER TABLE drafts ADD COLUMN IF NOT EXISTS workflow_step_id TEXT;

-- One draft per draft.requested, so a redelivered request never drafts twice.
CREATE UNIQUE INDEX IF NOT EXISTS drafts_one_per_request
    ON drafts (request_id) WHERE version = 1 AND request_id IS NOT NULL;
