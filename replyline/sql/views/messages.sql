-- version: 5
-- The `messages` lifecycle view over the slices, so a message's lifecycle is queryable
-- in one place: RECEIVED, NEEDS_REVIEW, HUMAN_TAKEOVER, DRAFT_PENDING_APPROVAL,
-- APPROVED_TO_SEND, REJECTED, SENT, FAILED_SEND, PAUSED_THREAD. It reads each slice's
-- versioned read views (ingest_v1_inbound, router_v1_decisions, drafter_v1_drafts,
-- drafter_v1_human_replies, sender_v1_outbound), never their tables, so a slice can
-- change its tables without breaking it (docs/DESIGN.md, "Reading another slice").
--
-- A view holds no data, so this file is its ONE current definition, not a history:
-- `replyline migrate` (and `replyline dev`) drop and recreate it on every run, after
-- every slice, and record the version above in schema_migrations (slice `views`).
-- Change it in place and bump the version (versions 1-3 were numbered files).
--
-- A person's reply to a lead (the drafter's human_replies: SMS SEND, API, dashboard)
-- is type 'human_reply', sender = its author (owner number, "api:<token>",
-- "dashboard:<user>"), in reply to the lead's latest message before it. Status:
-- APPROVED_TO_SEND until the sender's outbox row (same request_id) says SENT /
-- FAILED_SEND (REFUSED by the consent gate counts as FAILED_SEND, as for drafts); that
-- outbox row is not listed a second time.
--
-- What the sender's row says of a reply's lifecycle is one mapping for every kind of
-- reply: SENT, FAILED_SEND (a consent refusal included), or NULL while in flight (then
-- the reply's own state decides).
DROP VIEW IF EXISTS messages;
CREATE OR REPLACE FUNCTION messages_send_status(outbound_status text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
               WHEN outbound_status = 'SENT' THEN 'SENT'
               WHEN outbound_status IN ('FAILED_SEND', 'REFUSED') THEN 'FAILED_SEND'
           END
$$;
CREATE VIEW messages AS
SELECT 'inbound:' || i.message_sid                      AS id,
       i.thread                                         AS thread_id,
       NULL::text                                       AS in_reply_to_id,
       i.from_number                                    AS sender,
       i.to_number                                      AS receiver,
       i.body                                           AS body,
       i.media                                          AS media,
       CASE
           WHEN rd.rule IN ('paused') THEN 'PAUSED_THREAD'
           ELSE coalesce(rd.status, 'RECEIVED')
       END                                              AS status,
       'inbound'                                        AS type,
       i.received_at                                    AS "timestamp",
       NULL::integer                                    AS draft_version
FROM ingest_v1_inbound i
LEFT JOIN router_v1_decisions rd ON rd.message_sid = i.message_sid
UNION ALL
SELECT 'draft:' || d.draft_id || ':' || d.version,
       d.thread,
       CASE WHEN d.in_reply_to <> '' THEN 'inbound:' || d.in_reply_to END,
       NULL,
       d.to_number,
       d.body,
       '[]'::jsonb,
       coalesce(messages_send_status(o.status),
                -- An older version replaced by an owner's edit was never approved.
                CASE WHEN d.status = 'SUPERSEDED' THEN 'REJECTED' ELSE d.status END),
       'reply',
       d.created_at,
       d.version
FROM drafter_v1_drafts d
LEFT JOIN sender_v1_outbound o
       ON o.draft_id = d.draft_id::text AND o.draft_version = d.version
UNION ALL
SELECT 'human:' || h.request_id,
       h.thread,
       (SELECT 'inbound:' || i.message_sid FROM ingest_v1_inbound i
         WHERE i.thread = h.thread AND i.received_at <= h.created_at
         ORDER BY i.received_at DESC LIMIT 1),
       h.author,
       h.number,
       h.body,
       '[]'::jsonb,
       coalesce(messages_send_status(o.status),
                CASE WHEN o.status IS NULL AND h.status IN ('failed', 'refused') THEN 'FAILED_SEND' END,
                'APPROVED_TO_SEND'),
       'human_reply',
       h.created_at,
       NULL
FROM drafter_v1_human_replies h
LEFT JOIN sender_v1_outbound o
       ON o.kind = 'human_reply' AND o.request_id = h.request_id
UNION ALL
SELECT 'outbound:' || o.id,
       regexp_replace(o.to_number, '[^0-9A-Za-z]', '', 'g'),
       CASE WHEN o.in_reply_to IS NOT NULL THEN 'inbound:' || o.in_reply_to END,
       NULL,
       o.to_number,
       o.body,
       to_jsonb(o.media_urls),
       coalesce(messages_send_status(o.status), 'APPROVED_TO_SEND'),
       o.kind,
       o.created_at,
       NULL
FROM sender_v1_outbound o
WHERE o.draft_id IS NULL
  -- A person's reply is listed once, from the human replies above (who wrote it).
  AND NOT (o.kind = 'human_reply' AND EXISTS (
      SELECT 1 FROM drafter_v1_human_replies h WHERE h.request_id = o.request_id));
