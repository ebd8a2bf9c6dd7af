-- name: upsert_lead_contact
-- A lead fills in what we do not know yet; it never blanks a known value.
-- Named parameters (libs.db.NamedQuery).
INSERT INTO contacts (thread, phone, first_name, last_name, email, fields, tags)
VALUES (:thread, :phone, :first_name, :last_name, :email, :fields::jsonb, :tags::text[])
ON CONFLICT (thread) DO UPDATE SET
    first_name = CASE WHEN EXCLUDED.first_name <> '' THEN EXCLUDED.first_name ELSE contacts.first_name END,
    last_name  = CASE WHEN EXCLUDED.last_name <> '' THEN EXCLUDED.last_name ELSE contacts.last_name END,
    email      = CASE WHEN EXCLUDED.email <> '' THEN EXCLUDED.email ELSE contacts.email END,
    fields     = contacts.fields || EXCLUDED.fields,
    tags       = ARRAY(SELECT DISTINCT unnest(contacts.tags || EXCLUDED.tags) ORDER BY 1),
    updated_at = now()
RETURNING (xmax = 0) AS created;

-- name: ensure_contact
-- A contact row for a thread we hear about first from an event other than lead.created.
INSERT INTO contacts (thread, phone) VALUES ($1, $2)
ON CONFLICT (thread) DO NOTHING;

-- name: get_contact
-- The contact as conditions and templates see it (store.view_of).
SELECT * FROM contacts WHERE thread = $1;

-- name: record_reply
-- The lead's latest inbound message: {{last_sms_reply}} and the no-response check.
UPDATE contacts SET last_sms_reply = $2, last_reply_at = $3, updated_at = now()
WHERE thread = $1;

-- name: record_outbound
-- When we last wrote to the lead (lead-facing outbound.sent).
UPDATE contacts SET last_outbound_at = $2, updated_at = now() WHERE thread = $1;

-- name: add_tag
-- A tag added by an add_tag step or a contact.tagged event (kept sorted, no duplicates).
UPDATE contacts SET tags = ARRAY(SELECT DISTINCT unnest(tags || ARRAY[$2::text]) ORDER BY 1),
    updated_at = now()
WHERE thread = $1;

-- name: remove_tag
-- A tag removed by a remove_tag step or a contact.tagged event.
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
-- A custom field set by an update_field step or a contact.updated event.
UPDATE contacts SET fields = jsonb_set(fields, ARRAY[$2::text], $3::jsonb), updated_at = now()
WHERE thread = $1;

-- name: remember_language
-- The language the router answered a lead in (it picks {en, es} workflow texts): the
-- contact row and the field in one statement, and no write when the field is unchanged.
INSERT INTO contacts (thread, phone, fields) VALUES ($1, $2, jsonb_build_object('language', $3::text))
ON CONFLICT (thread) DO UPDATE
SET fields = jsonb_set(contacts.fields, '{language}', to_jsonb($3::text)), updated_at = now()
WHERE contacts.fields->>'language' IS DISTINCT FROM $3::text;

-- name: set_opted_out
-- Consent: STOP turns it on, START / an opt-in turns it off.
UPDATE contacts SET opted_out = $2, updated_at = now() WHERE thread = $1;

-- name: set_paused
-- A human pause or take-over of the thread (send_sms steps hold while on).
UPDATE contacts SET paused = $2, updated_at = now() WHERE thread = $1;

-- name: upsert_definition
-- Store a loaded workflow version (workflow_definitions is the source of truth).
INSERT INTO workflow_definitions (workflow_key, version, name, trigger_type, definition, source)
VALUES ($1, $2, $3, $4, $5::jsonb, $6)
ON CONFLICT (workflow_key, version) DO UPDATE SET
    name = EXCLUDED.name, trigger_type = EXCLUDED.trigger_type,
    definition = EXCLUDED.definition, source = EXCLUDED.source, active = true, loaded_at = now()
RETURNING (xmax = 0) AS created;

-- name: get_definition
-- The version an enrollment is pinned to (registry.py).
SELECT definition, source FROM workflow_definitions WHERE workflow_key = $1 AND version = $2;

-- name: any_enrollment
-- The newest enrollment of a contact in a workflow: no second live one, re-enroll only if allowed.
SELECT id, status FROM workflow_enrollments WHERE workflow_key = $1 AND thread = $2
ORDER BY created_at DESC LIMIT 1;

-- name: insert_enrollment
-- A new enrollment, id derived from the triggering event (a redelivery finds it).
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
-- The thread's unfinished enrollments, locked: replies, opt-outs, pauses.
SELECT * FROM workflow_enrollments
WHERE thread = $1 AND status IN ('active', 'waiting', 'paused')
ORDER BY created_at
FOR UPDATE;

-- name: update_enrollment
-- Enrollment.save (enrollment.py): every field a step, a wait or the conversation may change.
-- Named parameters (libs.db.NamedQuery).
UPDATE workflow_enrollments SET
    status = :status, current_step = :current_step, waiting_for = :waiting_for,
    timer_id = :timer_id, step_seq = :step_seq, replied = :replied,
    pause_reason = :pause_reason, ended_reason = :ended_reason,
    finished_at = CASE WHEN :status IN ('completed', 'ended') THEN now() ELSE NULL END,
    updated_at = now()
WHERE id = :id;

-- name: insert_execution
-- The record of one step run (runner.py); completes the row an outside effect claimed first.
-- Named parameters (libs.db.NamedQuery).
INSERT INTO workflow_executions
    (enrollment_id, seq, step_id, step_type, input, output, error, late, started_at, completed_at)
VALUES (:enrollment_id, :seq, :step_id, :step_type, :input::jsonb, :output::jsonb, :error, :late,
        :started_at, :completed_at)
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
-- Undo a claim whose outside effect certainly did not happen (SMTP refused): a redelivery retries.
DELETE FROM workflow_executions WHERE enrollment_id = $1 AND seq = $2 AND completed_at IS NULL;

-- name: complete_execution
-- Close a waiting step's execution (timer fired, reply, approval decided).
UPDATE workflow_executions SET output = $3::jsonb, late = $4, completed_at = $5
WHERE enrollment_id = $1 AND seq = $2 AND completed_at IS NULL;

-- name: insert_outcome
-- A conversation outcome, once per (thread, source event).
INSERT INTO conversation_outcomes (thread, outcome, reason, decided_by, details, source_event)
VALUES ($1, $2, $3, $4, $5::jsonb, $6)
ON CONFLICT (thread, source_event) DO NOTHING
RETURNING id;

-- name: latest_outcome
-- The thread's latest outcome (RPC / dashboard).
SELECT outcome, reason, decided_by, created_at FROM conversation_outcomes
WHERE thread = $1 ORDER BY created_at DESC, id DESC LIMIT 1;

-- name: latest_definition
-- The newest active version of a workflow (admin API: dry runs, enrollments, switches).
SELECT definition, source FROM workflow_definitions
WHERE workflow_key = $1 AND active ORDER BY version DESC LIMIT 1;

-- name: list_definitions
-- The newest active version of each stored workflow (enrolled in at start).
SELECT DISTINCT ON (workflow_key) workflow_key, name, version FROM workflow_definitions
WHERE active ORDER BY workflow_key, version DESC;

-- name: set_workflow_switch
-- Switch a workflow off or on (admin API, or a workflow file that disappeared).
INSERT INTO workflow_switches (workflow_key, enabled, reason, changed_by)
VALUES ($1, $2, $3, $4)
ON CONFLICT (workflow_key) DO UPDATE SET
    enabled = EXCLUDED.enabled, reason = EXCLUDED.reason,
    changed_by = EXCLUDED.changed_by, changed_at = now();

-- name: workflow_switches
-- Every workflow switch (loaded into Registry.disabled).
SELECT workflow_key, enabled, reason, changed_by, changed_at FROM workflow_switches;

-- name: stored_sources
-- The newest stored version of each workflow and where it came from (a file path or an API source name).
SELECT DISTINCT ON (workflow_key) workflow_key, name, version, source FROM workflow_definitions
WHERE active ORDER BY workflow_key, version DESC;

-- name: enrollments_of_workflow
-- $2: a status or NULL for all; newest first.
SELECT e.id::text AS enrollment_id, e.thread, c.phone, e.workflow_version AS version, e.status,
       e.current_step, e.waiting_for, e.pause_reason, e.ended_reason, e.created_at, e.updated_at,
       e.finished_at
FROM workflow_enrollments e JOIN contacts c ON c.thread = e.thread
WHERE e.workflow_key = $1 AND ($2::text IS NULL OR e.status = $2)
ORDER BY e.created_at DESC, e.id
LIMIT $3;

-- name: import_begin
-- Start a contact import (idempotent by import id).
INSERT INTO contact_imports (import_id, source, status) VALUES ($1, $2, 'staging')
ON CONFLICT (import_id) DO NOTHING;

-- name: import_get
-- An import's state and result (a repeated commit answers from it).
SELECT import_id, status, result FROM contact_imports WHERE import_id = $1;

-- name: import_stage
-- One batch as parallel arrays; tags as the JSON text of an array per row (arrays of
-- arrays must be rectangular in Postgres). A repeated batch is a no-op. Named parameters.
INSERT INTO contact_import_rows
    (import_id, line, thread, phone, first_name, last_name, email, tags, fields, opted_out)
SELECT :import_id, r.line, r.thread, r.phone, r.first_name, r.last_name, r.email,
       ARRAY(SELECT jsonb_array_elements_text(r.tags::jsonb)), r.fields, r.opted_out
FROM unnest(:lines::int[], :threads::text[], :phones::text[], :first_names::text[],
            :last_names::text[], :emails::text[], :tags::text[], :fields::jsonb[], :opted_out::bool[])
     AS r(line, thread, phone, first_name, last_name, email, tags, fields, opted_out)
ON CONFLICT (import_id, line) DO NOTHING;

-- name: import_staged_count
-- Rows staged so far (a commit checks it against the rows the client sent).
SELECT count(*) FROM contact_import_rows WHERE import_id = $1;

-- name: import_merge
-- Duplicates of the file merged per number: the last non-empty value wins, tags are
-- united, custom fields merged (later lines win), opted out if any row says so.
CREATE TEMP TABLE import_merged ON COMMIT DROP AS
WITH staged AS (SELECT * FROM contact_import_rows WHERE import_id = $1),
base AS (
    SELECT thread, min(phone) AS phone,
        coalesce((array_agg(first_name ORDER BY line DESC) FILTER (WHERE first_name <> ''))[1], '') AS first_name,
        coalesce((array_agg(last_name ORDER BY line DESC) FILTER (WHERE last_name <> ''))[1], '') AS last_name,
        coalesce((array_agg(email ORDER BY line DESC) FILTER (WHERE email <> ''))[1], '') AS email,
        bool_or(opted_out) AS opted_out
    FROM staged GROUP BY thread
),
tag_sets AS (
    SELECT thread, array_agg(DISTINCT t ORDER BY t) AS tags FROM staged, unnest(tags) AS t GROUP BY thread
),
field_sets AS (
    SELECT thread, jsonb_object_agg(f.key, f.value ORDER BY line) AS fields
    FROM staged, jsonb_each(fields) AS f GROUP BY thread
)
SELECT b.thread, b.phone, b.first_name, b.last_name, b.email, b.opted_out,
       coalesce(t.tags, '{}'::text[]) AS tags, coalesce(f.fields, '{}'::jsonb) AS fields
FROM base b LEFT JOIN tag_sets t USING (thread) LEFT JOIN field_sets f USING (thread);

-- name: import_new_optouts
-- Threads the import opts out that were not opted out before (contact.optout is published).
SELECT m.thread, m.phone FROM import_merged m LEFT JOIN contacts c USING (thread)
WHERE m.opted_out AND NOT coalesce(c.opted_out, false)
ORDER BY m.thread;

-- name: import_insert_new
-- Contacts the import creates.
INSERT INTO contacts (thread, phone, first_name, last_name, email, fields, tags, opted_out)
SELECT m.thread, m.phone, m.first_name, m.last_name, m.email, m.fields, m.tags, m.opted_out
FROM import_merged m
WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.thread = m.thread)
RETURNING thread, opted_out;

-- name: import_update_existing
-- Fills in, never blanks; an opt-out is never undone by a file (opted_out only turns on).
-- Only rows that really change are touched, so importing the same file again changes nothing.
WITH next AS (
    SELECT c.thread,
        CASE WHEN m.first_name <> '' THEN m.first_name ELSE c.first_name END AS first_name,
        CASE WHEN m.last_name <> '' THEN m.last_name ELSE c.last_name END AS last_name,
        CASE WHEN m.email <> '' THEN m.email ELSE c.email END AS email,
        c.fields || m.fields AS fields,
        ARRAY(SELECT DISTINCT t FROM unnest(c.tags || m.tags) AS t ORDER BY 1) AS tags,
        c.opted_out OR m.opted_out AS opted_out
    FROM import_merged m JOIN contacts c USING (thread)
)
UPDATE contacts c SET first_name = n.first_name, last_name = n.last_name, email = n.email,
    fields = n.fields, tags = n.tags, opted_out = n.opted_out, updated_at = now()
FROM next n
WHERE c.thread = n.thread
  AND (c.first_name <> n.first_name OR c.last_name <> n.last_name OR c.email <> n.email
       OR c.fields IS DISTINCT FROM n.fields OR NOT (c.tags @> n.tags) OR c.opted_out <> n.opted_out)
RETURNING c.thread;

-- name: import_finish
-- Mark an import committed with its result.
UPDATE contact_imports SET status = $2, result = $3::jsonb, committed_at = now() WHERE import_id = $1;

-- name: import_drop_rows
-- Drop an import's staging rows once committed.
DELETE FROM contact_import_rows WHERE import_id = $1;

-- name: import_drop_stale
-- Staging left behind by an import that never committed (a client that died).
DELETE FROM contact_import_rows WHERE import_id IN (
    SELECT import_id FROM contact_imports WHERE status = 'staging' AND created_at < now() - interval '1 day'
);

-- name: import_merged_count
-- How many contacts the merged file holds.
SELECT count(*) FROM import_merged;

-- name: import_abort
-- Abort an import still staging.
UPDATE contact_imports SET status = 'aborted' WHERE import_id = $1 AND status = 'staging';

-- name: claim_trigger_window
-- $5 is the window (interval). Returns a row when this event may fire the trigger.
INSERT INTO trigger_windows AS w (thread, trigger_type, event_id, fired_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (thread, trigger_type) DO UPDATE
    SET event_id = EXCLUDED.event_id, fired_at = EXCLUDED.fired_at
    WHERE w.event_id = EXCLUDED.event_id OR w.fired_at <= EXCLUDED.fired_at - $5::interval
RETURNING event_id;
