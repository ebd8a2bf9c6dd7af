-- The scheduler's slice: contacts, workflows, enrollments, step executions, outcomes.

CREATE TABLE contacts (
    thread          text PRIMARY KEY,            -- E.164 without '+', the subject token
    phone           text NOT NULL,
    first_name      text NOT NULL DEFAULT '',
    last_name       text NOT NULL DEFAULT '',
    email           text NOT NULL DEFAULT '',
    fields          jsonb NOT NULL DEFAULT '{}'::jsonb,   -- custom fields (source, ...)
    tags            text[] NOT NULL DEFAULT '{}',
    last_sms_reply  text,
    last_reply_at   timestamptz,
    last_outbound_at timestamptz,
    opted_out       boolean NOT NULL DEFAULT false,
    paused          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every version of every definition ever loaded; enrollments pin a version.
CREATE TABLE workflow_definitions (
    workflow_key    text NOT NULL,
    version         integer NOT NULL,
    name            text NOT NULL,
    trigger_type    text NOT NULL,
    definition      jsonb NOT NULL,
    source          text NOT NULL DEFAULT '',
    active          boolean NOT NULL DEFAULT true,
    loaded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_key, version)
);

CREATE TABLE workflow_enrollments (
    id              uuid PRIMARY KEY,
    workflow_key    text NOT NULL,
    workflow_version integer NOT NULL,
    thread          text NOT NULL REFERENCES contacts (thread),
    -- active: running steps; waiting: on a delay / reply timer; paused: held
    -- (lead replied, human pause, approval); completed / ended: finished.
    status          text NOT NULL CHECK (status IN ('active', 'waiting', 'paused', 'completed', 'ended')),
    current_step    text,
    waiting_for     text,                        -- delay | reply | approval
    timer_id        text,
    step_seq        integer NOT NULL DEFAULT 0,  -- executions so far; names timers and requests
    replied         boolean NOT NULL DEFAULT false,
    pause_reason    text,
    ended_reason    text,
    trigger_event   text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    FOREIGN KEY (workflow_key, workflow_version) REFERENCES workflow_definitions (workflow_key, version)
);

-- One live enrollment per contact and workflow (the engine also refuses a
-- second one after completion unless the workflow allows re-enrollment).
CREATE UNIQUE INDEX workflow_enrollments_one_live
    ON workflow_enrollments (workflow_key, thread)
    WHERE status IN ('active', 'waiting', 'paused');
CREATE INDEX workflow_enrollments_thread ON workflow_enrollments (thread, status);

CREATE TABLE workflow_executions (
    id              bigserial PRIMARY KEY,
    enrollment_id   uuid NOT NULL REFERENCES workflow_enrollments (id),
    seq             integer NOT NULL,
    step_id         text NOT NULL,
    step_type       text NOT NULL,
    input           jsonb NOT NULL DEFAULT '{}'::jsonb,
    output          jsonb,
    error           text,
    late            boolean NOT NULL DEFAULT false,
    started_at      timestamptz NOT NULL,
    completed_at    timestamptz,
    UNIQUE (enrollment_id, seq)
);

CREATE TABLE conversation_outcomes (
    id              bigserial PRIMARY KEY,
    thread          text NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN
                        ('success', 'qualified', 'unqualified', 'escalated', 'no_response', 'discarded')),
    reason          text NOT NULL,               -- goal_reached, opt_out, escalation, no_reply, ...
    decided_by      text NOT NULL CHECK (decided_by IN ('rule', 'llm')),
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    source_event    text NOT NULL,               -- event id that ended the conversation
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (thread, source_event)
);
CREATE INDEX conversation_outcomes_thread ON conversation_outcomes (thread, created_at DESC);
