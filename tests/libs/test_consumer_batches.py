"""Batched handlers: one transaction per run of a fetch, one by one when one fails."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from libs.bus import Bus
from libs.consumer import Batched, Delivery, Drop
from libs.events import ContactPaused, InboundReceived
from libs.service import ServiceContext
from tests.harness import EventCollector, eventually, start_service
from tests.libs.test_bus import inbound
from tests.libs.test_consumer import dlq_messages


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_outbox.sql").write_text(
        "SELECT create_event_outbox('router');\n"
        "CREATE TABLE seen (sid TEXT PRIMARY KEY, thread TEXT NOT NULL, seq BIGINT NOT NULL, txid BIGINT NOT NULL);\n"
    )
    return folder


async def run_batched(
    make_settings: Callable[..., Any],
    migrations: Path,
    *,
    poison: str = "",
    batched: bool = True,
    **overrides: Any,
) -> Any:
    """A service whose handler writes a row and emits an event through the outbox."""

    async def build(ctx: ServiceContext[Any]) -> dict[type, Any]:
        outbox = ctx.outbox
        assert outbox is not None

        async def handle(event: InboundReceived, d: Delivery) -> Drop | None:
            if event.message_sid == poison:
                return Drop("poison")
            async with outbox.pool.acquire() as conn:  # a read before the unit, as the router does
                await conn.fetchval("SELECT count(*) FROM seen WHERE sid = $1", event.message_sid)
            async with outbox.unit() as u:
                await u.conn.execute(
                    "INSERT INTO seen VALUES ($1, $2, $3, txid_current())", event.message_sid, event.thread, d.seq
                )
                u.emit(ContactPaused(thread=event.thread, number="+" + event.thread, id=event.message_sid, actor="t"))
            return None

        return {InboundReceived: Batched(handle) if batched else handle}

    return await start_service(make_settings(**overrides), name="router", build=build, migrations=migrations)


async def publish_all(bus: Bus, count: int, threads: int) -> list[str]:
    sids = [f"SM{n:04d}" for n in range(count)]
    for n, sid in enumerate(sids):
        await bus.publish(inbound(sid, thread=f"1555000{n % threads:04d}"))
    return sids


async def test_a_fetch_of_batched_events_commits_in_few_transactions(
    make_settings: Callable[..., Any], migrations: Path, bus: Bus, pool: Any, collector: EventCollector
) -> None:
    sids = await publish_all(bus, 60, threads=60)
    svc = await run_batched(make_settings, migrations, batch_max=20)
    try:
        await collector.wait_for(ContactPaused, count=60, timeout=20)
        rows = await pool.fetch("SELECT sid, txid FROM seen")
        consumer = svc.ctx.consumer
    finally:
        await svc.stop()
    assert sorted(r["sid"] for r in rows) == sids
    transactions = len({r["txid"] for r in rows})
    assert transactions <= 10, f"{transactions} transactions for 60 events in runs of at most 20"
    assert consumer.batches >= 3 and consumer.batch_fallbacks == 0
    assert sorted(e.id for e in collector.of_type(ContactPaused)) == sids


async def test_without_batched_handlers_every_event_has_its_own_transaction(
    make_settings: Callable[..., Any], migrations: Path, bus: Bus, pool: Any, collector: EventCollector
) -> None:
    await publish_all(bus, 10, threads=10)
    svc = await run_batched(make_settings, migrations, batched=False, batch_max=20)
    try:
        await collector.wait_for(ContactPaused, count=10, timeout=20)
        rows = await pool.fetch("SELECT sid, txid FROM seen")
    finally:
        await svc.stop()
    assert len({r["txid"] for r in rows}) == 10


async def test_a_poison_event_rolls_its_batch_back_and_goes_alone_to_the_dlq(
    make_settings: Callable[..., Any], migrations: Path, bus: Bus, pool: Any, collector: EventCollector
) -> None:
    sids = await publish_all(bus, 30, threads=30)
    svc = await run_batched(make_settings, migrations, poison="SM0013", batch_max=30)
    try:
        [copy] = await dlq_messages(bus, 1)
        await collector.wait_for(ContactPaused, count=29, timeout=20)
        await eventually(lambda: svc.ctx.consumer.processed == 30)
        rows = await pool.fetch("SELECT sid FROM seen")
        consumer = svc.ctx.consumer
    finally:
        await svc.stop()
    assert copy.headers["Replyline-Dlq-Reason"] == "poison"
    good = [s for s in sids if s != "SM0013"]
    assert sorted(r["sid"] for r in rows) == good  # each once: the rolled-back batch left nothing
    assert sorted(e.id for e in collector.of_type(ContactPaused)) == good
    assert consumer.batch_fallbacks >= 1


async def test_events_of_one_thread_keep_their_order_across_batches(
    make_settings: Callable[..., Any], migrations: Path, bus: Bus, pool: Any, collector: EventCollector
) -> None:
    await publish_all(bus, 90, threads=3)
    svc = await run_batched(make_settings, migrations, batch_max=7, fetch_batch=16)
    try:
        await collector.wait_for(ContactPaused, count=90, timeout=30)
        rows = await pool.fetch("SELECT thread, seq, txid FROM seen ORDER BY txid, seq")
    finally:
        await svc.stop()
    per_tx: dict[int, list[str]] = {}
    for r in rows:
        per_tx.setdefault(r["txid"], []).append(r["thread"])
    assert any(len(t) > 1 for t in per_tx.values()), "some events should have shared a transaction"
    assert all(len(t) == len(set(t)) for t in per_tx.values()), "a batch holds one message per thread"
    by_thread: dict[str, list[int]] = {}
    for r in rows:
        by_thread.setdefault(r["thread"], []).append(r["seq"])
    assert len(by_thread) == 3
    for seqs in by_thread.values():
        assert seqs == sorted(seqs)


async def test_many_small_batches_in_flight_never_wait_for_each_others_connections(
    make_settings: Callable[..., Any], migrations: Path, bus: Bus, collector: EventCollector
) -> None:
    """Each batch holds a connection until its commit and its handler borrows a second
    one: more batches in flight than the pool has connections must not stall."""
    await publish_all(bus, 60, threads=60)
    svc = await run_batched(make_settings, migrations, batch_max=2, db_pool_max=4)
    try:
        await collector.wait_for(ContactPaused, count=60, timeout=20)
    finally:
        await svc.stop()
