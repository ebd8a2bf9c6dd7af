"""Recording an inbound SMS exactly once: row, event and audit, or nothing.

Order: insert the row in a transaction, publish inbound.received (Nats-Msg-Id from
the MessageSid), then commit. If the publish fails the transaction rolls back and
the webhook answers 5xx, so Twilio's retry starts from scratch. If the commit fails
after a successful publish, the retry publishes again and JetStream's duplicate
window drops the copy. A concurrent retry blocks on the unique index until the
first attempt commits (then it is a duplicate) or rolls back (then it records).
So a committed row always means the event is in the stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg

from libs.db import Queries, audit
from libs.events import Event, InboundReceived, thread_of, utcnow
from services.ingest.twilio_payload import InboundSms, RawForm

SERVICE = "ingest"

#: Publishes an event and returns its stream sequence.
PublishFn = Callable[[Event], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Recorded:
    duplicate: bool
    thread: str
    event_id: str | None = None
    stream_seq: int | None = None


class InboundRecorder(Protocol):
    async def record(self, sms: InboundSms, raw: RawForm) -> Recorded: ...


def inbound_event(sms: InboundSms, received_at: datetime) -> InboundReceived:
    return InboundReceived(
        thread=thread_of(sms.from_number),
        message_sid=sms.message_sid,
        from_number=sms.from_number,
        to_number=sms.to_number,
        body=sms.body,
        num_media=sms.num_media,
        media=sms.media,
        num_segments=sms.num_segments,
        account_sid=sms.account_sid,
        messaging_service_sid=sms.messaging_service_sid,
        opt_out_type=sms.opt_out_type,
        received_at=received_at,
    )


class PgInboundRecorder:
    def __init__(self, pool: asyncpg.Pool, queries: Queries, publish: PublishFn) -> None:
        self._pool = pool
        self._q = queries
        self._publish = publish

    async def record(self, sms: InboundSms, raw: RawForm) -> Recorded:
        event = inbound_event(sms, utcnow())
        media = [{"url": m.url, "content_type": m.content_type} for m in sms.media]
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                row_id = await conn.fetchval(
                    self._q.insert_inbound,
                    sms.message_sid,
                    sms.account_sid,
                    sms.messaging_service_sid,
                    sms.from_number,
                    sms.to_number,
                    event.thread,
                    sms.body,
                    sms.num_media,
                    media,
                    raw,
                    event.id,
                    event.received_at,
                )
                if row_id is not None:
                    seq = await self._publish(event)
                    await conn.execute(self._q.set_inbound_seq, row_id, seq)
                    await audit(
                        conn,
                        service=SERVICE,
                        action="inbound.received",
                        thread=event.thread,
                        details={
                            "message_sid": sms.message_sid,
                            "from": sms.from_number,
                            "to": sms.to_number,
                            "num_media": sms.num_media,
                            "event_id": event.id,
                            "stream_seq": seq,
                        },
                    )
                    return Recorded(False, event.thread, event.id, seq)
            # Already committed by an earlier attempt, which means it was published.
            await audit(
                conn,
                service=SERVICE,
                action="inbound.duplicate",
                thread=event.thread,
                details={"message_sid": sms.message_sid},
            )
            return Recorded(True, event.thread)
