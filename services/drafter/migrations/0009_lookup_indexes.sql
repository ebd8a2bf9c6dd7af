-- Plain indexes for the per-message lookups. The partial unique indexes of 0001/0002
-- (in_reply_to <> '', request_id IS NOT NULL) cannot serve asyncpg's prepared statements
-- once Postgres switches them to a generic plan (it cannot prove a parameter is not ''),
-- so draft_for_inbound and draft_for_request fell back to sequential scans of drafts.
CREATE INDEX IF NOT EXISTS drafts_in_reply_to ON drafts (in_reply_to);
CREATE INDEX IF NOT EXISTS drafts_request_id ON drafts (request_id);
-- A thread's pending drafts: without it the planner may walk drafts_pending_ref (every
-- pending draft of every thread) and filter by thread.
CREATE INDEX IF NOT EXISTS drafts_pending_thread ON drafts (thread) WHERE status = 'DRAFT_PENDING_APPROVAL';
