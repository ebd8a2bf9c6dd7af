-- name: upsert_lead_contact
-- A lead fills in what we do not know yet; it never blanks a known value.
INSERT INTO contacts (thread, phone, first_name, last_name, email, fields, tags)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::text[])
ON CONFLICT (thread) DO UPDATE SET
    first_name = CASE WHEN EXCLUDED.first_name <> '' THEN EXCLUDED.first_name ELSE contacts.first_name END,
    last_name  = CASE WHEN EXCLUDED.last_name <> '' THEN EXCLUDED.last_name ELSE contacts.last_name END,
    email      = CASE WHEN EXCLUDED.email <> '' THEN EXCLUDED.email ELSE contacts.email END,
    fields     = contacts.fields || EXCLUDED.fields,
    tags       = ARRAY(SELECT DISTINCT unnest(contacts.tags || EXCLUDED.tags) ORDER BY 1),
    updated_at = now()
RETURNING (xmax = 0) AS created;

-- name: ensure_contact
INSERT INTO contacts (thread, phone) VALUES ($1, $2)
ON CONFLICT (thread) DO NOTHING;

-- name: get_contact
SELECT * FROM contacts WHERE thread = $1;

-- name: record_reply
UPDATE contacts SET last_sms_reply = $2, last_reply_at = $3, updated_at = now()
WHERE thread = $1;

-- name: record_outbound
UPDATE contacts SET last_outbound_at = $2, updated_at = now() WHERE thread = $1;

-- name: add_tag
UPDATE contacts SET tags = ARRAY(SELECT DISTINCT unnest(tags || ARRAY[$2::text]) ORDER BY 1),
    updated_at = now()
WHERE thread = $1;

-- name: remove_tag
UPDATE contacts SET tags = array_remove(tags, $2), updated_at = now() WHERE thread = $1;

-- name: set_standard_field
-- $2 is one of first_name, last_name, email (checked by the caller).
UPDATE contacts SET
    first_name = CASE WHEN $2 = 'first_name' THEN $3 ELSE first_name END,
    last_name  = CASE WHEN $2 = 'last_name' THEN $3 ELSE last_name END,
    email      = CASE WHEN $2 = 'email' THEN $3 ELSE email END,
    updated_at = now()
WHERE thread = $1;

-- name: set_custom_field
UPDATE contacts SET fields = jsonb_set(fields, ARRAY[$2::text], $3::jsonb), updated_at = now()
WHERE thread = $1;

-- name: set_opted_out
UPDATE contacts SET opted_out = $2, updated_at = now() WHERE thread = $1;

-- name: set_paused
UPDATE contacts SET paused = $2, updated_at = now() WHERE thread = $1;

-- name: upsert_definition
INSERT INTO workflow_definitions (workflow_key, version, name, trigger_type, definition, source)
VALUES ($1, $2, $3, $4, $5::jsonb, $6)
ON CONFLICT (workflow_key, version) DO UPDATE SET
    name = EXCLUDED.name, trigger_type = EXCLUDED.trigger_type,
    definition = EXCLUDED.definition, source = EXCLUDED.source, active = true, loaded_at = now()
RETURNING (xmax = 0) AS created;

-- name: get_definition
SELECT definition, source FROM workflow_definitions WHERE workflow_key = $1 AND version = $2;

-- name: any_enrollment
SELECT id, status FROM workflow_enrollments WHERE workflow_key = $1 AND thread = $2
ORDER BY created_at DESC LIMIT 1;

-- name: insert_enrollment
INSERT INTO workflow_enrollments
    (id, workflow_key, workflow_version, thread, status, current_step, trigger_event)
VALUES ($1, $2, $3, $4, 'active', $5, $6)
ON CONFLICT (workflow_key, thread) WHERE status IN ('active', 'waiting', 'paused') DO NOTHING
RETURNING id;

-- name: lock_enrollment
-- NO KEY UPDATE: the step's execution row, committed on another connection
-- before a side effect, takes KEY SHARE on this row for its foreign key.
SELECT * FROM workflow_enrollments WHERE id = $1 FOR NO KEY UPDATE;

-- name: live_enrollments_of_thread
SELECT * FROM workflow_enrollments
WHERE thread = $1 AND status IN ('active', 'waiting', 'paused')
ORDER BY created_at
FOR UPDATE;

-- name: update_enrollment
UPDATE workflow_enrollments SET
    status = $2, current_step = $3, waiting_for = $4, timer_id = $5, step_seq = $6,
    replied = $7, pause_reason = $8, ended_reason = $9,
    finished_at = CASE WHEN $2 IN ('completed', 'ended') THEN now() ELSE NULL END,
    updated_at = now()
WHERE id = $1;

-- name: insert_execution
INSERT INTO workflow_executions
    (enrollment_id, seq, step_id, step_type, input, output, error, late, started_at, completed_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9, $10)
ON CONFLICT (enrollment_id, seq) DO UPDATE SET
    input = EXCLUDED.input, output = EXCLUDED.output, error = EXCLUDED.error,
    completed_at = EXCLUDED.completed_at
WHERE workflow_executions.completed_at IS NULL;

-- name: claim_execution
-- Committed before an http call or an email: a redelivery finding it open does not repeat it.
INSERT INTO workflow_executions (enrollment_id, seq, step_id, step_type, input, started_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6)
ON CONFLICT (enrollment_id, seq) DO NOTHING
RETURNING id;

-- name: release_execution
DELETE FROM workflow_executions WHERE enrollment_id = $1 AND seq = $2 AND completed_at IS NULL;

-- name: complete_execution
UPDATE workflow_executions SET output = $3::jsonb, late = $4, completed_at = $5
WHERE enrollment_id = $1 AND seq = $2 AND completed_at IS NULL;

-- name: insert_outcome
INSERT INTO conversation_outcomes (thread, outcome, reason, decided_by, details, source_event)
VALUES ($1, $2, $3, $4, $5::jsonb, $6)
ON CONFLICT (thread, source_event) DO NOTHING
RETURNING id;

-- name: latest_outcome
SELECT outcome, reason, decided_by, created_at FROM conversation_outcomes
WHERE thread = $1 ORDER BY created_at DESC, id DESC LIMIT 1;

-- name: latest_definition
SELECT definition, source FROM workflow_definitions
WHERE workflow_key = $1 AND active ORDER BY version DESC LIMIT 1;

-- name: list_definitions
SELECT DISTINCT ON (workflow_key) workflow_key, name, version FROM workflow_definitions
WHERE active ORDER BY workflow_key, version DESC;
