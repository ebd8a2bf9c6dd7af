"""Recording an inbound SMS exactly once: row, event and audit, or nothing.

Order: insert the row in a transaction, publish inbound.received (Nats-Msg-Id from
the MessageSid), then commit. If the publish fails the transaction rolls back and
the webhook answers 5xx, so Twilio's retry starts from scratch. If the commit fails
after a successful publish, the retry publishes again and JetStream's duplicate
window drops the copy. A concurrent retry blocks on the unique index until the
first attempt commits (then it is a duplicate) or rolls back (then it records).
So a committed row always means the event is in the stream.

Opt-outs: an inbound that is an opt-out (libs/consent_keywords.py, the router's
own rule) also gets its ``contact.optout`` published in the same step, before the
commit and so before the 200. Any STOP Replyline has acknowledged is therefore in
the stream ahead of whatever is approved afterwards, however far the router lags
(DESIGN.md, "Consent ordering"). The router publishes the same event (same id) when
it routes the STOP; JetStream keeps one.

Group commit: webhooks that arrive while transactions are in flight share the
next one (one multi-row INSERT, the publishes awaited together, one UPDATE, one
audit INSERT, one COMMIT), so under load Postgres does a handful of statements
per batch instead of five round trips per message. A batch fails or commits as
a whole; rows are inserted in MessageSid order so two batches never deadlock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import asyncpg

from libs.consent_keywords import match_keyword, optout_event
from libs.db import Queries
from libs.events import ContactOptout, Event, InboundReceived, thread_of, utcnow
from libs.tracing import current_traceparent, trace_id_of
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


@dataclass(slots=True)
class _Pending:
    sms: InboundSms
    raw: RawForm
    event: InboundReceived
    traceparent: str | None
    done: asyncio.Future[Recorded] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class PgInboundRecorder:
    """Records webhooks with group commit; at most ``concurrency`` transactions at once."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        queries: Queries,
        publish: PublishFn,
        *,
        concurrency: int = 2,
        max_batch: int = 256,
        owner_numbers: frozenset[str] = frozenset(),
    ) -> None:
        self._owner_numbers = owner_numbers
        self._pool = pool
        self._q = queries
        self._publish = publish
        self._concurrency = concurrency
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._active = 0
        self._changed = asyncio.Condition()

    async def record(self, sms: InboundSms, raw: RawForm) -> Recorded:
        item = _Pending(sms, raw, inbound_event(sms, utcnow()), current_traceparent.get())
        self._queue.append(item)
        async with self._changed:
            # Either a transaction slot is free (then this request flushes the queue up
            # to and including its own item) or an in-flight flush picks the item up.
            await self._changed.wait_for(lambda: item.done.done() or self._active < self._concurrency)
            if item.done.done():
                return item.done.result()
            self._active += 1
        try:
            while not item.done.done() and self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                await self._flush(batch)
        finally:
            async with self._changed:
                self._active -= 1
                self._changed.notify_all()
        # Done, or taken by another flush still in flight: its result arrives with it.
        return await item.done

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            results = await self._commit(sorted(batch, key=lambda p: p.sms.message_sid))
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else ConnectionError("recording interrupted")
            for item in batch:
                item.done.set_exception(failure)
            if failure is not exc:
                raise
        else:
            for item in batch:
                item.done.set_result(results[id(item)])
        async with self._changed:
            self._changed.notify_all()

    async def _commit(self, batch: list[_Pending]) -> dict[int, Recorded]:
        # The first of several copies of one MessageSid in a batch is the one inserted.
        first: dict[str, _Pending] = {}
        for item in batch:
            first.setdefault(item.sms.message_sid, item)
        fresh = list(first.values())
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(self._q.insert_inbound_batch, *_columns(fresh))
            new_ids = {r["message_sid"]: r["id"] for r in rows}
            inserted = [p for p in fresh if p.sms.message_sid in new_ids]
            seqs = await asyncio.gather(*(self._publish_as(p) for p in inserted))
            if inserted:
                await conn.execute(
                    self._q.set_inbound_seqs,
                    [new_ids[p.sms.message_sid] for p in inserted],
                    list(seqs),
                )
            seq_of = {p.sms.message_sid: seq for p, seq in zip(inserted, seqs, strict=True)}
            results: dict[int, Recorded] = {}
            audits: list[tuple[str, str, str, str | None]] = []
            for item in batch:
                sid = item.sms.message_sid
                if first[sid] is item and sid in seq_of:
                    seq = seq_of[sid]
                    results[id(item)] = Recorded(False, item.event.thread, item.event.id, seq)
                    details = _received_details(item, seq)
                    audits.append(("inbound.received", item.event.thread, details, item.traceparent))
                else:
                    # Committed by an earlier attempt (which means it was published).
                    results[id(item)] = Recorded(True, item.event.thread)
                    details = json.dumps({"message_sid": sid})
                    audits.append(("inbound.duplicate", item.event.thread, details, item.traceparent))
            await conn.execute(
                self._q.insert_audit_batch,
                [a[0] for a in audits],
                [a[1] for a in audits],
                [a[2] for a in audits],
                [trace_id_of(a[3]) for a in audits],
            )
        return results

    async def _publish_as(self, item: _Pending) -> int:
        # Each publish carries its own webhook's trace (this runs in its own task context).
        current_traceparent.set(item.traceparent)
        seq = await self._publish(item.event)
        optout = opt_out_of(item.event, self._owner_numbers)
        if optout is not None:
            await self._publish(optout)
        return seq


def opt_out_of(event: InboundReceived, owner_numbers: frozenset[str]) -> ContactOptout | None:
    """The contact.optout a lead's STOP means, exactly as the router would publish it.

    The owner's numbers are skipped: the router reads their messages as commands
    (DESIGN.md rule 2 comes before rule 3).
    """
    if event.from_number.strip() in owner_numbers:
        return None
    found = match_keyword(event.body, event.opt_out_type)
    if found is None or found[0] != "opt_out":
        return None
    return optout_event(event, found[1])


def _columns(items: list[_Pending]) -> list[list[object]]:
    return [
        [p.sms.message_sid for p in items],
        [p.sms.account_sid for p in items],
        [p.sms.messaging_service_sid for p in items],
        [p.sms.from_number for p in items],
        [p.sms.to_number for p in items],
        [p.event.thread for p in items],
        [p.sms.body for p in items],
        [p.sms.num_media for p in items],
        [json.dumps([{"url": m.url, "content_type": m.content_type} for m in p.sms.media]) for p in items],
        [json.dumps(p.raw) for p in items],
        [p.event.id for p in items],
        [p.event.received_at for p in items],
    ]


def _received_details(item: _Pending, seq: int) -> str:
    sms = item.sms
    return json.dumps(
        {
            "message_sid": sms.message_sid,
            "from": sms.from_number,
            "to": sms.to_number,
            "num_media": sms.num_media,
            "event_id": item.event.id,
            "stream_seq": seq,
        }
    )
