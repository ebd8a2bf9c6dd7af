-- The router's read views, version 1 (docs/DESIGN.md, "Reading another slice").
-- Other slices, libs/ and the CLI read the router's state only through these, never
-- its tables: the router may change routing_decisions / thread_controls as it needs
-- and keeps these columns (names, types, meaning) stable. A change that cannot keep
-- them is a new version (router_v2_...) next to v1 until no reader uses v1.

-- One row per routed lead message (routing_decisions).
CREATE OR REPLACE VIEW router_v1_decisions AS
SELECT id, message_sid, thread, body, decision, rule, status, language, sentiment, intent,
       decided_at
FROM routing_decisions;

-- A thread's pause / opt-out / human-takeover state (thread_controls).
CREATE OR REPLACE VIEW router_v1_threads AS
SELECT thread, number, paused, paused_by, paused_reason, opted_out, consent_keyword, updated_at,
       takeover_since, takeover_until, takeover_by, last_human_reply_at
FROM thread_controls;
