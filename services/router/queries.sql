-- name: ensure_thread
INSERT INTO thread_controls (thread, number) VALUES ($1, $2)
ON CONFLICT (thread) DO NOTHING;

-- name: lock_thread
SELECT thread, paused, opted_out, last_seq, takeover_since, takeover_until
FROM thread_controls WHERE thread = $1 FOR UPDATE;

-- name: get_thread
SELECT thread, number, paused, paused_by, paused_reason, opted_out, consent_keyword,
       consent_at, last_seq, takeover_since, takeover_until, last_human_reply_at, takeover_by
FROM thread_controls WHERE thread = $1;

-- name: decision_exists
-- Rule 1 (duplicate): is this MessageSid decided already?
SELECT 1 FROM routing_decisions WHERE message_sid = $1;

-- name: insert_decision
INSERT INTO routing_decisions (
    message_sid, thread, stream_seq, from_number, body, num_media, decision, rule, status,
    keyword, language, language_confidence, sentiment, sentiment_score, intent, intent_score,
    classifier, received_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
ON CONFLICT (message_sid) DO NOTHING
RETURNING id;

-- name: advance_seq
UPDATE thread_controls SET last_seq = GREATEST(last_seq, $2), updated_at = now()
WHERE thread = $1;

-- name: set_opted_out
UPDATE thread_controls
SET opted_out = $2, consent_keyword = $3, consent_at = now(), updated_at = now()
WHERE thread = $1;

-- name: set_paused
INSERT INTO thread_controls (thread, number, paused, paused_by, paused_reason)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (thread) DO UPDATE
SET paused = EXCLUDED.paused, paused_by = EXCLUDED.paused_by,
    paused_reason = EXCLUDED.paused_reason, updated_at = now();

-- name: start_takeover
-- A person replied: the thread is (or stays) in HUMAN_TAKEOVER until $4. The caller
-- locks the row first (ensure_thread + lock_thread) to learn whether this reply starts
-- the takeover: a FOR UPDATE CTE read only by RETURNING runs after the upsert and
-- skips the row this very statement updated, so it always answered NULL ("started").
INSERT INTO thread_controls (thread, number, takeover_since, takeover_until, last_human_reply_at,
                             takeover_by)
VALUES ($1, $2, $3, $4, $3, $5)
ON CONFLICT (thread) DO UPDATE
SET takeover_since = coalesce(thread_controls.takeover_since, EXCLUDED.takeover_since),
    takeover_until = GREATEST(coalesce(thread_controls.takeover_until, EXCLUDED.takeover_until),
                              EXCLUDED.takeover_until),
    last_human_reply_at = GREATEST(coalesce(thread_controls.last_human_reply_at,
                                            EXCLUDED.last_human_reply_at),
                                   EXCLUDED.last_human_reply_at),
    takeover_by = EXCLUDED.takeover_by, updated_at = now()
RETURNING takeover_since, takeover_until;

-- name: end_takeover
-- Hand the thread back to the AI. With $2 (a quiet-period timer's fire_at) only when
-- no later human reply moved takeover_until past it.
UPDATE thread_controls SET takeover_since = NULL, takeover_until = NULL, updated_at = now()
WHERE thread = $1 AND takeover_since IS NOT NULL AND ($2::timestamptz IS NULL OR takeover_until <= $2)
RETURNING number, takeover_since;
