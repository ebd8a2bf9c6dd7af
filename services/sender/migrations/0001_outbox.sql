-- The sender's slice: the outbox, delivery events and its consent projection.

-- One row per message the sender was asked to deliver. dedup_key is the
-- triggering event's dedup id (draft id + version, or the request id), so a
-- redelivered or republished request never makes a second row.
CREATE TABLE outbound_messages (
    id                      UUID PRIMARY KEY,
    dedup_key               TEXT NOT NULL UNIQUE,
    kind                    TEXT NOT NULL,
    to_number               TEXT NOT NULL,
    body                    TEXT NOT NULL,
    media_urls              TEXT[] NOT NULL DEFAULT '{}',
    lead_facing             BOOLEAN NOT NULL,
    draft_id                TEXT,
    draft_version           INTEGER,
    request_id              TEXT,
    in_reply_to             TEXT,
    workflow_enrollment_id  TEXT,
    status                  TEXT NOT NULL DEFAULT 'PENDING' CHECK (status IN (
                                'PENDING',      -- accepted, not yet attempted (or retry due)
                                'DEFERRED',     -- waiting for quiet hours / not_before (timer set)
                                'SENDING',      -- API call in progress; left behind by a crash
                                'UNKNOWN',      -- outcome unknown: reconcile before any resend
                                'SENT',         -- the provider accepted it (provider_sid set)
                                'FAILED_SEND',  -- permanent failure, never retried
                                'REFUSED'       -- blocked by the consent gate
                            )),
    attempts                INTEGER NOT NULL DEFAULT 0,
    not_before              TIMESTAMPTZ,        -- deferred until
    retry_at                TIMESTAMPTZ,        -- next attempt after a transient error
    provider_sid            TEXT UNIQUE,
    provider_status         TEXT,               -- latest delivery status from callbacks
    error_code              INTEGER,
    error_message           TEXT,
    failure_reason          TEXT,
    event_published         BOOLEAN NOT NULL DEFAULT false,  -- outbound.sent / failed is on the bus
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    sending_started_at      TIMESTAMPTZ,
    sent_at                 TIMESTAMPTZ
);
CREATE INDEX outbound_messages_open ON outbound_messages (updated_at)
    WHERE status IN ('PENDING', 'DEFERRED', 'SENDING', 'UNKNOWN') OR NOT event_published;
CREATE INDEX outbound_messages_to ON outbound_messages (to_number, created_at);

-- Every status callback (via ingest's outbound.status events), once per sid and status.
CREATE TABLE delivery_events (
    id              BIGSERIAL PRIMARY KEY,
    provider_sid    TEXT NOT NULL,
    status          TEXT NOT NULL,
    error_code      INTEGER,
    event_id        TEXT NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (provider_sid, status)
);

-- The sender's own projection of opt-outs (contact.optout / contact.optin and
-- provider error 21610). Last change wins by the time it happened.
CREATE TABLE consent (
    number          TEXT PRIMARY KEY,
    opted_out       BOOLEAN NOT NULL,
    keyword         TEXT NOT NULL DEFAULT '',
    source          TEXT NOT NULL,
    event_id        TEXT,
    changed_at      TIMESTAMPTZ NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Time zones learned from contact.updated (field timezone / time_zone / tz).
CREATE TABLE contact_time_zones (
    number          TEXT PRIMARY KEY,
    time_zone       TEXT NOT NULL,
    changed_at      TIMESTAMPTZ NOT NULL
);
