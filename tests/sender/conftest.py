"""Fixtures for the sender: the fake Twilio, settings pointed at it, a controllable clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from libs.events import DraftApproved, thread_of, utcnow
from services.sender.service import SPEC
from services.sender.settings import SenderSettings
from tests.harness import RunningService, start_service
from testsupport.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

FROM = "+15005550006"
OWNER = "+13125550100"
LEAD = "+12125550123"  # New York area code
PUBLIC = "https://replyline.example.com"
#: 12:00 in New York: inside the default quiet-hours window.
NOON_NY = datetime(2030, 6, 4, 16, 0, tzinfo=UTC)


def approved(body: str = "Hi Ana, Tuesday 10am works.", to: str = LEAD) -> DraftApproved:
    """An owner-approved draft to the lead (a new draft id each time)."""
    return DraftApproved(
        thread=thread_of(to),
        draft_id=str(uuid.uuid4()),
        version=1,
        to_number=to,
        body=body,
        reviewer=OWNER,
    )


class Clock:
    """What the sender believes the time is (only its quiet-hours decisions use it)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now or utcnow()


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake
        assert fake.violations == [], "requests that break Twilio's OpenAPI spec"


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON_NY)


@pytest.fixture
def sender_settings(
    make_settings: Callable[..., Any], fake_twilio: FakeTwilio
) -> Callable[..., SenderSettings]:
    def make(**overrides: Any) -> SenderSettings:
        base: dict[str, Any] = {
            "twilio_account_sid": ACCOUNT_SID,
            "twilio_auth_token": AUTH_TOKEN,
            "twilio_from_number": FROM,
            "twilio_api_base_url": fake_twilio.base_url,
            "twilio_timeout_s": 5.0,
            # Short, so reconciling after a timed-out call does not wait the production margin.
            "send_lease_margin_s": 1.0,
            "public_base_url": PUBLIC,
            "owner_numbers": [OWNER],
            "send_backoff_s": [0.2, 0.4],
            "sweep_interval_s": 0.5,
            "sweep_grace_s": 2.0,
        }
        base.update(overrides)
        settings: SenderSettings = make_settings(SenderSettings, **base)
        return settings

    return make


StartSender = Callable[..., Awaitable[RunningService]]


@pytest.fixture
async def start_sender(
    sender_settings: Callable[..., SenderSettings], clock: Clock
) -> AsyncIterator[StartSender]:
    running: list[RunningService] = []

    async def start(**overrides: Any) -> RunningService:
        service = await start_service(
            sender_settings(**overrides),
            SPEC,
            clock=clock,
        )
        running.append(service)
        return service

    yield start
    for service in running:
        await service.stop()
