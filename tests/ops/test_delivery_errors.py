"""Delivery errors people can act on: a signed status callback with a Twilio error code
reaches the owner alert, the dashboard's thread page and `replyline thread` in plain words."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from libs.bus import Bus
from libs.events import DraftApproved, OutboundFailed, OutboundRequested, OutboundSent, thread_of
from libs.twilio_errors import describe, explain
from replyline import cli
from services.sender.service import MIGRATIONS as SENDER_MIGRATIONS
from services.sender.settings import SenderSettings
from tests.harness import EventCollector, RunningService, start_service
from tests.ops.conftest import OWNER, StartIngest
from tests.ops.test_dashboard_http import Browser
from tests.sender.conftest import NOON_NY, Clock
from tests.specs import sender_builder as sender_build
from testsupport.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from testsupport.webhooks import status_form

pytestmark = pytest.mark.timeout(90)

LEAD = "+12125550123"
SPAM_TITLE = "Filtered by the carrier as spam"


def test_table_explains_known_codes_and_links_unknown_ones() -> None:
    for code in (30003, 30004, 30005, 30006, 30007, 30008, 30034, 21610, 21408, 21612, 21614):
        found = explain(code)
        assert found is not None and found.known and found.title and found.action, code
    a2p = explain("30034")
    assert a2p is not None and "Brand" in a2p.action and "Campaign" in a2p.action
    unknown = describe(39999)
    assert unknown == "Twilio error 39999, see https://www.twilio.com/docs/api/errors/39999"
    assert explain(None) is None and explain("") is None and explain("abc") is None


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
async def start_sender(
    make_settings: Callable[..., Any], fake_twilio: FakeTwilio
) -> AsyncIterator[Callable[[], Awaitable[RunningService]]]:
    running: list[RunningService] = []

    async def start() -> RunningService:
        settings = make_settings(
            SenderSettings,
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=AUTH_TOKEN,
            twilio_from_number="+15005550006",
            twilio_api_base_url=fake_twilio.base_url,
            public_base_url="https://replyline.example.com",
            owner_numbers=[OWNER],
        )
        service = await start_service(
            settings, name="sender", build=sender_build(Clock(NOON_NY)), migrations=SENDER_MIGRATIONS
        )
        running.append(service)
        return service

    yield start
    for service in running:
        await service.stop()


async def _send_and_fail(
    bus: Bus, collector: EventCollector, ingest: Any, body: str, code: int
) -> OutboundRequested:
    draft = DraftApproved(
        thread=thread_of(LEAD), draft_id=str(uuid.uuid4()), version=1, to_number=LEAD, body=body, reviewer=OWNER
    )
    await bus.publish(draft)
    [sent] = await collector.wait_for(OutboundSent, lambda e: e.draft_id == draft.draft_id)
    # Twilio's status callback, signed, through ingest's real webhook.
    status, _ = await ingest.post_twilio(
        "/twilio/status", status_form(sent.provider_sid, "undelivered", to=LEAD, ErrorCode=code)
    )
    assert status == 204
    await collector.wait_for(OutboundFailed, lambda e: e.draft_id == draft.draft_id)
    [alert] = await collector.wait_for(
        OutboundRequested, lambda e: e.kind == "owner_alert" and body in e.body
    )
    return alert


async def test_error_code_explained_in_alert_dashboard_and_cli(
    start_ops_ingest: StartIngest,
    admin_token: Callable[..., Awaitable[str]],
    start_sender: Callable[[], Awaitable[RunningService]],
    bus: Bus,
    collector: EventCollector,
    nats_url: str,
    database_url: str,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ingest = await start_ops_ingest()
    await start_sender()

    alert = await _send_and_fail(bus, collector, ingest, "Tuesday 10am works.", 30007)
    assert alert.to_number == OWNER
    assert SPAM_TITLE in alert.body and "(error 30007)" in alert.body
    assert "What to do:" in alert.body and "A2P 10DLC" in alert.body

    unknown = await _send_and_fail(bus, collector, ingest, "Second try.", 39999)
    assert "https://www.twilio.com/docs/api/errors/39999" in unknown.body

    # The dashboard's thread page.
    browser = Browser(ingest)
    await browser.login(await admin_token("owner"))
    status, _, page = await browser.request("GET", f"/dashboard/threads/{thread_of(LEAD)}")
    assert status == 200
    assert SPAM_TITLE in page and "What to do:" in page
    assert 'href="https://www.twilio.com/docs/api/errors/39999"' in page

    # `replyline thread`.
    for key, value in {"NATS_URL": nats_url, "DATABASE_URL": database_url, "NAMESPACE": namespace}.items():
        monkeypatch.setenv(f"REPLYLINE_{key}", value)
    monkeypatch.delenv("REPLYLINE_CONFIG", raising=False)
    capsys.readouterr()
    assert await asyncio.to_thread(cli.main, ["thread", LEAD]) == 0
    text = capsys.readouterr().out
    assert SPAM_TITLE in text and "https://www.twilio.com/docs/api/errors/39999" in text
    assert await asyncio.to_thread(cli.main, ["thread", LEAD, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    failed = [r for r in rows if r["what"] == "outbound.failed" and r["source"] == "stream"]
    assert [r["summary"]["error_help"].split(" (")[0] for r in failed] == [
        SPAM_TITLE,
        "Twilio error 39999, see https://www.twilio.com/docs/api/errors/39999",
    ]
