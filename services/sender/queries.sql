-- The sender's SQL (slice `sender`, docs/sender.md). Each query says what it is for.
--
-- Two placeholder styles: short queries use asyncpg's positional $1..$n; the
-- insert and the fenced writes use :name placeholders, rewritten once at load
-- (libs.db.NamedQuery) and bound from a dict (services/sender/store.py). Every fenced
-- write names the row (:id) and ends in "AND lease_epoch = :epoch": a worker whose
-- lease was taken over changes nothing (migration 0002, "The send lease").

-- name: insert_outbox
-- Intake: one row per triggering event; a repeated dedup_key inserts nothing (NULL).
INSERT INTO outbound_messages (
    id, dedup_key, kind, to_number, body, media_urls, lead_facing,
    draft_id, draft_version, request_id, in_reply_to, workflow_enrollment_id, not_before
) VALUES (
    :id, :dedup_key, :kind, :to_number, :body, :media_urls, :lead_facing,
    :draft_id, :draft_version, :request_id, :in_reply_to, :workflow_enrollment_id, :not_before
)
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id;

-- name: outbox_id_by_key
-- Intake: the existing row of a repeated request.
SELECT id FROM outbound_messages WHERE dedup_key = $1;

-- name: get_outbox
-- The whole row (OutboxRow), re-read after each write of a drive.
SELECT * FROM outbound_messages WHERE id = $1;

-- name: take_lease
-- Start of every drive: take the row's lease if nobody holds a live one; bumps the
-- epoch (the fencing token) and returns the whole row. $1 id, $2 worker name,
-- $3 lease length in seconds.
UPDATE outbound_messages
SET lease_owner = $2, lease_epoch = lease_epoch + 1, lease_until = now() + make_interval(secs => $3)
WHERE id = $1 AND (lease_until IS NULL OR lease_until <= now())
RETURNING *;

-- name: lease_remaining
-- When the lease is held elsewhere: seconds until it could be taken (NULL: no such row).
SELECT greatest(extract(epoch FROM lease_until - now()), 0)::float8 FROM outbound_messages
WHERE id = $1;

-- name: release_lease
-- End of a drive ($1 id, $2 epoch). A row left SENDING or UNKNOWN keeps its lease
-- until it expires: the attempt's request may still be inside Twilio until then.
UPDATE outbound_messages SET lease_owner = NULL, lease_until = NULL
WHERE id = $1 AND lease_epoch = $2 AND status NOT IN ('SENDING', 'UNKNOWN');

-- name: mark_sending
-- Fenced. Committed before the API call; the lease now outlasts the call
-- (:lease_s = timeout + margin). Returns the attempt number, NULL if fenced off.
UPDATE outbound_messages
SET status = 'SENDING', attempts = attempts + 1, sending_started_at = now(),
    lease_until = now() + make_interval(secs => :lease_s), retry_at = NULL, updated_at = now()
WHERE id = :id AND status IN ('PENDING', 'DEFERRED') AND lease_epoch = :epoch
RETURNING attempts;

-- name: mark_unknown
-- Fenced. No answer from the provider, or an interrupted attempt: reconcile before any resend.
UPDATE outbound_messages SET status = 'UNKNOWN', error_message = :error_message, updated_at = now()
WHERE id = :id AND lease_epoch = :epoch;

-- name: mark_sent
-- Fenced. The provider accepted the message (from its answer or by reconciliation).
UPDATE outbound_messages
SET status = 'SENT', provider_sid = :provider_sid, provider_status = :provider_status, sent_at = now(),
    error_code = NULL, error_message = NULL, updated_at = now()
WHERE id = :id AND lease_epoch = :epoch;

-- name: mark_retry
-- Fenced. A transient error: back to PENDING, due again in :retry_in_s seconds.
UPDATE outbound_messages
SET status = 'PENDING', retry_at = now() + make_interval(secs => :retry_in_s), error_code = :error_code,
    error_message = :error_message, updated_at = now()
WHERE id = :id AND lease_epoch = :epoch;

-- name: mark_pending
-- Fenced. Reconciliation found nothing at the provider: the message may be sent again.
UPDATE outbound_messages SET status = 'PENDING', updated_at = now()
WHERE id = :id AND lease_epoch = :epoch;

-- name: mark_failed
-- Fenced. A permanent failure (or retries exhausted); outbound.failed commits with it.
UPDATE outbound_messages
SET status = 'FAILED_SEND', error_code = :error_code, error_message = :error_message,
    failure_reason = :failure_reason, updated_at = now()
WHERE id = :id AND lease_epoch = :epoch;

-- name: mark_undelivered
-- A failed / undelivered status callback ($1 id, $2 code, $3 message; no lease: the
-- row is already SENT). outbound.failed commits with it.
UPDATE outbound_messages
SET status = 'FAILED_SEND', error_code = $2, error_message = $3, failure_reason = 'undelivered',
    updated_at = now()
WHERE id = $1 AND status = 'SENT';

-- name: mark_refused
-- Fenced. The consent gate refused the message (the contact opted out).
UPDATE outbound_messages
SET status = 'REFUSED', failure_reason = 'opted_out', updated_at = now()
WHERE id = :id AND lease_epoch = :epoch;

-- name: mark_deferred
-- Fenced. Quiet hours or a requested not_before: wait until :not_before (a timer is set).
UPDATE outbound_messages SET status = 'DEFERRED', not_before = :not_before, updated_at = now()
WHERE id = :id AND lease_epoch = :epoch;

-- name: sids_in_use
-- Reconciliation: which of the provider's sids another outbox row already owns.
SELECT provider_sid FROM outbound_messages WHERE provider_sid = ANY($1::text[]);

-- name: sweep_candidates
-- The sweep: unfinished rows whose drive was lost ($1 grace s, $2 deferred grace s,
-- $3 batch). Final rows never need it: their outcome event committed with them.
-- Rows under a live lease are some worker's business (or wait for it to expire).
SELECT id FROM outbound_messages
WHERE (lease_until IS NULL OR lease_until <= now())
  AND ((status = 'PENDING' AND coalesce(retry_at, updated_at) < now() - make_interval(secs => $1))
   OR (status IN ('SENDING', 'UNKNOWN') AND updated_at < now() - make_interval(secs => $1))
   OR (status = 'DEFERRED' AND not_before < now() - make_interval(secs => $2)))
ORDER BY created_at
LIMIT $3;

-- name: is_opted_out
-- The consent gate: is the number opted out in the sender's projection?
SELECT coalesce((SELECT opted_out FROM consent WHERE number = $1), false);

-- name: upsert_consent
-- The consent projection: the change with the latest changed_at wins ($1 number,
-- $2 opted_out, $3 keyword, $4 source, $5 event id, $6 changed_at). NULL when older.
INSERT INTO consent (number, opted_out, keyword, source, event_id, changed_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (number) DO UPDATE
SET opted_out = EXCLUDED.opted_out, keyword = EXCLUDED.keyword, source = EXCLUDED.source,
    event_id = EXCLUDED.event_id, changed_at = EXCLUDED.changed_at, recorded_at = now()
WHERE consent.changed_at <= EXCLUDED.changed_at
RETURNING number;

-- name: contact_time_zone
-- Quiet hours: the zone learned from contact.updated, if any.
SELECT time_zone FROM contact_time_zones WHERE number = $1;

-- name: upsert_time_zone
-- contact.updated: remember the contact's zone ($1 number, $2 zone, $3 changed_at); newest wins.
INSERT INTO contact_time_zones (number, time_zone, changed_at) VALUES ($1, $2, $3)
ON CONFLICT (number) DO UPDATE SET time_zone = EXCLUDED.time_zone, changed_at = EXCLUDED.changed_at
WHERE contact_time_zones.changed_at <= EXCLUDED.changed_at;

-- name: insert_delivery_event
-- A status callback ($1 sid, $2 status, $3 code, $4 event id, $5 time), once per
-- (sid, status); NULL for a repeat.
INSERT INTO delivery_events (provider_sid, status, error_code, event_id, occurred_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (provider_sid, status) DO NOTHING
RETURNING id;

-- name: delivery_events_for
-- Every stored callback of a sid, to pick the best status.
SELECT status, error_code, occurred_at FROM delivery_events
WHERE provider_sid = $1 ORDER BY occurred_at, id;

-- name: lock_sid
-- Serialises recording a send's sid with storing a callback for it ($1 sid), until
-- commit: whichever commits second sees the other's row (a callback can beat the
-- API answer), so a status is never left unapplied.
SELECT pg_advisory_xact_lock(hashtext('sender.sid:' || $1));

-- name: outbox_by_sid
-- The row a status callback is about (none yet when the callback beat the API answer).
SELECT * FROM outbound_messages WHERE provider_sid = $1;

-- name: set_provider_status
-- The best delivery status so far ($1 id, $2 status).
UPDATE outbound_messages SET provider_status = $2, updated_at = now() WHERE id = $1;
