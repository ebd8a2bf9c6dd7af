-- Conversation export (libs/conversation.py): one named query per row kind, each
-- answering the same columns so they can be UNION ALLed and sorted by time:
--   at, thread (digits, no '+'), kind, ord (tie-break within one instant),
--   id, body, status, actor, version, ref, error_code, details (jsonb).
-- Each kind reads only the slices' versioned read views (ingest_v1_inbound,
-- router_v1_decisions, drafter_v1_*, sender_v1_*, scheduler_v1_outcomes; docs/DESIGN.md,
-- "Reading another slice"), never their tables, plus the shared audit_log.
-- A kind is listed in conversation.KINDS with the relations it reads; a kind whose
-- relations are missing or not readable is left out (and said so), never fails the export.
-- Only the reader's filters are applied outside (thread, time range, outcome).

-- name: kind_inbound
SELECT i.received_at AS at, i.thread, 'inbound'::text AS kind, 10 AS ord,
       'inbound:' || i.message_sid AS id, i.body, coalesce(rd.status, 'RECEIVED') AS status,
       i.from_number AS actor, NULL::integer AS version, NULL::text AS ref, NULL::integer AS error_code,
       jsonb_strip_nulls(jsonb_build_object(
           'message_sid', i.message_sid, 'num_media', i.num_media, 'media', i.media,
           'rule', rd.rule, 'decision', rd.decision, 'language', rd.language,
           'sentiment', rd.sentiment, 'intent', rd.intent)) AS details
FROM ingest_v1_inbound i
LEFT JOIN router_v1_decisions rd ON rd.message_sid = i.message_sid

-- name: kind_draft
SELECT d.created_at, d.thread, 'draft', 20,
       'draft:' || d.draft_id || ':' || d.version, d.body, d.status,
       d.created_by, d.version, d.ref, NULL::integer,
       jsonb_strip_nulls(jsonb_build_object(
           'draft_id', d.draft_id::text, 'source', d.source, 'in_reply_to', nullif(d.in_reply_to, ''),
           'decided_at', d.decided_at, 'decided_by', d.decided_by))
FROM drafter_v1_drafts d

-- name: kind_decision
-- Every decision attempt on a draft version (accepted, refused or unclear).
SELECT a.created_at, a.thread, 'decision', 30,
       'decision:' || a.id, a.notes, a.action,
       a.reviewer, a.version, a.ref, NULL::integer,
       jsonb_build_object('draft_id', a.draft_id::text, 'outcome', a.outcome, 'source', a.source)
FROM drafter_v1_decisions a

-- name: kind_outbound
-- Lead-facing messages only: owner prompts and alerts are not part of the conversation.
SELECT o.created_at, ltrim(o.to_number, '+'), 'outbound', 40,
       'outbound:' || o.id, o.body, o.status,
       'SYSTEM', o.draft_version, NULL::text, o.error_code,
       jsonb_strip_nulls(jsonb_build_object(
           'kind', o.kind, 'provider_sid', o.provider_sid, 'provider_status', o.provider_status,
           'error_message', o.error_message, 'failure_reason', o.failure_reason,
           'sent_at', o.sent_at, 'draft_id', o.draft_id, 'workflow_enrollment_id', o.workflow_enrollment_id))
FROM sender_v1_outbound o
WHERE o.lead_facing

-- name: kind_delivery
-- Twilio's status callbacks for those messages (queued, sent, delivered, undelivered, failed).
SELECT e.occurred_at, ltrim(o.to_number, '+'), 'delivery', 50,
       'delivery:' || e.id, ''::text, e.status,
       'TWILIO', o.draft_version, NULL::text, e.error_code,
       jsonb_build_object('provider_sid', e.provider_sid, 'outbound_id', o.id::text)
FROM sender_v1_delivery_events e
JOIN sender_v1_outbound o ON o.provider_sid = e.provider_sid
WHERE o.lead_facing

-- name: kind_takeover
-- Who took the thread from automation and gave it back. Read from the audit log, so
-- every service's rows count: pauses and resumes today, takeover / hand-back actions
-- of the takeover state as they are added (any action naming them matches).
SELECT a.at, ltrim(a.thread, '+'), 'takeover', 60,
       'audit:' || a.id, coalesce(a.details ->> 'reason', ''), a.action,
       a.actor, NULL::integer, NULL::text, NULL::integer,
       a.details || jsonb_build_object('service', a.service)
FROM audit_log a
WHERE a.thread IS NOT NULL AND a.thread <> ''
  AND a.action ~ '(paused|resumed|takeover|take_over|taken_over|handback|hand_back|handed_back|released)'

-- name: kind_outcome
SELECT c.created_at, c.thread, 'outcome', 70,
       'outcome:' || c.id, c.reason, c.outcome,
       c.decided_by, NULL::integer, NULL::text, NULL::integer,
       c.details || jsonb_build_object('source_event', c.source_event)
FROM scheduler_v1_outcomes c

-- name: readable_tables
SELECT t FROM unnest($1::text[]) AS t
WHERE to_regclass(t) IS NOT NULL AND has_table_privilege(t, 'SELECT');
