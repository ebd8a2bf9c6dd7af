"""The outcome event commits with the row's final status (libs/event_outbox.py).

Before, the sender published outbound.sent / outbound.failed after the row was
final and kept an ``event_published`` flag plus a sweep that republished rows
whose event had not made it. Now the final status, its audit row and its event
commit in one unit: the event is never on the bus before the row says so, and an
event whose publish failed right after the commit (NATS away, the process killed
there) is published once by the outbox's sweeper, with no flag on the row.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from libs.bus import Bus
from libs.events import OutboundSent, decode
from tests.harness import EventCollector, eventually, fail_first_publish
from tests.sender.conftest import StartSender, approved
from testsupport.fakes.twilio_server import FakeTwilio

pytestmark = pytest.mark.timeout(60)


async def test_outbound_sent_is_never_on_the_bus_before_the_row_is_sent(
    start_sender: StartSender, bus: Bus, pool: asyncpg.Pool, fake_twilio: FakeTwilio
) -> None:
    seen: list[tuple[str, str | None]] = []

    async def on_sent(msg: Any) -> None:
        event = decode(msg.data)
        assert isinstance(event, OutboundSent)
        status = await pool.fetchval(
            "SELECT status FROM outbound_messages WHERE id = $1", uuid.UUID(event.outbox_id)
        )
        seen.append((event.outbox_id, status))

    await start_sender()
    sub = await bus.js.subscribe(
        f"{bus.prefix}outbound.sent.>", cb=on_sent, stream=bus.stream, ordered_consumer=True
    )
    try:
        for n in range(10):
            await bus.publish(approved(f"Message {n}"))
        await eventually(lambda: len(seen) == 10, timeout=30)
    finally:
        await sub.unsubscribe()
    assert all(status == "SENT" for _, status in seen), seen
    assert len(fake_twilio.creates) == 10


async def test_outcome_whose_publish_failed_after_the_commit_arrives_once(
    start_sender: StartSender,
    bus: Bus,
    collector: EventCollector,
    fake_twilio: FakeTwilio,
    pool: asyncpg.Pool,
) -> None:
    service = await start_sender()
    failed = fail_first_publish(service, "outbound.sent.")
    draft = approved("Tuesday at 10 works.")
    await bus.publish(draft)

    # The row is final at once; its event waits in the outbox table, not on the bus.
    row = await eventually(
        lambda: pool.fetchrow(
            "SELECT * FROM outbound_messages WHERE draft_id = $1 AND status = 'SENT'", draft.draft_id
        )
    )
    assert failed == [f"outbound.sent:{row['id']}"]
    assert "event_published" not in row.keys()
    # The sweeper publishes it (after its age threshold), once.
    [sent] = await collector.wait_for(OutboundSent, lambda e: e.draft_id == draft.draft_id, timeout=15)
    assert sent.outbox_id == str(row["id"]) and sent.provider_sid == row["provider_sid"]
    await eventually(lambda: pool.fetchval("SELECT count(*) = 0 FROM sender_event_outbox"))
    await collector.assert_none(
        OutboundSent, lambda e: e.draft_id == draft.draft_id and e is not sent, within=2.0
    )
    # The handler committed and acked: no redelivery, no second call, one audit row.
    assert len(fake_twilio.creates) == 1
    actions = await pool.fetch("SELECT action FROM audit_log WHERE service = 'sender'")
    assert [a["action"] for a in actions] == ["outbound.sent"]
    assert service.ctx.outbox is not None and service.ctx.outbox.swept >= 1
