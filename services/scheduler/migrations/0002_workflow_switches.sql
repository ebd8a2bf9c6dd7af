-- Deactivating a workflow is per workflow (every version), not per stored version,
-- and survives restarts: loading the file again does not switch it back on.
CREATE TABLE workflow_switches (
    workflow_key    text PRIMARY KEY,
    enabled         boolean NOT NULL,
    -- owner (API / CLI) | source_file_removed (start-up found its file gone)
    reason          text NOT NULL,
    changed_by      text NOT NULL DEFAULT '',
    changed_at      timestamptz NOT NULL DEFAULT now()
);
