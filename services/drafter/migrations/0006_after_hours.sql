-- After-hours acknowledgements: one per thread per closed period, the period named
-- by the opening that ends it (docs/business-hours.md).
CREATE TABLE after_hours_acks (
    thread          text NOT NULL,
    next_open       timestamptz NOT NULL,
    message_sid     text NOT NULL,
    request_id      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (thread, next_open)
);
