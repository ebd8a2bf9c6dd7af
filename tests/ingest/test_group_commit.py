"""Group commit in the inbound recorder: concurrent webhooks share transactions, each stored once."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
import pytest

from libs.db import migrate
from libs.events import Event, InboundReceived
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


async def test_concurrent_webhooks_share_transactions_and_are_stored_once(
    migrated: asyncpg.Pool,
) -> None:
    published: list[str] = []

    async def publish(event: Event) -> int:
        assert isinstance(event, InboundReceived)
        await asyncio.sleep(0.01)  # a JetStream ack round trip
        published.append(event.message_sid)
        return len(published)

    recorder = PgInboundRecorder(migrated, QUERIES, publish, concurrency=2)
    sids = [f"SM{n:032x}" for n in range(120)]
    # Every tenth message is also retried concurrently by "Twilio".
    calls = [sms(sid, n) for n, sid in enumerate(sids)] + [sms(sids[n], n) for n in range(0, 120, 10)]
    results = await asyncio.gather(*(recorder.record(s, {"MessageSid": s.message_sid}) for s in calls))

    assert sorted(published) == sorted(sids)  # one event per MessageSid
    fresh = [r for r in results if not r.duplicate]
    assert len(fresh) == 120 and sum(r.duplicate for r in results) == 12
    assert sorted(r.stream_seq for r in fresh) == list(range(1, 121))  # type: ignore[type-var]
    rows = await migrated.fetch("SELECT message_sid, stream_seq, xmin::text AS tx FROM inbound_messages")
    assert sorted(r["message_sid"] for r in rows) == sorted(sids)
    assert all(r["stream_seq"] is not None for r in rows)
    transactions = {r["tx"] for r in rows}
    assert len(transactions) <= 20, f"{len(transactions)} transactions for 120 messages"
    audits = await migrated.fetch("SELECT action, count(*) AS n FROM audit_log GROUP BY action")
    assert {r["action"]: r["n"] for r in audits} == {"inbound.received": 120, "inbound.duplicate": 12}


async def test_a_failed_batch_records_nothing_and_fails_every_webhook_in_it(
    migrated: asyncpg.Pool,
) -> None:
    async def publish(event: Event) -> int:
        await asyncio.sleep(0.01)  # a JetStream ack round trip, then the failure
        raise ConnectionError("NATS is not connected")

    recorder = PgInboundRecorder(migrated, QUERIES, publish, concurrency=1)
    calls = [sms(f"SM{n:032x}", n) for n in range(10)]
    results = await asyncio.gather(*(recorder.record(s, {}) for s in calls), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await migrated.fetchval("SELECT count(*) FROM inbound_messages") == 0
    assert await migrated.fetchval("SELECT count(*) FROM audit_log") == 0
