-- name: list_inbound_for_thread
SELECT message_sid, from_number, to_number, body, num_media, media, received_at
FROM inbound_messages WHERE thread = $1
ORDER BY received_at DESC, id DESC
LIMIT $2;

-- name: verify_token
UPDATE api_tokens SET last_used_at = now()
WHERE token_hash = $1 AND revoked_at IS NULL
RETURNING name, scope;

-- name: create_token
INSERT INTO api_tokens (name, token_hash, scope) VALUES ($1, $2, $3)
RETURNING id, created_at;

-- name: revoke_token
UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL
RETURNING id;

-- name: list_tokens
SELECT name, scope, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY id;

-- name: create_session
INSERT INTO dashboard_sessions (id_hash, principal, csrf_token, expires_at, credential_hash)
VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5);

-- name: get_session
-- A session dies with the credential that opened it: the bootstrap token's hash must
-- equal the current setting's ($2, NULL when none is set), a database token must still
-- be that very token (same hash), unrevoked and admin.
SELECT s.principal, s.csrf_token, s.expires_at
FROM dashboard_sessions s
WHERE s.id_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
  AND s.credential_hash IS NOT NULL
  AND ((s.principal = 'settings' AND s.credential_hash = $2) OR EXISTS (
      SELECT 1 FROM api_tokens t
      WHERE t.token_hash = s.credential_hash AND t.name = s.principal
        AND t.revoked_at IS NULL AND t.scope = 'admin'));

-- name: revoke_session
UPDATE dashboard_sessions SET revoked_at = now() WHERE id_hash = $1 AND revoked_at IS NULL;

-- name: purge_sessions
DELETE FROM dashboard_sessions WHERE expires_at < now() - interval '7 days';


-- name: insert_inbound_batch
-- Group commit: many webhooks in one statement; returns the ones that were new.
INSERT INTO inbound_messages (
    message_sid, account_sid, messaging_service_sid, from_number, to_number, thread,
    body, num_media, media, raw, event_id, received_at
)
SELECT sid, account, service, from_number, to_number, thread, body, num_media,
       media::jsonb, raw::jsonb, event_id, received_at
FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::text[], $8::int[], $9::text[], $10::text[], $11::text[], $12::timestamptz[]
) AS x(sid, account, service, from_number, to_number, thread, body, num_media, media, raw,
       event_id, received_at)
ON CONFLICT (message_sid) DO NOTHING
RETURNING id, message_sid;

-- name: insert_audit_batch
INSERT INTO audit_log (service, actor, action, thread, details, trace_id)
SELECT 'ingest', 'SYSTEM', action, thread, details::jsonb, trace_id
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS x(action, thread, details, trace_id);
