"""A workflow step's events commit with its rows (libs/event_outbox.py).

Before, the runner published a step's events inside the step's transaction, before
its commit: a consumer could see ``outbound.requested`` while the execution row and
the enrollment it describes were not yet (or never, on a rollback) in Postgres. Now
each step is one outbox unit: its events are published after the commit, and one
whose publish failed after the commit is published once by the outbox's sweeper.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from libs.bus import Bus
from libs.events import LeadCreated, OutboundRequested, decode
from tests.harness import EventCollector, eventually, fail_first_publish
from tests.scheduler.conftest import Schedulers

pytestmark = pytest.mark.timeout(60)


def lead(n: int) -> LeadCreated:
    phone = f"+1555200{n:04d}"
    return LeadCreated(
        thread=phone[1:], lead_id=f"lead-{n}", phone=phone, first_name="Ana", source="facebook_ad"
    )


async def test_a_steps_sms_request_arrives_after_its_execution_row(
    schedulers: Schedulers, bus: Bus, pool: asyncpg.Pool
) -> None:
    seen: list[tuple[str, int]] = []

    async def on_request(msg: Any) -> None:
        event = decode(msg.data)
        assert isinstance(event, OutboundRequested) and event.workflow_enrollment_id
        rows = await pool.fetchval(
            "SELECT count(*) FROM workflow_executions WHERE enrollment_id = $1 AND step_id = 'welcome'",
            uuid.UUID(event.workflow_enrollment_id),
        )
        seen.append((event.request_id, rows))

    await schedulers.start()
    sub = await bus.js.subscribe(
        f"{bus.prefix}outbound.requested.>", cb=on_request, stream=bus.stream, ordered_consumer=True
    )
    try:
        for n in range(10):
            await bus.publish(lead(n))
        await eventually(lambda: len(seen) == 10, timeout=30)
    finally:
        await sub.unsubscribe()
    assert all(rows == 1 for _, rows in seen), seen


async def test_a_step_event_whose_publish_failed_after_the_commit_arrives_once(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
) -> None:
    service, _ = await schedulers.start()
    failed = fail_first_publish(service, "outbound.requested.")
    await bus.publish(lead(1))
    # The step committed (it waits on its delay now) although its event is not out yet.
    await eventually(
        lambda: pool.fetchval("SELECT count(*) FROM workflow_executions WHERE step_id = 'welcome'")
    )
    assert len(failed) == 1
    [welcome] = await collector.wait_for(OutboundRequested, lambda e: e.kind == "workflow", timeout=15)
    assert welcome.to_number == lead(1).phone
    await eventually(lambda: pool.fetchval("SELECT count(*) = 0 FROM scheduler_event_outbox"))
    await collector.assert_none(
        OutboundRequested, lambda e: e.kind == "workflow" and e is not welcome, within=2.0
    )
    # The step ran once: no redelivery replayed it.
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions WHERE step_id = 'welcome'") == 1
    assert service.ctx.outbox is not None and service.ctx.outbox.swept >= 1
