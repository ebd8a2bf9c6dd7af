-- Triggers that fire at most once per window per contact (call_missed: a caller who
-- rings three times in ten minutes is texted back once). One row per thread and
-- trigger: the event that last fired it and when; a redelivery of that same event
-- still passes (its enrollment is found by event id), any other inside the window not.
CREATE TABLE trigger_windows (
    thread          text NOT NULL,
    trigger_type    text NOT NULL,
    event_id        text NOT NULL,
    fired_at        timestamptz NOT NULL,
    PRIMARY KEY (thread, trigger_type)
);
