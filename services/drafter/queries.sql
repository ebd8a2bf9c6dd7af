-- name: next_ref
-- A new ref (draft versions and threads share the sequence, so one number names one thing).
SELECT nextval('draft_ref_seq')::text;

-- name: insert_draft
-- One draft version, pending; bound by name (libs.db.NamedQuery).
INSERT INTO drafts (draft_id, version, ref, thread, to_number, body, source, status,
                    in_reply_to, inbound_body, intent, language, created_by, expires_at,
                    inbound_seq, request_id, workflow_enrollment_id, workflow_step_id,
                    sms_prompted, lead_messages, replaces_refs, burst_id)
VALUES (:draft_id, :version, :ref, :thread, :to_number, :body, :source, 'DRAFT_PENDING_APPROVAL',
        :in_reply_to, :inbound_body, :intent, :language, :created_by, :expires_at,
        :inbound_seq, :request_id, :workflow_enrollment_id, :workflow_step_id,
        :sms_prompted, :lead_messages, :replaces_refs, :burst_id)
RETURNING *;

-- name: lock_thread
-- Serialises drafting per thread across replicas until the transaction ends.
SELECT pg_advisory_xact_lock(hashtext('drafter:' || $1));

-- name: newest_inbound_seq
-- The stream sequence of the thread's newest drafted lead message (0: none): stale check.
SELECT coalesce(max(inbound_seq), 0) FROM drafts WHERE thread = $1;

-- name: draft_for_inbound
-- The draft answering a lead message, if written already (redelivery).
SELECT * FROM drafts WHERE in_reply_to = $1 AND version = 1;

-- name: draft_for_request
-- The draft of a workflow's draft.requested, if written already (redelivery).
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

-- name: pending_drafts
-- Pending drafts, oldest first (bare replies, clarifications, the API).
SELECT * FROM drafts WHERE status = 'DRAFT_PENDING_APPROVAL'
ORDER BY created_at, id LIMIT $1;

-- name: count_pending
-- How many drafts are pending.
SELECT count(*) FROM drafts WHERE status = 'DRAFT_PENDING_APPROVAL';

-- name: set_status
-- A decision on one version: approved, rejected or superseded by an edit.
UPDATE drafts SET status = $3, decided_at = now(), decided_by = $4
WHERE draft_id = $1 AND version = $2;

-- name: mark_expiry_alerted
-- Claims the one expiry alert of a version (UPDATE 0: sent already).
UPDATE drafts SET expiry_alerted_at = now()
WHERE draft_id = $1 AND version = $2 AND expiry_alerted_at IS NULL;

-- name: draft_versions
-- Every version of a draft, oldest first.
SELECT * FROM drafts WHERE draft_id = $1 ORDER BY version;

-- name: thread_history
-- The thread's last exchanges, oldest first: what the lead wrote and, when a
-- draft was approved, what we answered. Drafts still pending (the new draft
-- supersedes them and answers their messages itself) and drafts replaced after
-- the lead wrote again (their messages are in the replacing draft, or in the one
-- being written: withdrawn_reason lead_wrote) are left out,
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
                         AND (x.replaced_by IS NOT NULL OR x.status = 'DRAFT_PENDING_APPROVAL'
                              OR x.withdrawn_reason = 'lead_wrote'))
    ORDER BY d.draft_id, d.version
) h
ORDER BY created_at DESC LIMIT $3;

-- name: decision_seen
-- Whether a draft.decided event was applied already (redelivery).
SELECT 1 FROM approvals WHERE decision_event_id = $1;

-- name: insert_approval
-- The record of one draft.decided event and its outcome; bound by name.
INSERT INTO approvals (decision_event_id, draft_id, version, ref, reviewer, source, action,
                       outcome, notes)
VALUES (:decision_event_id, :draft_id, :version, :ref, :reviewer, :source, :action,
        :outcome, :notes)
ON CONFLICT (decision_event_id) DO NOTHING;

-- name: insert_trace
-- One LLM attempt (provider, tokens, cost, latency, the prompt if recorded); bound by name.
INSERT INTO ai_traces (draft_id, thread, in_reply_to, provider, model, ok, error,
                       prompt_tokens, completion_tokens, total_tokens, cost_usd, latency_ms,
                       prompt)
VALUES (:draft_id, :thread, :in_reply_to, :provider, :model, :ok, :error,
        :prompt_tokens, :completion_tokens, :total_tokens, :cost_usd, :latency_ms, :prompt);

-- name: enqueue_manual
-- A lead message for a person (manual-intervention queue), once per key; bound by name.
INSERT INTO manual_queue (key, thread, number, reason, detail, message_sid, draft_id, body)
VALUES (:key, :thread, :number, :reason, :detail, :message_sid, :draft_id, :body)
ON CONFLICT (key) DO NOTHING;

-- name: open_manual_items
-- Open manual-queue items, oldest first (the API).
SELECT * FROM manual_queue WHERE resolved_at IS NULL ORDER BY created_at, id LIMIT $1;

-- name: resolve_manual_for_thread
-- A person handled the thread: its open manual-queue items are resolved.
UPDATE manual_queue SET resolved_at = now(), resolved_by = $2
WHERE thread = $1 AND resolved_at IS NULL;

-- name: thread_ref
-- The thread's ref, if it has one.
SELECT ref FROM thread_refs WHERE thread = $1;

-- name: insert_thread_ref
-- Gives a thread its ref (NULL when a concurrent insert won).
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
-- A person's reply to a lead (SEND, API, dashboard), once per request; bound by name.
INSERT INTO human_replies (request_id, thread, number, body, author, channel, notify, ref)
VALUES (:request_id, :thread, :number, :body, :author, :channel, :notify, :ref)
ON CONFLICT (request_id) DO NOTHING
RETURNING request_id;

-- name: human_reply_outcome
-- requested -> sent | failed | refused; sent -> failed when a status callback says
-- the carrier did not deliver it. A repeat changes nothing (and tells nobody twice).
UPDATE human_replies SET status = $2, error = $3, outcome_at = now()
WHERE request_id = $1 AND (status = 'requested' OR (status = 'sent' AND $2 = 'failed'))
RETURNING *;

-- name: oldest_open_manual
-- When the thread's oldest open manual-queue item was queued (time to first human reply).
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
-- LIST's total: pending drafts plus threads waiting for a person.
SELECT (SELECT count(*) FROM drafts WHERE status = 'DRAFT_PENDING_APPROVAL')
     + (SELECT count(DISTINCT thread) FROM manual_queue WHERE resolved_at IS NULL);

-- name: has_pending_reply
-- Whether the thread has a pending reply draft (not a workflow message): a cheap check
-- before the locking withdrawal when a lead writes again.
SELECT EXISTS (SELECT 1 FROM drafts WHERE thread = $1 AND status = 'DRAFT_PENDING_APPROVAL'
               AND request_id IS NULL);

-- name: pending_replies_of_thread
-- The thread's pending reply drafts (not workflow messages), locked: a new lead
-- message supersedes them.
SELECT * FROM drafts
WHERE thread = $1 AND status = 'DRAFT_PENDING_APPROVAL' AND request_id IS NULL
ORDER BY created_at, id FOR UPDATE;

-- name: supersede_by
-- A pending version replaced by a new draft because the lead wrote again.
UPDATE drafts SET status = 'SUPERSEDED', decided_at = now(), decided_by = 'lead', replaced_by = $3
WHERE draft_id = $1 AND version = $2 AND status = 'DRAFT_PENDING_APPROVAL';

-- name: open_burst
-- The thread's burst still collecting messages (or in review), locked.
SELECT * FROM bursts WHERE thread = $1 AND status IN ('open', 'review') FOR UPDATE;

-- name: burst_by_id
-- One burst, locked.
SELECT * FROM bursts WHERE burst_id = $1 FOR UPDATE;

-- name: insert_burst
-- A new burst opened by a lead message; bound by name.
INSERT INTO bursts (burst_id, thread, number, status, first_at, last_at, fire_at, reason)
VALUES (:burst_id, :thread, :number, :status, :now, :now, :fire_at, :reason)
RETURNING *;

-- name: extend_burst
-- A message joined the burst: its debounce timer moves.
UPDATE bursts SET last_at = $2, fire_at = $3 WHERE burst_id = $1 RETURNING *;

-- name: burst_to_review
-- A message of the burst needs review: nothing of the burst is drafted.
UPDATE bursts SET status = 'review', reason = $2 WHERE burst_id = $1 AND status = 'open';

-- name: close_burst
-- drafted / dropped / closed (a reviewed burst whose window ended).
UPDATE bursts SET status = $2, draft_id = $3, reason = coalesce(nullif($4, ''), reason),
                  closed_at = now()
WHERE burst_id = $1 AND status IN ('open', 'review');

-- name: burst_of_message
-- The burst a lead message joined, if any (redelivery).
SELECT b.* FROM burst_messages m JOIN bursts b USING (burst_id) WHERE m.message_sid = $1;

-- name: insert_burst_message
-- One lead message held in a burst, once; bound by name.
INSERT INTO burst_messages (message_sid, burst_id, body, seq, intent, language, decision, rule)
VALUES (:message_sid, :burst_id, :body, :seq, :intent, :language, :decision, :rule)
ON CONFLICT (message_sid) DO NOTHING;

-- name: burst_messages
-- The burst's messages in stream order.
SELECT * FROM burst_messages WHERE burst_id = $1 ORDER BY seq, id;

-- name: current_version_unlocked
-- The latest version of a draft, not locked (following a replacement chain).
SELECT * FROM drafts WHERE draft_id = $1 ORDER BY version DESC LIMIT 1;

-- name: claim_after_hours_ack
-- Claims the one after-hours acknowledgement per thread and opening (NULL: claimed already).
INSERT INTO after_hours_acks (thread, next_open, message_sid, request_id)
VALUES ($1, $2, $3, $4)
ON CONFLICT (thread, next_open) DO NOTHING
RETURNING request_id;

-- name: withdraw_draft
-- A pending version withdrawn before a decision (docs/drafter.md, "Withdrawn drafts").
UPDATE drafts SET status = 'SUPERSEDED', decided_at = now(), decided_by = $4, withdrawn_reason = $3
WHERE draft_id = $1 AND version = $2 AND status = 'DRAFT_PENDING_APPROVAL';

-- name: awaiting_replacement
-- Versions withdrawn because the lead wrote again, whose replacing draft is not
-- written yet; locked, oldest first.
SELECT * FROM drafts
WHERE thread = $1 AND withdrawn_reason = 'lead_wrote' AND replaced_by IS NULL
ORDER BY created_at, id FOR UPDATE;

-- name: set_withdrawn_reason
-- No replacing draft is coming after all (review, opt-out, a person answered, paused).
UPDATE drafts SET withdrawn_reason = $3
WHERE draft_id = $1 AND version = $2 AND withdrawn_reason = 'lead_wrote' AND replaced_by IS NULL;

-- name: fill_replaced_by
-- A version withdrawn because the lead wrote again learns the draft that replaced it.
UPDATE drafts SET replaced_by = $3
WHERE draft_id = $1 AND version = $2 AND withdrawn_reason = 'lead_wrote' AND replaced_by IS NULL;
