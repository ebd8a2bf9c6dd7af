-- name: next_ref
SELECT nextval('draft_ref_seq')::text;

-- name: insert_draft
INSERT INTO drafts (draft_id, version, ref, thread, to_number, body, source, status,
                    in_reply_to, inbound_body, intent, language, created_by, expires_at,
                    inbound_seq, request_id, workflow_enrollment_id, workflow_step_id,
                    sms_prompted)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'DRAFT_PENDING_APPROVAL', $8, $9, $10, $11, $12, $13, $14,
        $15, $16, $17, $18)
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
-- draft was approved, what we answered.
SELECT inbound_body, approved_body, created_at FROM (
    SELECT DISTINCT ON (d.draft_id)
           d.inbound_body,
           (SELECT a.body FROM drafts a
             WHERE a.draft_id = d.draft_id AND a.status = 'APPROVED_TO_SEND') AS approved_body,
           d.created_at
    FROM drafts d
    WHERE d.thread = $1 AND d.in_reply_to <> $2
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

-- name: claim_after_hours_ack
INSERT INTO after_hours_acks (thread, next_open, message_sid, request_id)
VALUES ($1, $2, $3, $4)
ON CONFLICT (thread, next_open) DO NOTHING
RETURNING request_id;
