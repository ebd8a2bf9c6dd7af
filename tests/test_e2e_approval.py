"""End to end: ingest + router + drafter + sender in-process, on real NATS and Postgres.

Twilio is the fake Messages API (the sender's real `twilio` client sends to it) and
signed webhooks (the `twilio` RequestValidator's signature) go to ingest over HTTP;
the LLM is the fake OpenAI-compatible server (the drafter's real `openai` client).

The loop: a lead texts -> the owner receives the draft prompt by SMS -> replies
EDIT -> receives the new version's prompt -> replies YES -> draft.approved -> the
edited text is sent to the lead.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
from twilio.request_validator import RequestValidator

from libs.bus import Bus
from libs.events import (
    DraftApproved,
    DraftCreated,
    DraftDecided,
    DraftRejected,
    InboundRouted,
    OutboundRequested,
)
from services.drafter.service import MIGRATIONS as DRAFTER_MIGRATIONS
from services.drafter.settings import DrafterSettings
from services.ingest.service import MIGRATIONS as INGEST_MIGRATIONS
from services.ingest.settings import IngestSettings
from services.router.service import MIGRATIONS as ROUTER_MIGRATIONS
from services.router.settings import RouterSettings
from services.sender.service import MIGRATIONS as SENDER_MIGRATIONS
from services.sender.settings import SenderSettings
from tests.harness import EventCollector, RunningService, start_service
from tests.specs import drafter_build, ingest_builder, router_build, sender_builder
from testsupport.fakes.openai_server import FakeOpenAI
from testsupport.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

OWNER = "+15550000001"
BUSINESS = "+15550000000"
LEAD = "+12125550123"
LEAD_2 = "+12125550188"
PUBLIC = "https://replyline.example.com"
API_TOKEN = "e2e-admin-token-" + "7" * 32
#: Noon in New York: lead-facing sends are inside the sender's quiet-hours window.
NOON_NY = datetime(2030, 6, 4, 16, 0, tzinfo=UTC)
_sids = itertools.count(1)


class Stack:
    """The running services plus a phone that texts the business through ingest."""

    def __init__(self, ingest_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession) -> None:
        self.ingest_url = ingest_url
        self.twilio = twilio
        self.http = http

    async def sms(self, from_number: str, body: str) -> str:
        """POST a Twilio-signed inbound webhook, as Twilio would; returns the MessageSid."""
        sid = f"SM{next(_sids):032x}"
        form = {
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": from_number,
            "To": BUSINESS,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsStatus": "received",
            "ApiVersion": "2010-04-01",
        }
        signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC + "/twilio/sms", form)
        async with self.http.post(
            self.ingest_url + "/twilio/sms", data=form, headers={"X-Twilio-Signature": signature}
        ) as resp:
            assert resp.status == 200, await resp.text()
        return sid

    async def texts_to(self, number: str, count: int, timeout: float = 15.0) -> list[str]:
        """Bodies of the SMS Twilio accepted for ``number``, once there are ``count``."""
        import asyncio

        async with asyncio.timeout(timeout):
            while len(self.twilio.messages_to(number)) < count:
                await self.twilio.wait_for_creates(len(self.twilio.creates) + 1, timeout=timeout)
        return [m["body"] for m in self.twilio.messages_to(number)]


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake
        assert fake.violations == [], "requests that break Twilio's OpenAPI spec"


@pytest.fixture
async def llm() -> AsyncIterator[tuple[FakeOpenAI, FakeOpenAI]]:
    async with FakeOpenAI() as primary, FakeOpenAI() as fallback:
        yield primary, fallback


@pytest.fixture
async def stack(
    make_settings: Callable[..., Any],
    fake_twilio: FakeTwilio,
    llm: tuple[FakeOpenAI, FakeOpenAI],
) -> AsyncIterator[Stack]:
    primary, fallback = llm
    common: dict[str, Any] = {
        "owner_numbers": [OWNER],
        "business_number": BUSINESS,
        "public_base_url": PUBLIC,
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
    }
    listening: list[str] = []
    running: list[RunningService] = []
    specs: list[tuple[str, Any, Any, Any]] = [
        ("drafter", make_settings(
            DrafterSettings, **common,
            drafter_llm_base_url=primary.base_url, drafter_llm_model="gpt-4o-mini",
            drafter_llm_fallback_base_url=fallback.base_url, drafter_llm_fallback_model="small-model",
            drafter_llm_max_retries=0, drafter_llm_timeout_s=2.0,
        ), drafter_build, DRAFTER_MIGRATIONS),
        ("router", make_settings(RouterSettings, **common), router_build, ROUTER_MIGRATIONS),
        ("sender", make_settings(
            SenderSettings, **common,
            twilio_api_base_url=fake_twilio.base_url, twilio_from_number=BUSINESS,
        ), sender_builder(clock=lambda: NOON_NY), SENDER_MIGRATIONS),
        ("ingest", make_settings(IngestSettings, **common, http_port=0, api_token=API_TOKEN),
         ingest_builder(listening.append), INGEST_MIGRATIONS),
    ]
    try:
        for name, settings, build, migrations in specs:
            running.append(
                await start_service(settings, name=name, build=build, migrations=migrations)
            )
        async with aiohttp.ClientSession() as http:
            yield Stack(listening[0], fake_twilio, http)
    finally:
        for service in reversed(running):
            await service.stop()


def _ref_of(prompt: str) -> str:
    match = re.match(r"Draft #(\d+) for ", prompt)
    assert match, prompt
    return match.group(1)


async def test_lead_sms_edit_then_yes_sends_the_edited_reply(
    stack: Stack,
    llm: tuple[FakeOpenAI, FakeOpenAI],
    collector: EventCollector,
    pool: asyncpg.Pool,
) -> None:
    primary, fallback = llm
    primary.fail(500)  # the primary provider is down: the fallback drafts
    fallback.reply("Drain cleaning starts at $129. When would suit you? - Sunny Side Plumbing")

    await stack.sms(LEAD, "Hi, how much does drain cleaning cost for a kitchen sink?")
    (prompt,) = await stack.texts_to(OWNER, 1)
    ref = _ref_of(prompt)
    assert prompt == (
        f'Draft #{ref} for {LEAD}: "Drain cleaning starts at $129. When would suit you? - '
        f'Sunny Side Plumbing" Reply YES {ref}, NO {ref}, or EDIT {ref} <new text>.'
    )

    await stack.sms(OWNER, f"EDIT {ref} It's $129 flat. I can come tomorrow at 9am.")
    prompts = await stack.texts_to(OWNER, 2)
    new_ref = _ref_of(prompts[1])  # each version has its own ref
    assert new_ref != ref
    assert prompts[1] == (
        f"Draft #{new_ref} for {LEAD}: \"It's $129 flat. I can come tomorrow at 9am.\" "
        f"Reply YES {new_ref}, NO {new_ref}, or EDIT {new_ref} <new text>."
    )
    await collector.wait_for(DraftCreated, lambda e: e.version == 2)

    await stack.sms(OWNER, f"YES {new_ref}")
    (approved,) = await collector.wait_for(DraftApproved, timeout=15)
    assert (approved.version, approved.reviewer, approved.to_number) == (2, OWNER, LEAD)
    # The sender delivered exactly the approved text to the lead, and nothing else.
    assert await stack.texts_to(LEAD, 1) == ["It's $129 flat. I can come tomorrow at 9am."]

    # Every version kept, every decision recorded, both LLM attempts traced.
    versions = await pool.fetch("SELECT version, status, source FROM drafts ORDER BY version")
    assert [tuple(v) for v in versions] == [
        (1, "SUPERSEDED", "llm"),
        (2, "APPROVED_TO_SEND", "edit"),
    ]
    approvals = await pool.fetch("SELECT action, outcome, reviewer FROM approvals ORDER BY id")
    assert [tuple(a) for a in approvals] == [
        ("edit", "accepted", OWNER),
        ("approve", "accepted", OWNER),
    ]
    traces = await pool.fetch("SELECT * FROM ai_traces ORDER BY id")
    assert [(t["provider"], t["ok"]) for t in traces] == [("primary", False), ("fallback", True)]
    ok = traces[1]
    assert ok["model"] == "small-model" and ok["completion_tokens"] == 13
    assert ok["prompt_tokens"] > 50 and ok["total_tokens"] == ok["prompt_tokens"] + 13


async def test_no_rejects_and_a_lead_cannot_approve(
    stack: Stack, collector: EventCollector, bus: Bus
) -> None:
    await stack.sms(LEAD, "Hi, how much does drain cleaning cost for a kitchen sink?")
    (prompt,) = await stack.texts_to(OWNER, 1)
    ref = _ref_of(prompt)

    # A lead texting the owner's command is a lead message, never a decision.
    await stack.sms(LEAD_2, f"YES {ref}")
    await collector.wait_for(InboundRouted, lambda e: e.from_number == LEAD_2, timeout=15)
    await collector.assert_none(DraftDecided, within=0.5)

    await stack.sms(OWNER, f"NO {ref}")
    (rejected,) = await collector.wait_for(DraftRejected, timeout=15)
    assert rejected.reviewer == OWNER
    await collector.assert_none(DraftApproved, within=0.5)
    assert stack.twilio.messages_to(LEAD) == []  # nothing ever went to the first lead


async def test_bare_yes_with_two_pending_drafts_gets_a_clarifying_sms(
    stack: Stack, collector: EventCollector
) -> None:
    await stack.sms(LEAD, "Hi, how much does drain cleaning cost for a kitchen sink?")
    await stack.sms(LEAD_2, "How much do you charge to repair a water heater?")
    prompts = await stack.texts_to(OWNER, 2)
    refs = sorted(_ref_of(p) for p in prompts)

    await stack.sms(OWNER, "YES")
    texts = await stack.texts_to(OWNER, 3)
    assert texts[2].startswith("2 drafts are waiting: ")
    assert all(f"#{ref}" in texts[2] for ref in refs)
    assert texts[2].endswith("Which one? Reply YES <ref>, NO <ref>, or EDIT <ref> <new text>.")
    await collector.assert_none(DraftApproved, within=0.5)
    assert len(collector.of_type(OutboundRequested)) == 3

    # The owner API on ingest lists them (asking the drafter over NATS) and decides.
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    async with stack.http.get(stack.ingest_url + "/api/drafts", headers=auth) as resp:
        assert resp.status == 200, await resp.text()
        listed = await resp.json()
    assert sorted(d["ref"] for d in listed["drafts"]) == refs
    async with stack.http.post(
        stack.ingest_url + f"/api/drafts/{refs[1]}/approve", headers=auth, json={}
    ) as resp:
        assert resp.status == 202, await resp.text()
    (approved,) = await collector.wait_for(DraftApproved, timeout=15)
    chosen = next(d for d in listed["drafts"] if d["ref"] == refs[1])
    assert (approved.draft_id, approved.to_number) == (chosen["draft_id"], chosen["to_number"])
    assert approved.reviewer.startswith("api:")


@pytest.mark.parametrize("glued", ["YES{ref}", "YES#{ref}", "{ref}YES", "Y{ref}", "YES {ref},0"])
async def test_a_ref_glued_to_yes_never_approves_the_other_pending_draft(
    stack: Stack, collector: EventCollector, pool: asyncpg.Pool, glued: str
) -> None:
    """Issue 11 item 2: "YES1000" used to be read as a bare YES, which approves
    whichever single draft is pending: here the other lead's draft."""
    await stack.sms(LEAD, "Hi, how much does drain cleaning cost for a kitchen sink?")
    (first,) = await stack.texts_to(OWNER, 1)
    first_ref = _ref_of(first)
    await stack.sms(OWNER, f"NO {first_ref}")
    await collector.wait_for(DraftRejected, timeout=15)
    await stack.sms(LEAD_2, "How much do you charge to repair a water heater?")
    texts = await stack.texts_to(OWNER, 2)
    other_ref = _ref_of(texts[1])

    # The only pending draft is LEAD_2's; the owner means the first one.
    await stack.sms(OWNER, glued.format(ref=first_ref))
    texts = await stack.texts_to(OWNER, 3)
    assert texts[2].startswith("Sorry, I did not understand"), texts[2]
    assert f"#{other_ref} for {LEAD_2}" in texts[2]
    await collector.assert_none(DraftApproved, within=1.0)
    status = await pool.fetchval("SELECT status FROM drafts WHERE ref = $1", other_ref)
    assert status == "DRAFT_PENDING_APPROVAL"
    assert stack.twilio.messages_to(LEAD_2) == []


async def test_yes_to_a_prompt_replaced_by_an_api_edit_reasks_with_the_new_text(
    stack: Stack, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    """Issue 11 item 9: the owner's YES applies to the version their prompt showed."""
    await stack.sms(LEAD, "Hi, how much does drain cleaning cost for a kitchen sink?")
    (prompt,) = await stack.texts_to(OWNER, 1)
    v1_ref = _ref_of(prompt)

    # Someone edits it on the owner API while the owner reads the first prompt.
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    async with stack.http.post(
        stack.ingest_url + f"/api/drafts/{v1_ref}/edit", headers=auth,
        json={"text": "Drain cleaning is $99 today only."},
    ) as resp:
        assert resp.status == 202, await resp.text()
    (v2,) = await collector.wait_for(DraftCreated, lambda e: e.version == 2, timeout=15)
    texts = await stack.texts_to(OWNER, 2)
    assert _ref_of(texts[1]) == v2.ref != v1_ref

    await stack.sms(OWNER, f"YES {v1_ref}")
    texts = await stack.texts_to(OWNER, 3)
    assert texts[2] == (
        f"Draft #{v1_ref} was changed before your reply; nothing was done. Now: "
        f'Draft #{v2.ref} for {LEAD}: "Drain cleaning is $99 today only." '
        f"Reply YES {v2.ref}, NO {v2.ref}, or EDIT {v2.ref} <new text>."
    )
    await collector.assert_none(DraftApproved, within=1.0)
    statuses = await pool.fetch("SELECT version, status FROM drafts ORDER BY version")
    assert [tuple(r) for r in statuses] == [(1, "SUPERSEDED"), (2, "DRAFT_PENDING_APPROVAL")]

    await stack.sms(OWNER, f"YES {v2.ref}")
    (approved,) = await collector.wait_for(DraftApproved, timeout=15)
    assert (approved.version, approved.body) == (2, "Drain cleaning is $99 today only.")
    assert await stack.texts_to(LEAD, 1) == ["Drain cleaning is $99 today only."]
