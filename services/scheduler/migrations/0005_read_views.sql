-- The scheduler's read views, version 1 (docs/DESIGN.md, "Reading another slice").
-- Other slices, libs/ and the CLI read the scheduler's state only through these, never
-- its tables: the scheduler may change conversation_outcomes as it needs and keeps
-- these columns (names, types, meaning) stable. A change that cannot keep them is a
-- new version (scheduler_v2_...) next to v1 until no reader uses v1.

-- How each conversation ended (one row per thread and ending event).
CREATE OR REPLACE VIEW scheduler_v1_outcomes AS
SELECT id, thread, outcome, reason, decided_by, details, source_event, created_at
FROM conversation_outcomes;
