"""`approval: required` end to end: scheduler -> drafter -> owner YES/NO -> sender.

Real scheduler, drafter and sender in-process on the test's NATS and Postgres; Twilio
is the local fake speaking its wire protocol, so "sent" means the real `twilio`
client created a message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from libs.bus import Bus
from libs.events import (
    ContactPaused,
    ContactTagged,
    DraftApproved,
    DraftCreated,
    DraftDecided,
    DraftRejected,
    DraftRequested,
    OutboundRequested,
    OutboundSent,
    thread_of,
)
from services.drafter.service import MIGRATIONS as DRAFTER_MIGRATIONS
from services.drafter.settings import DrafterSettings
from services.sender.service import MIGRATIONS as SENDER_MIGRATIONS
from services.sender.settings import SenderSettings
from tests.harness import EventCollector, RunningService, eventually, start_service
from tests.scheduler.conftest import REPO, Schedulers
from tests.scheduler.test_engine import PHONE, THREAD, enrollment, lead, status_is, write
from tests.specs import drafter_build
from tests.specs import sender_builder as sender_build
from testsupport.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

OWNER = "+15550000001"
BUSINESS = "+15005550006"
#: 12:00 in New York, the sender's default zone: outside quiet hours.
NOON_NY = datetime(2030, 6, 4, 16, 0, tzinfo=UTC)

CAREFUL = """
name: Careful
trigger: {type: contact_created}
steps:
  - id: offer
    type: send_sms
    config: {body: "20% off for you this week, {{first_name}}!", approval: required}
  - id: mark
    type: add_tag
    config: {tag: offer_sent}
"""
OFFER = "20% off for you this week, Ana!"


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake
        assert fake.violations == [], "requests that break Twilio's OpenAPI spec"


@pytest.fixture
async def stack(
    schedulers: Schedulers,
    make_settings: Callable[..., Any],
    fake_twilio: FakeTwilio,
    workflow_dir: Path,
) -> AsyncIterator[None]:
    (workflow_dir / "new_lead_welcome.yaml").unlink()
    write(workflow_dir, "careful.yaml", CAREFUL)
    running: list[RunningService] = []
    running.append(
        await start_service(
            make_settings(
                DrafterSettings,
                owner_numbers=[OWNER],
                business_number=BUSINESS,
                profile_path=str(REPO / "profiles" / "business.yaml"),
            ),
            name="drafter",
            build=drafter_build,
            migrations=DRAFTER_MIGRATIONS,
        )
    )
    running.append(
        await start_service(
            make_settings(
                SenderSettings,
                owner_numbers=[OWNER],
                twilio_account_sid=ACCOUNT_SID,
                twilio_auth_token=AUTH_TOKEN,
                twilio_from_number=BUSINESS,
                twilio_api_base_url=fake_twilio.base_url,
                twilio_timeout_s=5.0,
                public_base_url="https://replyline.example.com",
            ),
            name="sender",
            build=sender_build(lambda: NOON_NY),
            migrations=SENDER_MIGRATIONS,
        )
    )
    await schedulers.start(owner_numbers=[OWNER])
    yield
    for service in running:
        await service.stop()


def owner_sms(action: str, ref: str) -> DraftDecided:
    """What the router publishes for the owner's "YES 1000" / "NO 1000"."""
    return DraftDecided(
        thread=thread_of(OWNER),
        action=action,  # type: ignore[arg-type]
        reviewer=OWNER,
        source="sms",
        ref=ref,
        message_sid=f"SMowner{action}{ref}",
    )


async def _prompted(collector: EventCollector, fake_twilio: FakeTwilio) -> DraftCreated:
    """The lead enrolled, the owner got the approval prompt by SMS; the lead got nothing."""
    (requested,) = await collector.wait_for(DraftRequested)
    assert (requested.to_number, requested.body, requested.step_id) == (PHONE, OFFER, "offer")
    (created,) = await collector.wait_for(DraftCreated)
    assert (created.source, created.body, created.to_number) == ("workflow", OFFER, PHONE)
    ref = created.ref
    prompt = f'Draft #{ref} for {PHONE}: "{OFFER}" Reply YES {ref}, NO {ref}, or EDIT {ref} <new text>.'
    await collector.wait_for(OutboundSent, lambda e: e.to_number == OWNER)
    assert [(m["to"], m["body"]) for m in fake_twilio.messages] == [(OWNER, prompt)]
    return created


async def test_owner_yes_sends_the_workflow_message_and_the_workflow_goes_on(
    stack: None,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
    fake_twilio: FakeTwilio,
) -> None:
    await bus.publish(lead())
    created = await _prompted(collector, fake_twilio)
    await eventually(lambda: status_is(pool, "waiting", "careful"))
    await collector.assert_none(ContactTagged, within=0.3)  # the next step waits for the YES

    await bus.publish(owner_sms("approve", created.ref))
    (approved,) = await collector.wait_for(DraftApproved)
    assert approved.workflow_enrollment_id is not None and approved.body == OFFER
    (sent,) = await collector.wait_for(OutboundSent, lambda e: e.to_number == PHONE)
    assert (sent.kind, sent.draft_id) == ("approved_draft", created.draft_id)
    assert [m["body"] for m in fake_twilio.messages_to(PHONE)] == [OFFER]

    (tagged,) = await collector.wait_for(ContactTagged, lambda e: e.tag_name == "offer_sent")
    assert tagged.thread == THREAD
    await eventually(lambda: status_is(pool, "completed", "careful"))
    offer = await pool.fetchrow("SELECT output FROM workflow_executions WHERE step_id = 'offer'")
    assert offer["output"]["approved"] is True and offer["output"]["draft_id"] == created.draft_id
    # Exactly one lead-facing message: the workflow itself never texted the lead.
    assert not [e for e in collector.of_type(OutboundRequested) if e.to_number == PHONE]


async def test_owner_no_sends_nothing_and_ends_the_enrollment(
    stack: None,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
    fake_twilio: FakeTwilio,
) -> None:
    await bus.publish(lead())
    created = await _prompted(collector, fake_twilio)
    await eventually(lambda: status_is(pool, "waiting", "careful"))

    await bus.publish(owner_sms("reject", created.ref))
    (rejected,) = await collector.wait_for(DraftRejected)
    assert rejected.workflow_enrollment_id is not None
    await eventually(lambda: status_is(pool, "ended", "careful"))
    row = await enrollment(pool, "careful")
    assert row is not None and row["ended_reason"] == "approval_rejected"
    offer = await pool.fetchrow(
        "SELECT output, completed_at FROM workflow_executions WHERE step_id = 'offer'"
    )
    assert offer["output"]["rejected"] is True and offer["completed_at"] is not None

    await collector.assert_none(ContactTagged, within=0.5)  # the workflow did not go on
    await collector.assert_none(DraftApproved, within=0.1)
    await collector.assert_none(ContactPaused, within=0.1)  # the lead's replies still get drafts
    assert fake_twilio.messages_to(PHONE) == []
    steps = await pool.fetch("SELECT step_id FROM workflow_executions ORDER BY seq")
    assert [r["step_id"] for r in steps] == ["offer"]
