"""Recording an inbound SMS exactly once: row, event and audit, or nothing.

One outbox unit (libs/event_outbox.py) per batch: the rows, their audit rows and
the inbound.received events (as outbox rows) commit together; the events are
published right after the commit, and only then is the webhook answered 200. If
the publish fails after the commit the webhook answers 5xx (``NotPublished``) and
Twilio retries; the retry finds the row (a duplicate) and publishes whatever of
that message's events is still in the outbox before answering 200 (the sweeper
would publish them within seconds anyway). A concurrent retry blocks on the unique
index until the first attempt commits (then it is a duplicate) or rolls back (then
it records). So a 200 always means the message is stored and its events are in
the stream; an event is never in the stream before its row is committed.

Opt-outs: an inbound that is an opt-out (libs/consent_keywords.py, the router's
own rule) also emits its ``contact.optout`` in the same unit, published after the
inbound.received and before the 200. Any STOP Replyline has acknowledged is
therefore in the stream ahead of whatever is approved afterwards, however far the
router lags (DESIGN.md, "Consent ordering"). The router publishes the same event
(same id) when it routes the STOP; JetStream keeps one.

Group commit: webhooks that arrive while transactions are in flight share the
next one (one multi-row INSERT, one audit INSERT, one outbox INSERT, one COMMIT,
then the publishes awaited together), so under load Postgres does a handful of
statements per batch instead of several round trips per message. A batch fails or
commits as a whole; rows are inserted in MessageSid order so two batches never
deadlock. ``inbound_messages.stream_seq`` is no longer filled: the sequence is only
known after the commit and nothing reads it (the router takes the sequence from
its own delivery).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import msgspec

from libs.consent_keywords import match_keyword, optout_event
from libs.db import Queries
from libs.event_outbox import EventOutbox, Unit
from libs.events import ContactOptout, Event, InboundReceived, thread_of, utcnow
from libs.tracing import current_traceparent, trace_id_of
from services.ingest.twilio_payload import InboundSms, RawForm

SERVICE = "ingest"


@dataclass(frozen=True, slots=True)
class Recorded:
    duplicate: bool
    thread: str
    event_id: str | None = None


class InboundRecorder(Protocol):
    async def record(self, sms: InboundSms, raw: RawForm) -> Recorded: ...


def inbound_event(sms: InboundSms, received_at: datetime) -> InboundReceived:
    # Every field of the webhook payload is one of the event's, under the same name.
    return InboundReceived(
        **msgspec.structs.asdict(sms), thread=thread_of(sms.from_number), received_at=received_at
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
        outbox: EventOutbox,
        queries: Queries,
        *,
        concurrency: int = 2,
        max_batch: int = 256,
        owner_numbers: frozenset[str] = frozenset(),
    ) -> None:
        self._owner_numbers = owner_numbers
        self._outbox = outbox
        self._q = queries
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
        results: dict[int, Recorded] = {}
        duplicates: list[_Pending] = []
        async with self._outbox.unit(must_publish=True) as u:
            rows = await u.conn.fetch(self._q.insert_inbound_batch, *_columns(fresh))
            new_sids = {r["message_sid"] for r in rows}
            audits: list[tuple[str, str, str, str | None]] = []
            for item in batch:
                sid = item.sms.message_sid
                if first[sid] is item and sid in new_sids:
                    self._emit(u, item)
                    results[id(item)] = Recorded(False, item.event.thread, item.event.id)
                    audits.append(
                        ("inbound.received", item.event.thread, _received_details(item), item.traceparent)
                    )
                else:
                    if sid not in new_sids:
                        # Committed by an earlier attempt, which may not have published yet.
                        duplicates.append(item)
                    results[id(item)] = Recorded(True, item.event.thread)
                    details = json.dumps({"message_sid": sid})
                    audits.append(("inbound.duplicate", item.event.thread, details, item.traceparent))
            await u.conn.execute(
                self._q.insert_audit_batch,
                [a[0] for a in audits],
                [a[1] for a in audits],
                [a[2] for a in audits],
                [trace_id_of(a[3]) for a in audits],
            )
        if duplicates:
            # A 200 for a retry means its events are out too: publish what the earlier
            # attempt left in the outbox (same Nats-Msg-Ids, so never twice in the stream).
            await self._outbox.publish_pending([m for p in duplicates for m in self._msg_ids(p)])
        return results

    def _events(self, item: _Pending) -> list[Event]:
        optout = opt_out_of(item.event, self._owner_numbers)
        return [item.event] if optout is None else [item.event, optout]

    def _msg_ids(self, item: _Pending) -> list[str]:
        return [e.dedup_id() for e in self._events(item)]

    def _emit(self, u: Unit, item: _Pending) -> None:
        # Each event carries its own webhook's trace, not the flushing request's.
        token = current_traceparent.set(item.traceparent)
        try:
            for event in self._events(item):
                u.emit(event)
        finally:
            current_traceparent.reset(token)


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


def _received_details(item: _Pending) -> str:
    sms = item.sms
    return json.dumps(
        {
            "message_sid": sms.message_sid,
            "from": sms.from_number,
            "to": sms.to_number,
            "num_media": sms.num_media,
            "event_id": item.event.id,
        }
    )
