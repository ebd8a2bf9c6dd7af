"""Durable timers: fire with their payload, cancel, survive restarts, fire once across replicas,
and follow the overdue policy of their kind."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY

from libs.bus import Bus
from libs.embedded import EmbeddedNats
from libs.events import OutboundRequested, TimerCancel, TimerFired, TimerSet
from services.scheduler.clock import ManualClock
from services.scheduler.timers import key_for
from tests.harness import EventCollector, eventually
from tests.scheduler.conftest import Schedulers

THREAD = "15550002222"


def timer_set(
    clock: ManualClock, timer_id: str, kind: str = "draft_expiry", *, after: timedelta, **payload: object
) -> TimerSet:
    return TimerSet(
        thread=THREAD,
        timer_id=timer_id,
        kind=kind,  # type: ignore[arg-type]
        fire_at=clock.now() + after,
        payload=dict(payload),
    )


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def timers_total(kind: str, event: str) -> float:
    return sample("replyline_timers_total", kind=kind, event=event)


def pending_gauge(kind: str) -> float:
    return sample("replyline_timers_pending", kind=kind)


async def counted(kind: str, event: str, before: float, by: int = 1) -> None:
    """``replyline_timers_total{kind, event}`` grows by exactly ``by``. Fired timers are
    counted once claimed, which is just after the timer.fired event is published."""
    await eventually(lambda: timers_total(kind, event) - before >= by, timeout=5)
    assert timers_total(kind, event) - before == by


async def wait_pending(exposed: dict[str, Any], count: int) -> None:
    timers = exposed["timers"]
    await eventually(lambda: timers.pending == count)


async def test_timer_fires_with_its_payload_and_leaves_the_bucket(
    schedulers: Schedulers, bus: Bus, collector: EventCollector, clock: ManualClock
) -> None:
    _, exposed = await schedulers.start(timer_marker_ttl_s=1)
    set_before, fired_before = timers_total("draft_expiry", "set"), timers_total("draft_expiry", "fired")
    await bus.publish(timer_set(clock, "draft_expiry:d1", after=timedelta(hours=24), draft_id="d1"))
    await wait_pending(exposed, 1)
    await counted("draft_expiry", "set", set_before)
    assert pending_gauge("draft_expiry") == 1
    await collector.assert_none(TimerFired, within=0.3)
    clock.advance(hours=24)
    [fired] = await collector.wait_for(TimerFired, timeout=5)
    assert (fired.timer_id, fired.kind, fired.payload) == (
        "draft_expiry:d1",
        "draft_expiry",
        {"draft_id": "d1"},
    )
    assert fired.late is False and fired.thread == THREAD
    await wait_pending(exposed, 0)
    await counted("draft_expiry", "fired", fired_before)
    assert pending_gauge("draft_expiry") == 0
    kv = await bus.js.key_value(bus.kv_name("timers"))
    # The purge marker expires too: a restart reads only pending timers.

    async def bucket_empty() -> bool:
        return (await kv.status()).values == 0

    await eventually(bucket_empty)


async def test_cancelled_timer_never_fires(
    schedulers: Schedulers, bus: Bus, collector: EventCollector, clock: ManualClock
) -> None:
    _, exposed = await schedulers.start()
    await bus.publish(timer_set(clock, "t-cancel", after=timedelta(minutes=5)))
    await bus.publish(timer_set(clock, "t-keep", after=timedelta(minutes=5)))
    await wait_pending(exposed, 2)
    assert pending_gauge("draft_expiry") == 2
    cancelled_before = timers_total("draft_expiry", "cancelled")
    await bus.publish(TimerCancel(thread=THREAD, timer_id="t-cancel"))
    await wait_pending(exposed, 1)
    await counted("draft_expiry", "cancelled", cancelled_before)
    assert pending_gauge("draft_expiry") == 1
    # Cancelling a timer that is not there counts nothing.
    await bus.publish(TimerCancel(thread=THREAD, timer_id="t-never-set"))
    clock.advance(minutes=6)
    await collector.wait_for(TimerFired, lambda e: e.timer_id == "t-keep", timeout=5)
    await collector.assert_none(TimerFired, lambda e: e.timer_id == "t-cancel", within=0.5)
    assert timers_total("draft_expiry", "cancelled") - cancelled_before == 1


async def test_restart_of_the_scheduler_loses_no_timer(
    schedulers: Schedulers, bus: Bus, collector: EventCollector, clock: ManualClock
) -> None:
    first, exposed = await schedulers.start()
    for i in range(50):
        await bus.publish(timer_set(clock, f"wf.r{i}", "workflow_delay", after=timedelta(minutes=10 + i)))
    await wait_pending(exposed, 50)
    await schedulers.stop(first)
    # Half of them come due while no scheduler runs (within the overdue threshold).
    clock.advance(minutes=35)
    _, exposed = await schedulers.start()
    assert exposed["timers"].pending <= 50
    clock.advance(minutes=30)
    fired = await collector.wait_for(TimerFired, count=50, timeout=10)
    assert sorted(e.timer_id for e in fired) == sorted(f"wf.r{i}" for i in range(50))
    await collector.assert_none(TimerFired, lambda e: e.timer_id == "never", within=0.2)
    assert len(collector.of_type(TimerFired)) == 50


async def test_two_replicas_fire_each_timer_once(
    schedulers: Schedulers, bus: Bus, collector: EventCollector, clock: ManualClock
) -> None:
    _, one = await schedulers.start()
    _, two = await schedulers.start()
    count = 200
    fired_before = timers_total("quiet_hours", "fired")
    for i in range(count):
        await bus.publish(timer_set(clock, f"dup.{i}", "quiet_hours", after=timedelta(seconds=30)))
    await wait_pending(one, count)
    await wait_pending(two, count)
    clock.advance(seconds=31)
    fired = await collector.wait_for(TimerFired, count=count, timeout=15)
    await wait_pending(one, 0)
    await wait_pending(two, 0)
    known = {e.id for e in fired}
    await collector.assert_none(TimerFired, lambda e: e.id not in known, within=0.3)  # a stray duplicate
    fired = collector.of_type(TimerFired)
    assert len(fired) == count
    assert len({e.timer_id for e in fired}) == count
    # Exactly one replica won the compare-and-delete of each timer.
    assert one["timers"].claims + two["timers"].claims == count
    # Both replicas published, only the claiming one counted.
    await counted("quiet_hours", "fired", fired_before, count)


async def test_overdue_policy_per_kind(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    clock: ManualClock,
    pool: asyncpg.Pool,
) -> None:
    _, exposed = await schedulers.start(
        timer_overdue_after_s=60, timer_overdue_policy={"reply_timeout": "skip"}
    )
    kinds = ["draft_expiry", "workflow_delay", "reply_timeout", "quiet_hours", "no_response"]
    before = {(k, e): timers_total(k, e) for k in kinds for e in ("fired", "skipped", "escalated")}
    for kind in kinds:
        await bus.publish(timer_set(clock, f"late.{kind}", kind, after=timedelta(minutes=1)))
    await bus.publish(timer_set(clock, "ontime", "workflow_delay", after=timedelta(hours=2)))
    await wait_pending(exposed, 6)
    # The scheduler was "away": everything but `ontime` is now two hours overdue.
    clock.advance(hours=2, seconds=1)
    fired = await collector.wait_for(TimerFired, count=4, timeout=5)
    by_id = {e.timer_id: e for e in fired}
    assert by_id["ontime"].late is False
    assert {t for t, e in by_id.items() if e.late} == {
        "late.draft_expiry",
        "late.workflow_delay",
        "late.quiet_hours",
    }
    # no_response escalates to the owner instead of firing; reply_timeout is skipped (override).
    [alert] = await collector.wait_for(OutboundRequested, timeout=5)
    assert alert.kind == "owner_alert" and "overdue" in alert.body and alert.to_number
    await wait_pending(exposed, 0)
    await collector.assert_none(
        TimerFired, lambda e: e.timer_id in ("late.no_response", "late.reply_timeout"), within=0.3
    )
    actions = {
        row["action"]: row["details"]["timer_id"]
        for row in await pool.fetch("SELECT action, details FROM audit_log WHERE action LIKE 'timer_%'")
    }
    assert actions == {"timer_skipped": "late.reply_timeout", "timer_escalated": "late.no_response"}
    # Late firings count as fired; workflow_delay fired twice (late and on time).
    expected = {
        ("draft_expiry", "fired"): 1,
        ("workflow_delay", "fired"): 2,
        ("quiet_hours", "fired"): 1,
        ("reply_timeout", "skipped"): 1,
        ("no_response", "escalated"): 1,
    }
    for (kind, event), value in before.items():
        await counted(kind, event, value, expected.get((kind, event), 0))
    assert all(pending_gauge(kind) == 0 for kind in kinds)


async def test_timers_survive_a_nats_restart(
    schedulers: Schedulers,
    bus: Bus,
    clock: ManualClock,
    nats_server: EmbeddedNats | None,
) -> None:
    if nats_server is None:
        import pytest

        pytest.skip("needs the session's own nats-server")
    _, exposed = await schedulers.start()
    await bus.publish(timer_set(clock, "survivor", "workflow_delay", after=timedelta(hours=1)))
    await wait_pending(exposed, 1)
    nats_server.restart()
    # Wait until the scheduler has reconnected and reloaded its view of the bucket.
    timers = exposed["timers"]
    await eventually(
        lambda: bus.nc.is_connected and timers.pending == 1 and timers.bus.nc.stats["reconnects"] >= 1,
        timeout=20,
    )
    await bus.publish(timer_set(clock, "after-restart", "workflow_delay", after=timedelta(hours=1)))
    await wait_pending(exposed, 2)
    clock.advance(hours=1, seconds=1)
    # The harness collector's push consumer does not outlive the server; read the stream anew.
    fresh = await EventCollector(bus, f"{bus.prefix}timer.fired.>").start()
    try:
        fired = await fresh.wait_for(TimerFired, count=2, timeout=15)
    finally:
        await fresh.stop()
    assert {e.timer_id for e in fired} == {"survivor", "after-restart"}


def test_timer_ids_map_to_valid_kv_keys() -> None:
    assert key_for("wf.abc.3") == "wf.abc.3"
    odd = key_for("draft_expiry:1b2c 3")
    assert odd.startswith("b64_") and ":" not in odd and " " not in odd
    assert key_for("draft_expiry:1b2c 3") != key_for("draft_expiry:1b2c 4")


async def test_re_set_timer_fires_once_at_its_new_time(
    schedulers: Schedulers, bus: Bus, collector: EventCollector, clock: ManualClock
) -> None:
    _, exposed = await schedulers.start()
    timers = exposed["timers"]
    await bus.publish(timer_set(clock, "moving", "no_response", after=timedelta(hours=1)))
    await wait_pending(exposed, 1)
    final = clock.now() + timedelta(hours=2)
    # Re-set many times (each outbound message re-arms no_response): the view stays small.
    for i in range(1500):
        await timers.set("moving", "no_response", final - timedelta(seconds=1500 - i), thread=THREAD)
    await timers.set("moving", "no_response", final, thread=THREAD, payload={"v": "last"})
    await eventually(lambda: timers._view.entries["moving"][0] == final.timestamp())
    assert timers.pending == 1 and len(timers._view.heap) <= 1024 + 2
    clock.advance(hours=1, seconds=30)
    await collector.assert_none(TimerFired, within=0.5)
    clock.advance(hours=1)
    [fired] = await collector.wait_for(TimerFired)
    assert fired.fire_at == final and fired.payload == {"v": "last"}
    await collector.assert_none(TimerFired, lambda e: e is not fired, within=0.5)


async def test_restart_loads_the_view_snapshot_and_the_changes_since(
    schedulers: Schedulers, bus: Bus, collector: EventCollector, clock: ManualClock
) -> None:
    """A restart reads the saved view plus what changed after it, not every key; a timer
    cancelled after the snapshot whose purge marker has expired stays in the view but
    never fires (firing reads the live record first)."""
    opts = {"timer_snapshot_interval_s": 3600, "timer_snapshot_min_pending": 1, "timer_marker_ttl_s": 1}
    first, exposed = await schedulers.start(**opts)
    timers = exposed["timers"]
    for name in ("keep", "moved", "gone", "gone-quietly"):
        await timers.set(name, "workflow_delay", clock.now() + timedelta(hours=1), thread=THREAD)
    await wait_pending(exposed, 4)
    assert await timers.save_snapshot()
    # After the snapshot: one new, one re-set later, one cancelled whose purge marker
    # expires before the restart (the replay from the snapshot cannot see it).
    await timers.set("new", "workflow_delay", clock.now() + timedelta(hours=1), thread=THREAD)
    await timers.set("moved", "workflow_delay", clock.now() + timedelta(hours=2), thread=THREAD)
    assert await timers.cancel("gone-quietly")
    stream, subject = f"KV_{timers.bucket}", f"$KV.{timers.bucket}.gone-quietly"

    async def marker_expired() -> bool:
        try:
            await bus.js.get_last_msg(stream, subject)
        except NotFoundError:
            return True
        return False

    await eventually(marker_expired, timeout=15, interval=0.2)
    await schedulers.stop(first)
    _, exposed = await schedulers.start(**{**opts, "timer_marker_ttl_s": 120})
    timers = exposed["timers"]
    assert await timers.cancel("gone")
    await eventually(lambda: timers.pending == 4)  # keep, moved, new + the unseen cancellation
    assert timers.loaded_from == "snapshot"
    assert set(timers._view.entries) == {"keep", "moved", "new", "gone-quietly"}
    clock.advance(hours=1, seconds=1)
    fired = await collector.wait_for(TimerFired, count=2, timeout=5)
    assert {e.timer_id for e in fired} == {"keep", "new"}
    await eventually(lambda: timers.pending == 1)  # gone-quietly dropped when due, unfired
    clock.advance(hours=1)
    await collector.wait_for(TimerFired, lambda e: e.timer_id == "moved", timeout=5)
    await collector.assert_none(TimerFired, lambda e: e.timer_id.startswith("gone"), within=0.5)
    assert len(collector.of_type(TimerFired)) == 3
