-- name: next_ref
SELECT nextval('draft_ref_seq')::text;

-- name: insert_draft
INSERT INTO drafts (draft_id, version, ref, thread, to_number, body, source, status,
                    in_reply_to, inbound_body, intent, language, created_by, expires_at,
                    inbound_seq, request_id, workflow_enrollment_id, workflow_step_id,
                    sms_prompted, lead_messages, replaces_refs, burst_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'DRAFT_PENDING_APPROVAL', $8, $9, $10, $11, $12, $13, $14,
        $15, $16, $17, $18, $19, $20, $21)
RETURNING *;

-- name: lock_thread
-- Serialises drafting per thread across replicas until the transaction ends.
SELECT pg_advisory_xact_lock(hashtext('drafter:' || $1));

-- name: newest_inbound_seq
SELECT coalesce(max(inbound_seq), 0) FROM drafts WHERE thread = $1;

-- name: draft_for_inbound
SELECT * FROM drafts WHERE in_reply_to = $1 AND version = 1;

-- name: draft_for_request
SELECT * FROM drafts WHERE request_id = $1 AND version = 1;

-- name: current_version
-- The latest version of a draft, locked for a decision.
SELECT * FROM drafts WHERE draft_id = $1 ORDER BY version DESC LIMIT 1 FOR UPDATE;

-- name: version_by_ref
-- The draft version a ref names, locked for a decision. Each version has its own
-- ref; after draft_ref_seq wraps an old decided version may share it with a new
-- one, and the pending one wins.
SELECT * FROM drafts WHERE ref = $1
ORDER BY status = 'DRAFT_PENDING_APPROVAL' DESC, created_at DESC, id DESC
LIMIT 1 FOR UPDATE;

-- name: ref_exists
SELECT EXISTS (SELECT 1 FROM drafts WHERE ref = $1);

-- name: pending_drafts
SELECT * FROM drafts WHERE status = 'DRAFT_PENDING_APPROVAL'
ORDER BY created_at, id LIMIT $1;

-- name: count_pending
SELECT count(*) FROM drafts WHERE status = 'DRAFT_PENDING_APPROVAL';

-- name: set_status
UPDATE drafts SET status = $3, decided_at = now(), decided_by = $4
WHERE draft_id = $1 AND version = $2;

-- name: mark_expiry_alerted
UPDATE drafts SET expiry_alerted_at = now()
WHERE draft_id = $1 AND version = $2 AND expiry_alerted_at IS NULL;

-- name: draft_versions
SELECT * FROM drafts WHERE draft_id = $1 ORDER BY version;

-- name: thread_history
-- The thread's last exchanges, oldest first: what the lead wrote and, when a
-- draft was approved, what we answered. Drafts still pending (the new draft
-- supersedes them and answers their messages itself) and drafts replaced after
-- the lead wrote again (their messages are in the replacing draft) are left out,
-- so no lead message appears twice.
SELECT inbound_body, approved_body, created_at FROM (
    SELECT DISTINCT ON (d.draft_id)
           d.inbound_body,
           (SELECT a.body FROM drafts a
             WHERE a.draft_id = d.draft_id AND a.status = 'APPROVED_TO_SEND') AS approved_body,
           d.created_at
    FROM drafts d
    WHERE d.thread = $1 AND d.in_reply_to <> $2
      AND NOT EXISTS (SELECT 1 FROM drafts x
                       WHERE x.draft_id = d.draft_id
                         AND (x.replaced_by IS NOT NULL OR x.status = 'DRAFT_PENDING_APPROVAL'))
    ORDER BY d.draft_id, d.version
) h
ORDER BY created_at DESC LIMIT $3;

-- name: decision_seen
SELECT 1 FROM approvals WHERE decision_event_id = $1;

-- name: insert_approval
INSERT INTO approvals (decision_event_id, draft_id, version, ref, reviewer, source, action,
                       outcome, notes)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (decision_event_id) DO NOTHING;

-- name: insert_trace
INSERT INTO ai_traces (draft_id, thread, in_reply_to, provider, model, ok, error,
                       prompt_tokens, completion_tokens, total_tokens, cost_usd, latency_ms,
                       prompt)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13);

-- name: enqueue_manual
INSERT INTO manual_queue (key, thread, number, reason, detail, message_sid, draft_id, body)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (key) DO NOTHING;

-- name: open_manual_items
SELECT * FROM manual_queue WHERE resolved_at IS NULL ORDER BY created_at, id LIMIT $1;

-- name: resolve_manual_for_thread
UPDATE manual_queue SET resolved_at = now(), resolved_by = $2
WHERE thread = $1 AND resolved_at IS NULL;

-- name: thread_ref
SELECT ref FROM thread_refs WHERE thread = $1;

-- name: insert_thread_ref
INSERT INTO thread_refs (thread, number, ref) VALUES ($1, $2, nextval('draft_ref_seq')::text)
ON CONFLICT (thread) DO NOTHING
RETURNING ref;

-- name: thread_by_ref
-- A ref the owner typed: a pending draft's first, then a thread's, then any draft's
-- (refs come from one sequence; after it wraps the live one wins).
SELECT thread, number FROM (
    SELECT thread, to_number AS number, 0 AS rank, created_at FROM drafts
     WHERE ref = $1 AND status = 'DRAFT_PENDING_APPROVAL'
    UNION ALL
    SELECT thread, number, 1, created_at FROM thread_refs WHERE ref = $1
    UNION ALL
    SELECT thread, to_number, 2, created_at FROM drafts WHERE ref = $1
) r ORDER BY rank, created_at DESC LIMIT 1;

-- name: insert_human_reply
INSERT INTO human_replies (request_id, thread, number, body, author, channel, notify, ref)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (request_id) DO NOTHING
RETURNING request_id;

-- name: human_reply_outcome
-- requested -> sent | failed | refused; sent -> failed when a status callback says
-- the carrier did not deliver it. A repeat changes nothing (and tells nobody twice).
UPDATE human_replies SET status = $2, error = $3, outcome_at = now()
WHERE request_id = $1 AND (status = 'requested' OR (status = 'sent' AND $2 = 'failed'))
RETURNING *;

-- name: oldest_open_manual
SELECT min(created_at) FROM manual_queue WHERE thread = $1 AND resolved_at IS NULL;

-- name: waiting_threads
-- LIST: pending drafts and threads waiting for a person, newest first.
SELECT * FROM (
    SELECT 'draft' AS what, ref, to_number AS number, inbound_body AS body, created_at
      FROM drafts WHERE status = 'DRAFT_PENDING_APPROVAL'
    UNION ALL
    SELECT 'thread', ref, number, body, created_at FROM (
        SELECT DISTINCT ON (m.thread) coalesce(t.ref, '') AS ref, m.number, m.body, m.created_at
          FROM manual_queue m LEFT JOIN thread_refs t ON t.thread = m.thread
         WHERE m.resolved_at IS NULL
         ORDER BY m.thread, m.created_at DESC
    ) newest_per_thread
) w ORDER BY created_at DESC LIMIT $1;

-- name: count_waiting
SELECT (SELECT count(*) FROM drafts WHERE status = 'DRAFT_PENDING_APPROVAL')
     + (SELECT count(DISTINCT thread) FROM manual_queue WHERE resolved_at IS NULL);

-- name: pending_replies_of_thread
-- The thread's pending reply drafts (not workflow messages), locked: a new lead
-- message supersedes them.
SELECT * FROM drafts
WHERE thread = $1 AND status = 'DRAFT_PENDING_APPROVAL' AND request_id IS NULL
ORDER BY created_at, id FOR UPDATE;

-- name: supersede_by
UPDATE drafts SET status = 'SUPERSEDED', decided_at = now(), decided_by = 'lead', replaced_by = $3
WHERE draft_id = $1 AND version = $2 AND status = 'DRAFT_PENDING_APPROVAL';

-- name: open_burst
SELECT * FROM bursts WHERE thread = $1 AND status IN ('open', 'review') FOR UPDATE;

-- name: burst_by_id
SELECT * FROM bursts WHERE burst_id = $1 FOR UPDATE;

-- name: insert_burst
INSERT INTO bursts (burst_id, thread, number, status, first_at, last_at, fire_at, reason)
VALUES ($1, $2, $3, $4, $5, $5, $6, $7)
RETURNING *;

-- name: extend_burst
UPDATE bursts SET last_at = $2, fire_at = $3 WHERE burst_id = $1 RETURNING *;

-- name: burst_to_review
UPDATE bursts SET status = 'review', reason = $2 WHERE burst_id = $1 AND status = 'open';

-- name: close_burst
-- drafted / dropped / closed (a reviewed burst whose window ended).
UPDATE bursts SET status = $2, draft_id = $3, reason = coalesce(nullif($4, ''), reason),
                  closed_at = now()
WHERE burst_id = $1 AND status IN ('open', 'review');

-- name: burst_of_message
SELECT b.* FROM burst_messages m JOIN bursts b USING (burst_id) WHERE m.message_sid = $1;

-- name: insert_burst_message
INSERT INTO burst_messages (message_sid, burst_id, body, seq, intent, language, decision, rule)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (message_sid) DO NOTHING;

-- name: burst_messages
SELECT * FROM burst_messages WHERE burst_id = $1 ORDER BY seq, id;

-- name: current_version_unlocked
SELECT * FROM drafts WHERE draft_id = $1 ORDER BY version DESC LIMIT 1;

-- name: claim_after_hours_ack
INSERT INTO after_hours_acks (thread, next_open, message_sid, request_id)
VALUES ($1, $2, $3, $4)
ON CONFLICT (thread, next_open) DO NOTHING
RETURNING request_id;
