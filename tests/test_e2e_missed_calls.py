"""Missed-call text-back on the real stack (issue 16): ingest's voice webhooks, signed by the
twilio library, forward the call; a dial-status callback that says nobody answered becomes
``call.missed``; the scheduler's default ``call_missed`` workflow texts the caller back through
the sender and the fake Twilio (spec-checked), once per window, never to an opted-out caller.
"""

from __future__ import annotations

import asyncio
import itertools
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
from twilio.request_validator import RequestValidator

from libs.events import CallMissed, ContactOptout, thread_of
from services.ingest.service import MIGRATIONS as INGEST_MIGRATIONS
from services.ingest.settings import IngestSettings
from services.scheduler.service import MIGRATIONS as SCHEDULER_MIGRATIONS
from services.scheduler.settings import SchedulerSettings
from services.sender.service import MIGRATIONS as SENDER_MIGRATIONS
from services.sender.settings import SenderSettings
from tests.harness import EventCollector, RunningService, eventually, start_service
from tests.ops.conftest import REPO_ROOT
from tests.specs import ingest_builder, scheduler_builder, sender_builder
from testsupport.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

pytestmark = pytest.mark.timeout(180)

OWNER = "+15550000001"
OWNER_MOBILE = "+15550000009"
BUSINESS = "+15550000000"
CALLER = "+12125550166"
PUBLIC = "https://replyline.example.com"
NOON_NY = datetime(2030, 6, 4, 16, 0, tzinfo=UTC)  # outside the sender's quiet hours
_sids = itertools.count(0xCA11)


def call_sid() -> str:
    return f"CA{next(_sids):032x}"


class Stack:
    def __init__(self, make_settings: Callable[..., Any], twilio: FakeTwilio, http: aiohttp.ClientSession) -> None:
        self.make_settings = make_settings
        self.twilio = twilio
        self.http = http
        self.running: dict[str, RunningService] = {}
        self.ingest_url = ""

    async def start(self, *, forward: str = OWNER_MOBILE) -> None:
        common: dict[str, Any] = {
            "owner_numbers": [OWNER],
            "business_number": BUSINESS,
            "public_base_url": PUBLIC,
            "twilio_account_sid": ACCOUNT_SID,
            "twilio_auth_token": AUTH_TOKEN,
        }
        ms = self.make_settings
        listening: list[str] = []
        specs: list[tuple[str, Any, Any, Any]] = [
            (
                "scheduler",
                ms(SchedulerSettings, **common, workflows_dir=str(REPO_ROOT / "workflows")),
                scheduler_builder(),
                SCHEDULER_MIGRATIONS,
            ),
            (
                "sender",
                ms(SenderSettings, **common, twilio_api_base_url=self.twilio.base_url,
                   twilio_from_number=BUSINESS),
                sender_builder(clock=lambda: NOON_NY),
                SENDER_MIGRATIONS,
            ),
            (
                "ingest",
                ms(IngestSettings, **common, http_port=0, call_forward_number=forward),
                ingest_builder(listening.append),
                INGEST_MIGRATIONS,
            ),
        ]  # fmt: skip
        for name, settings, build, migrations in specs:
            self.running[name] = await start_service(
                settings, name=name, build=build, migrations=migrations
            )
        self.ingest_url = listening[0]

    async def post(self, path: str, form: dict[str, str], *, sign: bool = True) -> tuple[int, str]:
        headers = {}
        if sign:
            headers["X-Twilio-Signature"] = RequestValidator(AUTH_TOKEN).compute_signature(
                PUBLIC + path, form
            )
        async with self.http.post(self.ingest_url + path, data=form, headers=headers) as resp:
            return resp.status, await resp.text()

    async def call(self, sid: str, caller: str = CALLER) -> ET.Element:
        """Twilio's incoming-call webhook; returns the TwiML ingest answered."""
        form = {
            "CallSid": sid, "AccountSid": ACCOUNT_SID, "From": caller, "To": BUSINESS,
            "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01",
            "Caller": caller, "Called": BUSINESS, "FromCountry": "US", "ToCountry": "US",
        }  # fmt: skip
        status, text = await self.post("/twilio/voice", form)
        assert status == 200, text
        return ET.fromstring(text)

    async def dial_status(self, sid: str, dial_status: str, caller: str = CALLER) -> ET.Element:
        """The <Dial action> callback Twilio posts when the forwarded leg ends."""
        form = {
            "CallSid": sid, "AccountSid": ACCOUNT_SID, "From": caller, "To": BUSINESS,
            "CallStatus": "in-progress", "Direction": "inbound", "ApiVersion": "2010-04-01",
            "DialCallStatus": dial_status, "DialCallSid": "CA" + "d1" * 16,
            "DialCallDuration": "0" if dial_status != "completed" else "42",
        }  # fmt: skip
        status, text = await self.post("/twilio/voice/dial-status", form)
        assert status == 200, text
        return ET.fromstring(text)

    async def stop(self) -> None:
        for name in list(self.running)[::-1]:
            await self.running.pop(name).stop()


@pytest.fixture
async def stack(make_settings: Callable[..., Any]) -> AsyncIterator[Stack]:
    async with FakeTwilio() as twilio, aiohttp.ClientSession() as http:
        s = Stack(make_settings, twilio, http)
        try:
            yield s
        finally:
            await s.stop()
        assert twilio.violations == []


async def audit_actions(pool: asyncpg.Pool, thread: str) -> list[str]:
    rows = await pool.fetch("SELECT action FROM audit_log WHERE thread = $1 ORDER BY at, id", thread)
    return [r["action"] for r in rows]


async def test_incoming_call_is_forwarded_to_the_owner_with_a_ring_timeout(stack: Stack) -> None:
    await stack.start()
    twiml = await stack.call(call_sid())
    (dial,) = twiml.findall("Dial")
    assert dial.get("timeout") == "20"
    assert dial.get("action") == PUBLIC + "/twilio/voice/dial-status"
    assert [n.text for n in dial.findall("Number")] == [OWNER_MOBILE]

    # Same checks as the SMS webhook: unsigned, or a malformed CallSid, is refused.
    form = {"CallSid": call_sid(), "AccountSid": ACCOUNT_SID, "From": CALLER, "To": BUSINESS}
    assert (await stack.post("/twilio/voice", form, sign=False))[0] == 403
    bad = dict(form, CallSid="CA123")
    assert (await stack.post("/twilio/voice", bad))[0] == 400
    other = dict(form, AccountSid="AC" + "9" * 32)
    assert (await stack.post("/twilio/voice/dial-status", dict(other, DialCallStatus="busy")))[0] == 403


async def test_missed_call_texts_back_once_within_the_window(
    stack: Stack, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    await stack.start()
    thread = thread_of(CALLER)

    answered = call_sid()
    await stack.call(answered)
    reply = await stack.dial_status(answered, "completed")
    assert reply.find("Hangup") is not None and reply.find("Say") is None

    first = call_sid()
    await stack.call(first)
    reply = await stack.dial_status(first, "no-answer")
    assert reply.find("Say") is not None and reply.find("Hangup") is not None
    (missed,) = await collector.wait_for(CallMissed, timeout=10)
    assert (missed.call_sid, missed.from_number, missed.reason) == (first, CALLER, "no-answer")

    await stack.twilio.wait_for_creates(1, timeout=20)
    (text,) = stack.twilio.messages_to(CALLER)
    assert text["body"].startswith("Sorry we missed your call — how can we help?")

    # The caller tries again at once: busy this time. Recorded, not texted again.
    second = call_sid()
    await stack.call(second)
    await stack.dial_status(second, "busy")
    await eventually(lambda: _has(pool, thread, "call_textback_skipped"), timeout=20)
    await asyncio.sleep(0.5)  # a second text-back would have been requested by now
    assert len(stack.twilio.messages_to(CALLER)) == 1

    actions = await audit_actions(pool, thread)
    assert actions.count("call_received") == 3
    assert "call_answered" in actions
    assert actions.count("call_missed") == 2


async def _has(pool: asyncpg.Pool, thread: str, action: str) -> bool:
    return action in await audit_actions(pool, thread)


async def test_no_forward_number_says_a_short_message_and_texts_back(stack: Stack) -> None:
    await stack.start(forward="")
    twiml = await stack.call(call_sid())
    assert twiml.find("Dial") is None
    assert twiml.find("Say") is not None and twiml.find("Hangup") is not None
    await stack.twilio.wait_for_creates(1, timeout=20)
    (text,) = stack.twilio.messages_to(CALLER)
    assert "Sorry we missed your call" in text["body"]


async def test_opted_out_caller_is_not_texted_back(
    stack: Stack, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    await stack.start()
    sid = "SM" + "5" * 32
    form = {
        "MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid, "AccountSid": ACCOUNT_SID,
        "From": CALLER, "To": BUSINESS, "Body": "STOP", "NumMedia": "0",
        "NumSegments": "1", "SmsStatus": "received", "ApiVersion": "2010-04-01",
    }  # fmt: skip
    assert (await stack.post("/twilio/sms", form))[0] == 200
    await collector.wait_for(ContactOptout, timeout=10)

    missed = call_sid()
    await stack.call(missed)
    await stack.dial_status(missed, "no-answer")
    await collector.wait_for(CallMissed, timeout=10)
    # The scheduler handled the call (its window row) and enrolled nobody.
    claimed = "SELECT event_id FROM trigger_windows WHERE thread = $1"
    assert await eventually(lambda: pool.fetchval(claimed, thread_of(CALLER)), timeout=20) == missed
    await asyncio.sleep(0.5)
    assert await pool.fetchval("SELECT count(*) FROM workflow_enrollments") == 0
    assert stack.twilio.messages_to(CALLER) == []
