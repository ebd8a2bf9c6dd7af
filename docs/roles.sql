-- Postgres roles for a production Replyline: one login role per service, each allowed
-- to change only its own slice, plus a read-only role for operators and reports.
--
-- Order (see docs/operations.md, "Production checklist"):
--   1. as the database owner:  replyline migrate            (creates every slice)
--   2. as the database owner:  psql "$OWNER_URL" -v ON_ERROR_STOP=1 -f docs/roles.sql
--   3. set each role's password from your secret store (never in this file):
--        ALTER ROLE replyline_router PASSWORD '...';
--   4. give each service its own REPLYLINE_DATABASE_URL with its role.
--
-- Services still call migrate() at start-up; with the schema at the current version
-- that only reads schema_migrations, so they need no DDL rights. Deploying a version
-- with new migrations means running step 1 (and this file again) before the services.
-- The file is idempotent. When a slice gains a table, add it to that slice's block
-- (tests/ops/test_roles.py fails until every table of every slice is granted).
-- Nobody reads another slice's tables: a slice exports versioned read views
-- (<slice>_v<N>_<what>, created by its own migrations; DESIGN.md, "Reading another
-- slice") and readers get SELECT on those views only. A view runs with its owner's
-- rights, so the reader needs no grant on the tables behind it.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['replyline_ingest', 'replyline_router', 'replyline_drafter',
                             'replyline_sender', 'replyline_scheduler', 'replyline_readonly'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        END IF;
    END LOOP;
END
$$;

-- No service creates objects; only the owner (step 1) does.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO replyline_ingest, replyline_router, replyline_drafter,
    replyline_sender, replyline_scheduler, replyline_readonly;

-- Shared by all: the readiness check reads the slice versions; everyone appends to
-- the audit log, which nobody may change (its trigger refuses UPDATE and DELETE too).
GRANT SELECT ON schema_migrations TO replyline_ingest, replyline_router, replyline_drafter,
    replyline_sender, replyline_scheduler;
GRANT INSERT ON audit_log TO replyline_ingest, replyline_router, replyline_drafter,
    replyline_sender, replyline_scheduler;
GRANT USAGE ON SEQUENCE audit_log_id_seq TO replyline_ingest, replyline_router,
    replyline_drafter, replyline_sender, replyline_scheduler;

-- Each slice's transactional outbox (libs/event_outbox.py) belongs to that slice alone:
-- a row there is published with the slice's own NATS credentials, so no other service
-- may write one.
GRANT SELECT, INSERT, DELETE ON ingest_event_outbox TO replyline_ingest;
GRANT USAGE ON SEQUENCE ingest_event_outbox_id_seq TO replyline_ingest;
GRANT SELECT, INSERT, DELETE ON router_event_outbox TO replyline_router;
GRANT USAGE ON SEQUENCE router_event_outbox_id_seq TO replyline_router;
GRANT SELECT, INSERT, DELETE ON drafter_event_outbox TO replyline_drafter;
GRANT USAGE ON SEQUENCE drafter_event_outbox_id_seq TO replyline_drafter;
GRANT SELECT, INSERT, DELETE ON sender_event_outbox TO replyline_sender;
GRANT USAGE ON SEQUENCE sender_event_outbox_id_seq TO replyline_sender;
GRANT SELECT, INSERT, DELETE ON scheduler_event_outbox TO replyline_scheduler;
GRANT USAGE ON SEQUENCE scheduler_event_outbox_id_seq TO replyline_scheduler;

-- ingest: raw webhooks, API tokens, dashboard sessions.
GRANT SELECT, INSERT, UPDATE, DELETE ON inbound_messages, api_tokens, dashboard_sessions
    TO replyline_ingest;
GRANT USAGE ON SEQUENCE inbound_messages_id_seq, api_tokens_id_seq TO replyline_ingest;
-- The dashboard and the conversation export (GET /api/export) read the other slices
-- through their read views only (ingest changes them through events), and the
-- shared audit log.
GRANT SELECT ON audit_log TO replyline_ingest;
GRANT SELECT ON ingest_v1_inbound, router_v1_decisions, router_v1_threads, drafter_v1_drafts,
    drafter_v1_decisions, drafter_v1_human_replies, sender_v1_outbound, sender_v1_delivery_events,
    scheduler_v1_outcomes TO replyline_ingest;
-- Earlier versions of this file let ingest read these tables directly: take that back.
REVOKE ALL ON routing_decisions, thread_controls, drafts, outbound_messages, approvals,
    delivery_events, conversation_outcomes FROM replyline_ingest;

-- router: routing decisions and pause / opt-out state.
GRANT SELECT, INSERT, UPDATE, DELETE ON routing_decisions, thread_controls TO replyline_router;
GRANT USAGE ON SEQUENCE routing_decisions_id_seq TO replyline_router;

-- drafter: drafts (every version), approvals, AI traces, the manual queue,
-- thread refs and human replies (takeover), held bursts, after-hours acknowledgements.
GRANT SELECT, INSERT, UPDATE, DELETE ON drafts, approvals, ai_traces, manual_queue,
    thread_refs, human_replies, bursts, burst_messages, after_hours_acks TO replyline_drafter;
GRANT USAGE ON SEQUENCE drafts_id_seq, approvals_id_seq, ai_traces_id_seq, manual_queue_id_seq,
    burst_messages_id_seq, draft_ref_seq TO replyline_drafter;

-- sender: the outbox, delivery events, its consent projection, time zones.
GRANT SELECT, INSERT, UPDATE, DELETE ON outbound_messages, delivery_events, consent,
    contact_time_zones TO replyline_sender;
GRANT USAGE ON SEQUENCE delivery_events_id_seq TO replyline_sender;

-- scheduler: contacts and workflows.
GRANT SELECT, INSERT, UPDATE, DELETE ON contacts, workflow_definitions, workflow_enrollments,
    workflow_executions, conversation_outcomes, workflow_switches, contact_imports,
    trigger_windows TO replyline_scheduler;
GRANT USAGE ON SEQUENCE workflow_executions_id_seq, conversation_outcomes_id_seq
    TO replyline_scheduler;

-- Operators (`replyline thread`, reports, the messages view): read everything (tables and
-- views), change nothing.
GRANT SELECT ON ALL TABLES IN SCHEMA public TO replyline_readonly;
