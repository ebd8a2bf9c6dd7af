-- The sender's read views, version 1 (docs/DESIGN.md, "Reading another slice").
-- Other slices, libs/ and the CLI read the sender's state only through these, never
-- its tables: the sender may change outbound_messages / delivery_events as it needs
-- and keeps these columns (names, types, meaning) stable. A change that cannot keep
-- them is a new version (sender_v2_...) next to v1 until no reader uses v1.

-- The outbox: every message the sender accepted, lead-facing or to the owners, and
-- its delivery state (the lease and retry bookkeeping stay private).
CREATE OR REPLACE VIEW sender_v1_outbound AS
SELECT id, kind, to_number, body, media_urls, lead_facing, draft_id, draft_version, request_id,
       in_reply_to, workflow_enrollment_id, status, provider_sid, provider_status, error_code,
       error_message, failure_reason, created_at, updated_at, sent_at
FROM outbound_messages;

-- Twilio's status callbacks, one per message and status.
CREATE OR REPLACE VIEW sender_v1_delivery_events AS
SELECT id, provider_sid, status, error_code, occurred_at
FROM delivery_events;
