-- The original data model's `messages`, as a read-only view over the services'
-- slices, so a message's lifecycle is queryable in one place:
-- RECEIVED, NEEDS_REVIEW, DRAFT_PENDING_APPROVAL, APPROVED_TO_SEND, REJECTED,
-- SENT, FAILED_SEND, PAUSED_THREAD. Applied by `replyline migrate` (and
-- `replyline dev`) after every slice, since it reads them all.
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
WHERE o.draft_id IS NULL;
