-- name: insert_outbox
INSERT INTO outbound_messages (
    id, dedup_key, kind, to_number, body, media_urls, lead_facing,
    draft_id, draft_version, request_id, in_reply_to, workflow_enrollment_id, not_before
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id;

-- name: outbox_id_by_key
SELECT id FROM outbound_messages WHERE dedup_key = $1;

-- name: get_outbox
SELECT * FROM outbound_messages WHERE id = $1;

-- name: take_lease
-- Fenced lease (migration 0002, docs/sender.md "The send lease"). Every write a
-- driving worker makes ends in "AND lease_epoch = $n": a worker whose lease was
-- taken over changes nothing.
UPDATE outbound_messages
SET lease_owner = $2, lease_epoch = lease_epoch + 1, lease_until = now() + make_interval(secs => $3)
WHERE id = $1 AND (lease_until IS NULL OR lease_until <= now())
RETURNING *;

-- name: lease_remaining
SELECT greatest(extract(epoch FROM lease_until - now()), 0)::float8 FROM outbound_messages
WHERE id = $1;

-- name: release_lease
-- A row left SENDING or UNKNOWN keeps its lease until it expires: the attempt's
-- request may still be inside Twilio until then.
UPDATE outbound_messages SET lease_owner = NULL, lease_until = NULL
WHERE id = $1 AND lease_epoch = $2 AND status NOT IN ('SENDING', 'UNKNOWN');

-- name: mark_sending
-- Committed before the API call; the lease now outlasts the call (timeout + margin).
UPDATE outbound_messages
SET status = 'SENDING', attempts = attempts + 1, sending_started_at = now(),
    lease_until = now() + make_interval(secs => $2), retry_at = NULL, updated_at = now()
WHERE id = $1 AND status IN ('PENDING', 'DEFERRED') AND lease_epoch = $3
RETURNING attempts;

-- name: mark_unknown
UPDATE outbound_messages SET status = 'UNKNOWN', error_message = $2, updated_at = now()
WHERE id = $1 AND lease_epoch = $3;

-- name: mark_sent
UPDATE outbound_messages
SET status = 'SENT', provider_sid = $2, provider_status = $3, sent_at = now(),
    error_code = NULL, error_message = NULL, updated_at = now()
WHERE id = $1 AND lease_epoch = $4;

-- name: mark_retry
UPDATE outbound_messages
SET status = 'PENDING', retry_at = now() + make_interval(secs => $2), error_code = $3,
    error_message = $4, updated_at = now()
WHERE id = $1 AND lease_epoch = $5;

-- name: mark_pending
UPDATE outbound_messages SET status = 'PENDING', updated_at = now()
WHERE id = $1 AND lease_epoch = $2;

-- name: mark_failed
UPDATE outbound_messages
SET status = 'FAILED_SEND', error_code = $2, error_message = $3, failure_reason = $4,
    event_published = false, updated_at = now()
WHERE id = $1 AND lease_epoch = $5;

-- name: mark_undelivered
-- A failed / undelivered status callback (no lease: the row is already SENT).
UPDATE outbound_messages
SET status = 'FAILED_SEND', error_code = $2, error_message = $3, failure_reason = 'undelivered',
    event_published = false, updated_at = now()
WHERE id = $1 AND status = 'SENT';

-- name: mark_refused
UPDATE outbound_messages
SET status = 'REFUSED', failure_reason = 'opted_out', updated_at = now()
WHERE id = $1 AND lease_epoch = $2;

-- name: mark_deferred
UPDATE outbound_messages SET status = 'DEFERRED', not_before = $2, updated_at = now()
WHERE id = $1 AND lease_epoch = $3;

-- name: mark_published
UPDATE outbound_messages SET event_published = true WHERE id = $1 AND status = $2;

-- name: sids_in_use
SELECT provider_sid FROM outbound_messages WHERE provider_sid = ANY($1::text[]);

-- name: sweep_candidates
-- Rows under a live lease are some worker's business (or wait for it to expire).
SELECT id FROM outbound_messages
WHERE (lease_until IS NULL OR lease_until <= now())
  AND ((status = 'PENDING' AND coalesce(retry_at, updated_at) < now() - make_interval(secs => $1))
   OR (status IN ('SENDING', 'UNKNOWN') AND updated_at < now() - make_interval(secs => $1))
   OR (status = 'DEFERRED' AND not_before < now() - make_interval(secs => $2))
   OR (status IN ('SENT', 'FAILED_SEND', 'REFUSED') AND NOT event_published
       AND updated_at < now() - make_interval(secs => $1)))
ORDER BY created_at
LIMIT $3;

-- name: is_opted_out
SELECT coalesce((SELECT opted_out FROM consent WHERE number = $1), false);

-- name: upsert_consent
INSERT INTO consent (number, opted_out, keyword, source, event_id, changed_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (number) DO UPDATE
SET opted_out = EXCLUDED.opted_out, keyword = EXCLUDED.keyword, source = EXCLUDED.source,
    event_id = EXCLUDED.event_id, changed_at = EXCLUDED.changed_at, recorded_at = now()
WHERE consent.changed_at <= EXCLUDED.changed_at
RETURNING number;

-- name: contact_time_zone
SELECT time_zone FROM contact_time_zones WHERE number = $1;

-- name: upsert_time_zone
INSERT INTO contact_time_zones (number, time_zone, changed_at) VALUES ($1, $2, $3)
ON CONFLICT (number) DO UPDATE SET time_zone = EXCLUDED.time_zone, changed_at = EXCLUDED.changed_at
WHERE contact_time_zones.changed_at <= EXCLUDED.changed_at;

-- name: insert_delivery_event
INSERT INTO delivery_events (provider_sid, status, error_code, event_id, occurred_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (provider_sid, status) DO NOTHING
RETURNING id;

-- name: delivery_events_for
SELECT status, error_code, occurred_at FROM delivery_events
WHERE provider_sid = $1 ORDER BY occurred_at, id;

-- name: outbox_by_sid
SELECT * FROM outbound_messages WHERE provider_sid = $1;

-- name: set_provider_status
UPDATE outbound_messages SET provider_status = $2, updated_at = now() WHERE id = $1;
