-- Human takeover (issue 13) in the `messages` lifecycle:
-- * a lead message the router forwarded to the owners during a takeover keeps its
--   routing status HUMAN_TAKEOVER (it was never drafted);
-- * a person's reply to a lead (the drafter's human_replies: SMS SEND, API,
--   dashboard) is type 'human_reply', sender = its author (owner number,
--   "api:<token>", "dashboard:<user>"), in reply to the lead's latest message
--   before it. Status: APPROVED_TO_SEND until the sender's outbox row (same
--   request_id) says SENT / FAILED_SEND (REFUSED by the consent gate counts as
--   FAILED_SEND, as for drafts). The outbox row is not listed a second time.
-- Still read-only over the slices; same columns as 0001 (CREATE OR REPLACE VIEW).
CREATE OR REPLACE VIEW messages AS
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
FROM inbound_messages i
LEFT JOIN routing_decisions rd ON rd.message_sid = i.message_sid
UNION ALL
SELECT 'draft:' || d.draft_id || ':' || d.version,
       d.thread,
       CASE WHEN d.in_reply_to <> '' THEN 'inbound:' || d.in_reply_to END,
       NULL,
       d.to_number,
       d.body,
       '[]'::jsonb,
       CASE
           WHEN o.status = 'SENT' THEN 'SENT'
           WHEN o.status IN ('FAILED_SEND', 'REFUSED') THEN 'FAILED_SEND'
           -- An older version replaced by an owner's edit was never approved.
           WHEN d.status = 'SUPERSEDED' THEN 'REJECTED'
           ELSE d.status
       END,
       'reply',
       d.created_at,
       d.version
FROM drafts d
LEFT JOIN outbound_messages o
       ON o.draft_id = d.draft_id::text AND o.draft_version = d.version
UNION ALL
SELECT 'human:' || h.request_id,
       h.thread,
       (SELECT 'inbound:' || i.message_sid FROM inbound_messages i
         WHERE i.thread = h.thread AND i.received_at <= h.created_at
         ORDER BY i.received_at DESC LIMIT 1),
       h.author,
       h.number,
       h.body,
       '[]'::jsonb,
       CASE
           WHEN o.status = 'SENT' THEN 'SENT'
           WHEN o.status IN ('FAILED_SEND', 'REFUSED') THEN 'FAILED_SEND'
           WHEN o.status IS NULL AND h.status IN ('failed', 'refused') THEN 'FAILED_SEND'
           ELSE 'APPROVED_TO_SEND'
       END,
       'human_reply',
       h.created_at,
       NULL
FROM human_replies h
LEFT JOIN outbound_messages o
       ON o.kind = 'human_reply' AND o.request_id = h.request_id
UNION ALL
SELECT 'outbound:' || o.id,
       regexp_replace(o.to_number, '[^0-9A-Za-z]', '', 'g'),
       CASE WHEN o.in_reply_to IS NOT NULL THEN 'inbound:' || o.in_reply_to END,
       NULL,
       o.to_number,
       o.body,
       to_jsonb(o.media_urls),
       CASE
           WHEN o.status = 'SENT' THEN 'SENT'
           WHEN o.status IN ('FAILED_SEND', 'REFUSED') THEN 'FAILED_SEND'
           ELSE 'APPROVED_TO_SEND'
       END,
       o.kind,
       o.created_at,
       NULL
FROM outbound_messages o
WHERE o.draft_id IS NULL
  -- A person's reply is listed once, from human_replies above (who wrote it).
  AND NOT (o.kind = 'human_reply' AND EXISTS (
      SELECT 1 FROM human_replies h WHERE h.request_id = o.request_id));
