-- The drafter's read views, version 1 (docs/DESIGN.md, "Reading another slice").
-- Other slices, libs/ and the CLI read the drafter's state only through these, never
-- its tables: the drafter may change drafts / approvals / human_replies as it needs
-- and keeps these columns (names, types, meaning) stable. A change that cannot keep
-- them is a new version (drafter_v2_...) next to v1 until no reader uses v1.

-- Every version of every draft (an edit adds a version; SUPERSEDED = replaced).
CREATE OR REPLACE VIEW drafter_v1_drafts AS
SELECT draft_id, version, ref, thread, to_number, body, source, status, in_reply_to,
       inbound_body, created_by, created_at, decided_at, decided_by
FROM drafts;

-- Every decision attempt on a draft version (accepted, refused or unclear), with the
-- thread of the draft it names (attempts naming no draft version are not listed).
CREATE OR REPLACE VIEW drafter_v1_decisions AS
SELECT a.id, a.draft_id, a.version, a.ref, d.thread, a.reviewer, a.source, a.action, a.outcome,
       a.notes, a.created_at
FROM approvals a
JOIN drafts d ON d.draft_id = a.draft_id AND d.version = a.version;

-- A person's free-text replies to a lead (takeover) and what became of them.
CREATE OR REPLACE VIEW drafter_v1_human_replies AS
SELECT request_id, thread, number, body, author, channel, ref, status, error, created_at
FROM human_replies;
