"""Group commit in the inbound recorder: concurrent webhooks share transactions, each stored once."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import msgspec
import pytest

from libs.bus import Bus
from libs.db import migrate
from libs.event_outbox import EventOutbox, NotPublished
from services.ingest.recorder import PgInboundRecorder
from services.ingest.service import MIGRATIONS, QUERIES
from services.ingest.twilio_payload import InboundSms
from testsupport.webhooks import inbound_form


def sms(sid: str, n: int) -> InboundSms:
    form = inbound_form(f"message {n}", from_number=f"+1212555{n:04d}", sid=sid)
    return msgspec.convert(form, InboundSms, strict=False)


@pytest.fixture
async def migrated(pool: asyncpg.Pool) -> asyncpg.Pool:
    await migrate(pool, "ingest", MIGRATIONS)
    return pool


async def stored(bus: Bus, kind: str) -> int:
    """Messages of one event type stored in the stream (every thread)."""
    subject = f"{bus.prefix}{kind}.>"
    info = await bus.js.stream_info(bus.stream, subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


async def test_concurrent_webhooks_share_transactions_and_are_stored_once(
    migrated: asyncpg.Pool, bus: Bus
) -> None:
    outbox = EventOutbox(bus, migrated, "ingest")
    recorder = PgInboundRecorder(outbox, QUERIES, concurrency=2)
    sids = [f"SM{n:032x}" for n in range(120)]
    # Every tenth message is also retried concurrently by "Twilio".
    calls = [sms(sid, n) for n, sid in enumerate(sids)] + [sms(sids[n], n) for n in range(0, 120, 10)]
    results = await asyncio.gather(*(recorder.record(s, {"MessageSid": s.message_sid}) for s in calls))

    assert await stored(bus, "inbound.received") == 120  # one event per MessageSid
    fresh = [r for r in results if not r.duplicate]
    assert len(fresh) == 120 and sum(r.duplicate for r in results) == 12
    rows = await migrated.fetch("SELECT message_sid, event_id, xmin::text AS tx FROM inbound_messages")
    assert sorted(r["message_sid"] for r in rows) == sorted(sids)
    assert {r["event_id"] for r in rows} == {r.event_id for r in fresh}
    transactions = {r["tx"] for r in rows}
    assert len(transactions) <= 20, f"{len(transactions)} transactions for 120 messages"
    audits = await migrated.fetch("SELECT action, count(*) AS n FROM audit_log GROUP BY action")
    assert {r["action"]: r["n"] for r in audits} == {"inbound.received": 120, "inbound.duplicate": 12}
    assert await outbox.pending() == 0


async def test_a_batch_that_fails_before_commit_records_nothing_and_fails_every_webhook(
    migrated: asyncpg.Pool, bus: Bus
) -> None:
    outbox = EventOutbox(bus, migrated, "ingest")
    recorder = PgInboundRecorder(outbox, QUERIES, concurrency=1)
    await migrated.execute("ALTER TABLE audit_log ADD CONSTRAINT no_audit CHECK (false) NOT VALID")
    try:
        calls = [sms(f"SM{n:032x}", n) for n in range(10)]
        results = await asyncio.gather(*(recorder.record(s, {}) for s in calls), return_exceptions=True)
    finally:
        await migrated.execute("ALTER TABLE audit_log DROP CONSTRAINT no_audit")
    assert all(isinstance(r, asyncpg.CheckViolationError) for r in results)
    assert await migrated.fetchval("SELECT count(*) FROM inbound_messages") == 0
    assert await outbox.pending() == 0
    assert await stored(bus, "inbound.received") == 0


async def test_publish_failing_after_commit_fails_the_webhooks_and_their_retries_publish_once(
    migrated: asyncpg.Pool, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NATS away after the commit: 5xx for every webhook of the batch (Twilio retries);
    each retry is a duplicate and publishes the leftovers (the STOP's opt-out too)
    before it answers, each event once in the stream."""
    outbox = EventOutbox(bus, migrated, "ingest")
    recorder = PgInboundRecorder(outbox, QUERIES, concurrency=1)
    publish = outbox._publish

    async def nats_away(rows: Any) -> Any:
        raise ConnectionError("NATS is not connected")

    monkeypatch.setattr(outbox, "_publish", nats_away)
    calls = [sms(f"SM{n:032x}", n) for n in range(9)]
    stop = inbound_form("STOP", from_number="+12125559999", sid=f"SM{99:032x}")
    calls.append(msgspec.convert(stop, InboundSms, strict=False))
    results = await asyncio.gather(*(recorder.record(s, {}) for s in calls), return_exceptions=True)
    assert all(isinstance(r, NotPublished) for r in results)
    assert await migrated.fetchval("SELECT count(*) FROM inbound_messages") == 10
    assert await outbox.pending() == 11  # ten inbound.received, one contact.optout
    assert await stored(bus, "inbound.received") == 0

    monkeypatch.setattr(outbox, "_publish", publish)
    retried = await asyncio.gather(*(recorder.record(s, {}) for s in calls))
    assert all(r.duplicate for r in retried)
    assert await outbox.pending() == 0
    assert await stored(bus, "inbound.received") == 10
    assert await stored(bus, "contact.optout") == 1
    again = await recorder.record(calls[-1], {})  # nothing left: answered at once, no copy
    assert again.duplicate and await stored(bus, "inbound.received") == 10
