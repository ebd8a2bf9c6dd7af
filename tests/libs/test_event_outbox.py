"""The transactional outbox: rows and their events commit together, events follow rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from libs.bus import Bus
from libs.db import migrate
from libs.event_outbox import EventOutbox, NotPublished, _Row
from libs.events import ContactPaused, decode, encode
from tests.harness import EventCollector, eventually, stays

SLICE = "demo"


def paused(n: int) -> ContactPaused:
    return ContactPaused(thread="15550001111", number="+15550001111", id=f"p{n}", actor="test", reason=str(n))


@pytest.fixture
async def outbox(pool: asyncpg.Pool, bus: Bus) -> AsyncIterator[EventOutbox]:
    await migrate(pool, SLICE, None)
    await pool.execute(f"SELECT create_event_outbox('{SLICE}')")
    await pool.execute("CREATE TABLE notes (id TEXT PRIMARY KEY)")
    yield EventOutbox(bus, pool, SLICE, sweep_every_s=0.1, sweep_after_s=0.3)


async def write_and_emit(outbox: EventOutbox, n: int, **unit_options: Any) -> None:
    async with outbox.unit(**unit_options) as u:
        await u.conn.execute("INSERT INTO notes VALUES ($1)", f"p{n}")
        u.emit(paused(n))


async def test_events_are_published_in_order_after_the_commit_and_the_rows_go(
    outbox: EventOutbox, collector: EventCollector
) -> None:
    async with outbox.unit() as u:
        for n in range(5):
            u.emit(paused(n))
    assert [a.seq for a in u.acks] == sorted(a.seq for a in u.acks)
    got = await collector.wait_for(ContactPaused, count=5)
    assert [e.id for e in got] == [f"p{n}" for n in range(5)]
    assert [h["Nats-Msg-Id"] for h in collector.headers] == [paused(n).dedup_id() for n in range(5)]
    assert all(h.get("traceparent") for h in collector.headers)
    assert await outbox.pending() == 0


async def test_a_rolled_back_unit_publishes_nothing(outbox: EventOutbox, collector: EventCollector) -> None:
    with pytest.raises(RuntimeError):
        async with outbox.unit() as u:
            await u.conn.execute("INSERT INTO notes VALUES ('p1')")
            u.emit(paused(1))
            raise RuntimeError("handler failed after emitting")
    await collector.assert_none(ContactPaused, within=0.5)
    assert await outbox.pending() == 0
    assert await outbox.pool.fetchval("SELECT count(*) FROM notes") == 0


async def test_every_event_finds_its_row_when_it_arrives(outbox: EventOutbox, bus: Bus, pool: asyncpg.Pool) -> None:
    seen: list[tuple[str, bool]] = []

    async def on_msg(msg: Any) -> None:
        event = decode(msg.data)
        row = await pool.fetchval("SELECT count(*) FROM notes WHERE id = $1", event.id)
        seen.append((event.id, row == 1))

    sub = await bus.js.subscribe(f"{bus.prefix}contact.>", cb=on_msg, stream=bus.stream, ordered_consumer=True)
    try:
        await asyncio.gather(*(write_and_emit(outbox, n) for n in range(20)))
        await eventually(lambda: len(seen) == 20)
    finally:
        await sub.unsubscribe()
    assert all(found for _, found in seen), seen


async def test_events_left_by_a_failed_publish_are_swept_once(
    outbox: EventOutbox, collector: EventCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_publish = outbox._publish

    async def nats_away(rows: Any) -> Any:
        raise ConnectionError("nats is away")

    monkeypatch.setattr(outbox, "_publish", nats_away)
    await write_and_emit(outbox, 1)  # committed; the publish failed quietly
    with pytest.raises(NotPublished):
        await write_and_emit(outbox, 2, must_publish=True)
    assert await outbox.pool.fetchval("SELECT count(*) FROM notes") == 2
    assert await outbox.pending() == 2
    await collector.assert_none(ContactPaused, within=0.3)

    monkeypatch.setattr(outbox, "_publish", real_publish)
    stop = asyncio.Event()
    sweeper = asyncio.create_task(outbox.run(stop))
    try:
        got = await collector.wait_for(ContactPaused, count=2, timeout=10)
        assert [e.id for e in got] == ["p1", "p2"]
        await eventually(lambda: _is_zero(outbox))
        # Publishing a swept row again (a second replica, a lost delete) adds nothing.
        await outbox._publish_one(_row_of(paused(1), outbox.bus.prefix))
        await stays(lambda: len(collector.of_type(ContactPaused)) == 2, within=0.5)
    finally:
        stop.set()
        await sweeper
    assert outbox.swept == 2


async def test_a_unit_refuses_a_connection_already_in_a_transaction(outbox: EventOutbox) -> None:
    async with outbox.pool.acquire() as conn, conn.transaction():
        with pytest.raises(RuntimeError, match="owns its transaction"):
            async with outbox.unit(conn):
                pass


async def _is_zero(outbox: EventOutbox) -> bool:
    return await outbox.pending() == 0


def _row_of(event: ContactPaused, prefix: str) -> _Row:
    return _Row(event.dedup_id(), prefix + event.subject(), encode(event), None)
