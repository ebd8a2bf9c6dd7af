-- name: insert_audit
INSERT INTO audit_log (service, actor, action, thread, details, trace_id)
VALUES ($1, $2, $3, $4, $5::jsonb, $6);

-- name: slice_version
SELECT coalesce(max(version), 0) FROM schema_migrations WHERE slice = $1;
