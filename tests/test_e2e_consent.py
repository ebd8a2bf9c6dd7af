"""Consent ordering on the real stack (issue 11 items 4 and 5): an acknowledged STOP wins.

- With the router stopped, a STOP that ingest answered 200 to must still block a reply
  the owner approves afterwards (ingest publishes contact.optout before answering; the
  sender reads the stream's newest consent event right before it sends).
- A START parked in the DLQ and replayed after a newer STOP must not opt the lead back
  in (the replay carries its original stream sequence; the sender orders consent by
  when the lead's SMS arrived).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
from twilio.request_validator import RequestValidator

from libs.bus import Bus
from libs.consumer import Consumer, publish_dlq_copy
from libs.events import (
    ContactOptin,
    ContactOptout,
    ContactPaused,
    DraftApproved,
    InboundReceived,
    InboundRouted,
    OutboundFailed,
    OutboundRequested,
    OutboundSent,
    thread_of,
)
from libs.replay import replay_dlq
from services.drafter.service import MIGRATIONS as DRAFTER_MIGRATIONS
from services.drafter.settings import DrafterSettings
from services.ingest.service import MIGRATIONS as INGEST_MIGRATIONS
from services.ingest.settings import IngestSettings
from services.router.service import MIGRATIONS as ROUTER_MIGRATIONS
from services.router.settings import RouterSettings
from services.sender.service import MIGRATIONS as SENDER_MIGRATIONS
from services.sender.settings import SenderSettings
from tests.harness import EventCollector, RunningService, eventually, start_service
from tests.specs import drafter_build, ingest_builder, router_build, sender_builder
from testsupport.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

pytestmark = pytest.mark.timeout(180)

OWNER = "+15550000001"
BUSINESS = "+15550000000"
LEAD = "+12125550123"
PUBLIC = "https://replyline.example.com"
API_TOKEN = "e2e-consent-token-" + "5" * 32
NOON_NY = datetime(2030, 6, 4, 16, 0, tzinfo=UTC)  # inside the sender's quiet-hours window
_sids = itertools.count(0xC0)


class Stack:
    def __init__(
        self, make_settings: Callable[..., Any], twilio: FakeTwilio, http: aiohttp.ClientSession
    ) -> None:
        self.make_settings = make_settings
        self.twilio = twilio
        self.http = http
        self.running: dict[str, RunningService] = {}
        self.ingest_url = ""

    async def start(self, name: str) -> None:
        common: dict[str, Any] = {
            "owner_numbers": [OWNER],
            "business_number": BUSINESS,
            "public_base_url": PUBLIC,
            "twilio_account_sid": ACCOUNT_SID,
            "twilio_auth_token": AUTH_TOKEN,
        }
        ms = self.make_settings
        listening: list[str] = []
        specs: dict[str, tuple[Any, Any, Any]] = {
            "drafter": (ms(DrafterSettings, **common), drafter_build, DRAFTER_MIGRATIONS),
            "router": (ms(RouterSettings, **common), router_build, ROUTER_MIGRATIONS),
            "sender": (
                ms(
                    SenderSettings,
                    **common,
                    twilio_api_base_url=self.twilio.base_url,
                    twilio_from_number=BUSINESS,
                ),
                sender_builder(clock=lambda: NOON_NY),
                SENDER_MIGRATIONS,
            ),
            "ingest": (
                ms(IngestSettings, **common, http_port=0, api_token=API_TOKEN),
                ingest_builder(listening.append),
                INGEST_MIGRATIONS,
            ),
        }
        settings, build, migrations = specs[name]
        self.running[name] = await start_service(settings, name=name, build=build, migrations=migrations)
        if listening:
            self.ingest_url = listening[0]

    async def stop(self, name: str) -> None:
        await self.running.pop(name).stop()

    async def sms(self, from_number: str, body: str) -> str:
        """A Twilio-signed inbound webhook; asserts ingest acknowledged it (200)."""
        sid = f"SM{next(_sids):032x}"
        form = {
            "MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid, "AccountSid": ACCOUNT_SID,
            "From": from_number, "To": BUSINESS, "Body": body, "NumMedia": "0",
            "NumSegments": "1", "SmsStatus": "received", "ApiVersion": "2010-04-01",
        }  # fmt: skip
        signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC + "/twilio/sms", form)
        async with self.http.post(
            self.ingest_url + "/twilio/sms", data=form, headers={"X-Twilio-Signature": signature}
        ) as resp:
            assert resp.status == 200, await resp.text()
        return sid


@pytest.fixture
async def stack(make_settings: Callable[..., Any]) -> AsyncIterator[Stack]:
    async with FakeTwilio() as twilio, aiohttp.ClientSession() as http:
        s = Stack(make_settings, twilio, http)
        try:
            yield s
        finally:
            for name in list(s.running)[::-1]:
                await s.stop(name)
        assert twilio.violations == []


async def _outcome(collector: EventCollector, match: Callable[[Any], bool]) -> OutboundSent | OutboundFailed:
    """The sender's verdict on one outbox message (sent, or failed/refused)."""

    def found() -> list[Any]:
        return [e for e in collector.events if isinstance(e, OutboundSent | OutboundFailed) and match(e)]

    (event,) = await eventually(found, timeout=20)
    return event  # type: ignore[no-any-return]


async def test_acknowledged_stop_beats_an_approval_while_the_router_is_stopped(
    stack: Stack, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    for name in ("drafter", "router", "sender", "ingest"):
        await stack.start(name)
    await stack.sms(LEAD, "Hi, how much does drain cleaning cost for a kitchen sink?")
    await stack.twilio.wait_for_creates(1, timeout=20)  # the owner's draft prompt
    (prompt,) = [m["body"] for m in stack.twilio.messages_to(OWNER)]
    ref = prompt.split("#", 1)[1].split(" ", 1)[0]

    await stack.stop("router")  # nothing routes the STOP
    await stack.sms(LEAD, "STOP")  # ... but ingest acknowledged it
    # ingest's contact.optout reaches the drafter, which withdraws the pending draft
    # (docs/drafter.md, "Withdrawn drafts"); the sender's gate would refuse it anyway.
    reason = "SELECT withdrawn_reason FROM drafts WHERE ref = $1"
    assert await eventually(lambda: pool.fetchval(reason, ref), timeout=20) == "opted_out"
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    async with stack.http.post(
        stack.ingest_url + f"/api/drafts/{ref}/approve", headers=auth, json={}
    ) as resp:
        # The API asks the drafter for the pending draft first: there is none any more.
        assert resp.status == 404, await resp.text()
    await collector.assert_none(DraftApproved, within=1.0)
    assert stack.twilio.messages_to(LEAD) == []


async def test_an_approval_that_raced_an_acknowledged_stop_is_refused_by_the_sender(
    stack: Stack, collector: EventCollector, bus: Bus
) -> None:
    """The sender's own gate: an approval already on the bus (the drafter decided before it
    saw the STOP) never reaches the lead once ingest has acknowledged the STOP, even with
    the router and the drafter stopped (nothing else withdraws it)."""
    for name in ("sender", "ingest"):
        await stack.start(name)
    await stack.sms(LEAD, "STOP")  # acknowledged by ingest: contact.optout before the 200
    await collector.wait_for(ContactOptout, lambda e: e.number == LEAD, timeout=10)
    await bus.publish(
        DraftApproved(
            thread=thread_of(LEAD),
            draft_id="00000000-0000-4000-8000-000000000001",
            version=1,
            to_number=LEAD,
            body="Drain cleaning is $129.",
            reviewer=OWNER,
        )
    )
    outcome = await _outcome(collector, lambda e: e.to_number == LEAD)
    assert isinstance(outcome, OutboundFailed) and outcome.reason == "opted_out", outcome
    assert stack.twilio.messages_to(LEAD) == []


async def test_replayed_start_from_the_dlq_does_not_undo_a_newer_stop(
    stack: Stack, collector: EventCollector, bus: Bus, pool: asyncpg.Pool
) -> None:
    await stack.start("sender")
    await stack.start("ingest")
    start_sid = await stack.sms(LEAD, "START")

    # The router's handler fails on the START: it lands in the DLQ exactly as the
    # consumer puts it there (copy with the original headers and sequence, then term).
    async def never(event: Any, d: Any) -> None:
        raise AssertionError("not used")

    router_consumer = Consumer(bus, "router", {InboundReceived: never, ContactPaused: never})
    await router_consumer.ensure()
    sub = await bus.js.pull_subscribe_bind("router", bus.stream)
    (msg,) = await sub.fetch(batch=1, timeout=5)
    assert InboundReceived.__struct_config__.tag in msg.subject
    await publish_dlq_copy(
        bus, consumer="router", subject=msg.subject, seq=msg.metadata.sequence.stream,
        data=msg.data, headers=dict(msg.headers or {}), reason="classifier crashed", deliveries=4,
    )  # fmt: skip
    await msg.term()
    await sub.unsubscribe()

    await stack.start("router")
    stop_sid = await stack.sms(LEAD, "STOP")
    await collector.wait_for(InboundRouted, lambda e: e.message_sid == stop_sid, timeout=20)
    opted_out = "SELECT opted_out FROM consent WHERE number = $1"
    await eventually(lambda: pool.fetchval(opted_out, LEAD), timeout=20)

    [replayed] = await replay_dlq(bus, consumer="router")
    assert replayed.original_subject.startswith("inbound.received.")
    (routed,) = await collector.wait_for(InboundRouted, lambda e: e.message_sid == start_sid, timeout=20)
    assert (routed.decision, routed.rule) == ("log_only", "stale")
    assert collector.of_type(ContactOptin) == []

    # A message to the lead afterwards is refused by the sender's consent gate.
    await bus.publish(
        OutboundRequested(
            thread=thread_of(LEAD), request_id="wf-after-replay", to_number=LEAD,
            body="Still need that drain cleaned?", kind="workflow",
        )
    )  # fmt: skip
    outcome = await _outcome(collector, lambda e: e.request_id == "wf-after-replay")
    assert isinstance(outcome, OutboundFailed) and outcome.reason == "opted_out", outcome
    assert await pool.fetchval(opted_out, LEAD) is True
    assert stack.twilio.messages_to(LEAD) == []
