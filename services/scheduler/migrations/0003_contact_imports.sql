-- Contact imports (replyline contacts import, POST /api/contacts/import): rows are
-- staged in batches, then merged into contacts in one transaction, so an import is
-- all or nothing however many batches it took.
CREATE TABLE contact_imports (
    import_id       uuid PRIMARY KEY,
    source          text NOT NULL DEFAULT '',
    status          text NOT NULL CHECK (status IN ('staging', 'committed', 'aborted')),
    result          jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    committed_at    timestamptz
);

-- Unlogged: staging is disposable (a crash loses it and the commit's row count check
-- refuses the import, which is then simply run again).
CREATE UNLOGGED TABLE contact_import_rows (
    import_id       uuid NOT NULL,
    line            integer NOT NULL,
    thread          text NOT NULL,
    phone           text NOT NULL,
    first_name      text NOT NULL,
    last_name       text NOT NULL,
    email           text NOT NULL,
    tags            text[] NOT NULL,
    fields          jsonb NOT NULL,
    opted_out       boolean NOT NULL,
    PRIMARY KEY (import_id, line)
);
