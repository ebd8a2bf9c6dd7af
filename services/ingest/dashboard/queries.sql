-- What the dashboard reads of other services' slices: only their versioned read views
-- (router_v1_*, drafter_v1_*, sender_v1_*; docs/DESIGN.md, "Reading another slice"),
-- never their tables. Each query may fail with "undefined table" when that service is
-- not deployed or not migrated yet, or with "insufficient privilege" under per-service
-- roles: the dashboard then shows the section as unavailable instead of failing the
-- page (see reads.py).

-- name: recent_threads
SELECT ltrim(thread, '+') AS thread, max(at) AS last_at, count(*) AS entries
FROM audit_log
WHERE thread IS NOT NULL AND thread <> ''
GROUP BY 1
ORDER BY last_at DESC
LIMIT $1;

-- name: latest_routing
SELECT DISTINCT ON (thread) thread, status, rule, decided_at AS at
FROM router_v1_decisions WHERE thread = ANY($1::text[])
ORDER BY thread, decided_at DESC, id DESC;

-- name: latest_drafts
SELECT DISTINCT ON (thread) thread, status, ref, coalesce(decided_at, created_at) AS at
FROM drafter_v1_drafts WHERE thread = ANY($1::text[]) AND status <> 'SUPERSEDED'
ORDER BY thread, created_at DESC, version DESC;

-- name: latest_outbound
SELECT DISTINCT ON (to_number) ltrim(to_number, '+') AS thread, status, updated_at AS at
FROM sender_v1_outbound WHERE lead_facing AND to_number = ANY($1::text[])
ORDER BY to_number, updated_at DESC;

-- name: controls_for
SELECT thread, number, paused, paused_by, paused_reason, opted_out, consent_keyword, updated_at,
       takeover_since, takeover_until, takeover_by
FROM router_v1_threads WHERE thread = ANY($1::text[]);

-- name: paused_threads
SELECT thread, number, paused, paused_by, paused_reason, opted_out, consent_keyword, updated_at
FROM router_v1_threads WHERE paused OR opted_out
ORDER BY updated_at DESC
LIMIT $1;

-- name: pending_drafts
-- Only when the drafter does not answer over NATS: show what is pending anyway.
SELECT draft_id::text AS draft_id, ref, version, thread, to_number, body, source, inbound_body, created_at
FROM drafter_v1_drafts WHERE status = 'DRAFT_PENDING_APPROVAL'
ORDER BY created_at
LIMIT $1;

-- name: audit_for_thread
SELECT at, service, actor, action, details
FROM audit_log WHERE thread IN ($1, '+' || $1)
ORDER BY at, id;

-- name: routing_for_thread
SELECT message_sid, body, rule, decision, status, language, sentiment, intent, decided_at
FROM router_v1_decisions WHERE thread = $1
ORDER BY decided_at, id;

-- name: drafts_for_thread
SELECT draft_id::text AS draft_id, ref, version, status, source, body, created_by, created_at,
       decided_at, decided_by
FROM drafter_v1_drafts WHERE thread = $1
ORDER BY created_at, version;

-- name: outbound_for_thread
SELECT kind, body, status, provider_status, error_code, failure_reason, created_at, sent_at,
       request_id
FROM sender_v1_outbound WHERE to_number = '+' || $1
ORDER BY created_at;

-- name: human_replies_for_thread
SELECT request_id, author, channel, created_at FROM drafter_v1_human_replies WHERE thread = $1;
