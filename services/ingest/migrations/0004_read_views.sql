-- Ingest's read views, version 1 (docs/DESIGN.md, "Reading another slice").
-- Other slices, libs/ and the CLI read what ingest received only through these, never
-- its tables: ingest may change inbound_messages as it needs and keeps these columns
-- (names, types, meaning) stable. A change that cannot keep them is a new version
-- (ingest_v2_...) next to v1 until no reader uses v1. The raw webhook form, API
-- tokens and dashboard sessions are not exported.

-- One row per lead message received (Twilio MessageSid).
CREATE OR REPLACE VIEW ingest_v1_inbound AS
SELECT message_sid, thread, from_number, to_number, body, num_media, media, received_at
FROM inbound_messages;
