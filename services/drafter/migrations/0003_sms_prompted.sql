-- Whether a draft version was shown whole to the owner by SMS (docs/drafter.md,
-- "Draft length"). A version that was not (too long for one prompt SMS) is left
-- for the dashboard and cannot be approved by SMS: the owner never approves text
-- they were not shown.
ALTER TABLE drafts ADD COLUMN IF NOT EXISTS sms_prompted BOOLEAN NOT NULL DEFAULT true;

-- Versions prompted before this column existed were cut to 1,000 characters in
-- the prompt: the longer ones were not shown whole.
UPDATE drafts SET sms_prompted = false WHERE length(body) > 1000 AND sms_prompted;
