"""The after-hours acknowledgement (issue 16): a lead who texts while the business is closed
gets the profile's fixed text once per closed period, through the sender's consent gate;
the normal draft still follows. The drafter runs on a manual clock; the sender and the
fake Twilio (spec-checked) deliver.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from libs.bus import Bus
from libs.events import ContactOptout, DraftCreated, OutboundFailed, OutboundRequested, OutboundSent
from services.drafter.service import SPEC
from services.drafter.settings import DrafterSettings
from services.sender.service import MIGRATIONS as SENDER_MIGRATIONS
from services.sender.settings import SenderSettings
from tests.drafter.conftest import BUSINESS, LEAD, OWNER, PROFILE, routed
from tests.harness import EventCollector, RunningService, eventually, start_service
from tests.specs import sender_builder
from testsupport.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

pytestmark = pytest.mark.timeout(120)

# The profile's hours are America/Chicago: Mon-Fri 08-18, Sat 09-13, closed Sunday.
SAT_2PM = datetime(2030, 6, 8, 19, 0, tzinfo=UTC)  # Saturday 14:00 CDT: closed
SAT_4PM = datetime(2030, 6, 8, 21, 0, tzinfo=UTC)  # same closed period (until Monday 8am)
MON_10AM = datetime(2030, 6, 10, 15, 0, tzinfo=UTC)  # open
MON_7PM = datetime(2030, 6, 11, 0, 0, tzinfo=UTC)  # Monday 19:00 CDT: the next closed period
NOON_NY = datetime(2030, 6, 4, 16, 0, tzinfo=UTC)  # the sender's clock: outside quiet hours


def profile_file(tmp_path: Path, *, enabled: bool) -> str:
    raw = yaml.safe_load(Path(PROFILE).read_text(encoding="utf-8"))
    raw["after_hours_reply"]["enabled"] = enabled
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return str(path)


class Stack:
    def __init__(self, make_settings: Callable[..., Any], twilio: FakeTwilio, tmp_path: Path) -> None:
        self.make_settings = make_settings
        self.twilio = twilio
        self.tmp_path = tmp_path
        self.now = SAT_2PM
        self.running: list[RunningService] = []

    async def start(self, *, enabled: bool = True) -> None:
        common: dict[str, Any] = {
            "owner_numbers": [OWNER],
            "business_number": BUSINESS,
            "twilio_account_sid": ACCOUNT_SID,
            "twilio_auth_token": AUTH_TOKEN,
        }
        drafter = self.make_settings(
            DrafterSettings, **common, profile_path=profile_file(self.tmp_path, enabled=enabled),
            bare_reply_grace_s=0.0,
        )  # fmt: skip
        sender = self.make_settings(
            SenderSettings, **common, twilio_api_base_url=self.twilio.base_url,
            twilio_from_number=BUSINESS,
        )  # fmt: skip
        self.running.append(
            await start_service(drafter, SPEC, clock=lambda: self.now)
        )
        self.running.append(
            await start_service(
                sender, name="sender", build=sender_builder(clock=lambda: NOON_NY),
                migrations=SENDER_MIGRATIONS,
            )
        )  # fmt: skip


@pytest.fixture
async def stack(make_settings: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Stack]:
    async with FakeTwilio() as twilio:
        s = Stack(make_settings, twilio, tmp_path)
        try:
            yield s
        finally:
            for service in s.running[::-1]:
                await service.stop()
        assert twilio.violations == []


def acks(collector: EventCollector) -> list[OutboundRequested]:
    return [e for e in collector.events if isinstance(e, OutboundRequested) and e.kind == "after_hours"]


async def test_one_ack_per_closed_period_and_the_draft_still_follows(
    stack: Stack, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    await stack.start()
    await bus.publish(routed("SM" + "a1" * 16))
    await collector.wait_for(DraftCreated, timeout=15)
    stack.now = SAT_4PM
    await bus.publish(routed("SM" + "a2" * 16, body="Also, do you fix water heaters?"))
    await collector.wait_for(DraftCreated, count=2, timeout=15)  # both still drafted
    (ack,) = acks(collector)
    assert ack.to_number == LEAD
    assert ack.body.startswith("Thanks! We're closed now and will get back to you after 8am Monday.")
    sent = await collector.wait_for(OutboundSent, lambda e: e.kind == "after_hours", timeout=15)
    assert len(sent) == 1
    assert [m["body"] for m in stack.twilio.messages_to(LEAD)] == [ack.body]

    stack.now = MON_10AM  # open: no acknowledgement
    await bus.publish(routed("SM" + "a3" * 16))
    await collector.wait_for(DraftCreated, count=3, timeout=15)
    assert len(acks(collector)) == 1

    stack.now = MON_7PM  # the next closed period: a new one, in the lead's language
    await bus.publish(routed("SM" + "a4" * 16, body="¿Cuánto cuesta?", language="es"))
    await collector.wait_for(DraftCreated, count=4, timeout=15)
    _, second = acks(collector)
    assert second.body.startswith("¡Gracias! Ahora estamos cerrados; le responderemos a partir de mañana a las 8:00.")

    audited = await pool.fetch("SELECT details FROM audit_log WHERE action = 'after_hours_ack'")
    assert len(audited) == 2


async def test_off_by_default(stack: Stack, bus: Bus, collector: EventCollector) -> None:
    await stack.start(enabled=False)
    await bus.publish(routed("SM" + "b1" * 16))
    await collector.wait_for(DraftCreated, timeout=15)
    assert acks(collector) == []


async def test_open_sends_none(stack: Stack, bus: Bus, collector: EventCollector) -> None:
    await stack.start()
    stack.now = MON_10AM
    await bus.publish(routed("SM" + "c1" * 16))
    await collector.wait_for(DraftCreated, timeout=15)
    assert acks(collector) == []


async def test_opted_out_lead_gets_no_ack(
    stack: Stack, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    await stack.start()
    await bus.publish(ContactOptout(thread=LEAD.lstrip("+"), number=LEAD, keyword="STOP"))
    await eventually(
        lambda: pool.fetchval("SELECT opted_out FROM consent WHERE number = $1", LEAD), timeout=15
    )
    await bus.publish(routed("SM" + "d1" * 16))
    (refused,) = await collector.wait_for(OutboundFailed, lambda e: e.kind == "after_hours", timeout=15)
    assert refused.reason == "opted_out"
    assert stack.twilio.messages_to(LEAD) == []
