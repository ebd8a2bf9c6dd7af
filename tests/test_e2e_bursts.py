"""One draft per burst, end to end: ingest + router + drafter + sender + scheduler.

Signed Twilio webhooks in, the fake Twilio Messages API out (checked against the
OpenAPI spec), the fake OpenAI server as the LLM. The drafter runs with bursts on
(debounce 20 s, at most 120 s); the scheduler's clock is manual, so the debounce
timer fires when the test moves the clock, through the scheduler's real durable
timers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest

from libs.bus import Bus
from libs.events import (
    ContactOptout,
    DraftApproved,
    DraftCreated,
    DraftDecided,
    HumanReply,
    InboundRouted,
    OutboundFailed,
    TimerCancel,
    TimerSet,
)
from services.drafter.ids import expiry_timer_id
from services.drafter.service import MIGRATIONS as DRAFTER_MIGRATIONS
from services.drafter.settings import DrafterSettings
from services.ingest.service import MIGRATIONS as INGEST_MIGRATIONS
from services.ingest.settings import IngestSettings
from services.router.service import MIGRATIONS as ROUTER_MIGRATIONS
from services.router.settings import RouterSettings
from services.scheduler.clock import ManualClock
from services.scheduler.service import MIGRATIONS as SCHEDULER_MIGRATIONS
from services.scheduler.settings import SchedulerSettings
from services.sender.service import MIGRATIONS as SENDER_MIGRATIONS
from services.sender.settings import SenderSettings
from tests.harness import EventCollector, RunningService, start_service
from tests.specs import drafter_build, ingest_builder, router_build, scheduler_builder, sender_builder
from tests.test_e2e_approval import API_TOKEN, BUSINESS, LEAD, NOON_NY, OWNER, PUBLIC, Stack
from testsupport.fakes.openai_server import FakeOpenAI
from testsupport.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

#: Three messages the router drafts for (English, not negative, a known intent).
BURST = (
    "Hi, do you have any openings this week?",
    "How much does drain cleaning cost?",
    "Can someone come tomorrow morning?",
)
NEGATIVE = "This is the worst plumbing service ever, you are useless and rude."
REPLY = "Drain cleaning starts at $129 and we can come tomorrow at 9am. - Sunny Side Plumbing"


class BurstStack(Stack):
    """The running services, restartable one by one (drafter, scheduler)."""

    def __init__(self, ingest_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession) -> None:
        super().__init__(ingest_url, twilio, http)
        self.specs: dict[str, tuple[Any, Any, Any]] = {}
        self.running: dict[str, RunningService] = {}
        self.clock = ManualClock()

    async def start(self, name: str) -> None:
        settings, build, migrations = self.specs[name]
        if name == "scheduler":
            exposed: dict[str, Any] = {}
            build = scheduler_builder(self.clock, exposed)
        self.running[name] = await start_service(settings, name=name, build=build, migrations=migrations)
        if name == "scheduler":
            await exposed["timers"].ready.wait()

    async def stop(self, name: str) -> None:
        await self.running.pop(name).stop()

    def advance(self, seconds: float) -> None:
        self.clock.advance(timedelta(seconds=seconds))

    def rewind(self) -> None:
        """Back to real time, so a timer set from now on (the drafter's real clock + 20 s)
        waits for the next advance instead of being due at once."""
        self.clock.offset = timedelta()


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as primary:
        primary.respond_with(lambda req: REPLY)
        yield primary


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake
        assert fake.violations == [], "requests that break Twilio's OpenAPI spec"


@pytest.fixture
async def stack(
    make_settings: Callable[..., Any], fake_twilio: FakeTwilio, llm: FakeOpenAI, tmp_path: Path
) -> AsyncIterator[BurstStack]:
    common: dict[str, Any] = {
        "owner_numbers": [OWNER],
        "business_number": BUSINESS,
        "public_base_url": PUBLIC,
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
    }
    (tmp_path / "workflows").mkdir()
    listening: list[str] = []
    specs: dict[str, tuple[Any, Any, Any]] = {
        "scheduler": (
            make_settings(
                SchedulerSettings, **common,
                workflows_dir=str(tmp_path / "workflows"),
                email_templates_dir=str(tmp_path / "workflows"),
            ),
            None, SCHEDULER_MIGRATIONS,
        ),
        "drafter": (
            make_settings(
                DrafterSettings, **common,
                drafter_llm_base_url=llm.base_url, drafter_llm_model="gpt-4o-mini", drafter_llm_max_retries=0,
                drafter_llm_timeout_s=2.0, bare_reply_grace_s=0.0,
                # Bursts on, as in production (the test fixtures default to 0).
                burst_debounce_s=20.0, burst_max_wait_s=120.0,
            ),
            drafter_build, DRAFTER_MIGRATIONS,
        ),
        "router": (make_settings(RouterSettings, **common), router_build, ROUTER_MIGRATIONS),
        "sender": (
            make_settings(
                SenderSettings, **common,
                twilio_api_base_url=fake_twilio.base_url, twilio_from_number=BUSINESS,
            ),
            sender_builder(clock=lambda: NOON_NY), SENDER_MIGRATIONS,
        ),
        "ingest": (
            make_settings(IngestSettings, **common, http_port=0, api_token=API_TOKEN),
            ingest_builder(listening.append), INGEST_MIGRATIONS,
        ),
    }  # fmt: skip
    async with aiohttp.ClientSession() as http:
        s = BurstStack("", fake_twilio, http)
        s.specs = specs
        try:
            for name in specs:
                await s.start(name)
            s.ingest_url = listening[0]
            yield s
        finally:
            for name in reversed(list(s.running)):
                await s.stop(name)


async def _held(collector: EventCollector, sids: list[str]) -> None:
    """Each message was routed and the drafter (re)armed the burst's timer for it."""
    for sid in sids:
        await collector.wait_for(InboundRouted, lambda e, sid=sid: e.message_sid == sid, timeout=15)
    await collector.wait_for(
        TimerSet, lambda e: e.kind == "burst_debounce", count=len(sids), timeout=15
    )


def _ref(prompt: str) -> str:
    return prompt.split("#", 1)[1].split(" ", 1)[0]


async def test_a_three_message_burst_gets_one_draft_and_one_prompt(
    stack: BurstStack, llm: FakeOpenAI, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    sids = [await stack.sms(LEAD, body) for body in BURST]
    await _held(collector, sids)
    await collector.assert_none(DraftCreated, within=1.0)  # the debounce holds them
    assert llm.requests == []

    stack.advance(25)
    (created,) = await collector.wait_for(DraftCreated, timeout=15)
    assert created.in_reply_to == sids[-1]
    (prompt,) = await stack.texts_to(OWNER, 1)
    ref = created.ref
    # The owner sees all three messages and the whole draft, in one prompt.
    assert prompt == (
        f'Draft #{ref} for {LEAD} (they wrote 3 messages: "{BURST[0]}" / "{BURST[1]}" / '
        f'"{BURST[2]}"): "{REPLY}" Reply YES {ref}, NO {ref}, or EDIT {ref} <new text>.'
    )
    # One LLM call, the three messages as the last three user turns.
    (request,) = llm.requests
    assert [m["content"] for m in request.messages[-3:]] == list(BURST)
    assert all(m["role"] == "user" for m in request.messages[-3:])
    await collector.assert_none(DraftCreated, lambda e: e.draft_id != created.draft_id, within=1.0)
    row = await pool.fetchrow("SELECT lead_messages, inbound_body FROM drafts")
    assert list(row["lead_messages"]) == list(BURST)

    await stack.sms(OWNER, f"YES {ref}")
    await collector.wait_for(DraftApproved, timeout=15)
    assert await stack.texts_to(LEAD, 1) == [REPLY]


async def test_a_message_while_a_draft_is_pending_supersedes_it(
    stack: BurstStack, llm: FakeOpenAI, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    first = await stack.sms(LEAD, BURST[1])
    await _held(collector, [first])
    stack.advance(25)
    (old,) = await collector.wait_for(DraftCreated, timeout=15)
    await stack.texts_to(OWNER, 1)

    second = await stack.sms(LEAD, BURST[2])
    await collector.wait_for(InboundRouted, lambda e: e.message_sid == second, timeout=15)
    await collector.wait_for(TimerSet, lambda e: e.kind == "burst_debounce", count=2, timeout=15)
    stack.advance(25)
    (new,) = await collector.wait_for(DraftCreated, lambda e: e.draft_id != old.draft_id, timeout=15)
    prompts = await stack.texts_to(OWNER, 2)
    assert prompts[1] == (
        f'Draft #{new.ref} for {LEAD} (replaces #{old.ref}; they wrote 2 messages: "{BURST[1]}" / '
        f'"{BURST[2]}"): "{REPLY}" Reply YES {new.ref}, NO {new.ref}, or EDIT {new.ref} <new text>.'
    )
    # Re-drafted with the new context: both messages in the second prompt to the model.
    assert [m["content"] for m in llm.requests[-1].messages[-2:]] == [BURST[1], BURST[2]]
    # The superseded draft's expiry timer is cancelled.
    await collector.wait_for(TimerCancel, lambda e: e.timer_id == expiry_timer_id(old.draft_id))

    await stack.sms(OWNER, f"YES {old.ref}")
    texts = await stack.texts_to(OWNER, 3)
    assert texts[2] == (
        f"Draft #{old.ref} was replaced by #{new.ref} because the lead wrote again; nothing was "
        f"sent. Reply YES {new.ref}, NO {new.ref}, or EDIT {new.ref} <new text> to decide it."
    )
    await collector.wait_for(DraftDecided)
    await collector.assert_none(DraftApproved, within=1.0)
    assert stack.twilio.messages_to(LEAD) == []
    statuses = await pool.fetch("SELECT ref, status FROM drafts ORDER BY id")
    assert [tuple(s) for s in statuses] == [
        (old.ref, "SUPERSEDED"),
        (new.ref, "DRAFT_PENDING_APPROVAL"),
    ]


async def test_a_burst_with_a_message_that_needs_review_is_not_drafted(
    stack: BurstStack, llm: FakeOpenAI, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    sids = [await stack.sms(LEAD, BURST[1]), await stack.sms(LEAD, NEGATIVE)]
    routed = await collector.wait_for(InboundRouted, count=2, timeout=15)
    assert [r.decision for r in routed] == ["draft", "needs_review"]
    await collector.wait_for(TimerSet, lambda e: e.kind == "burst_debounce", count=2, timeout=15)
    (alert,) = await stack.texts_to(OWNER, 1)
    assert "Needs review (" in alert and NEGATIVE in alert and alert.startswith("#"), alert

    stack.advance(25)
    await collector.assert_none(DraftCreated, within=2.0)
    assert llm.requests == []
    queued = await pool.fetch("SELECT message_sid FROM manual_queue ORDER BY message_sid")
    assert sorted(r["message_sid"] for r in queued) == sorted(sids)
    status = await pool.fetchval("SELECT status FROM bursts")
    assert status in ("review", "closed")


async def test_a_restart_of_drafter_and_scheduler_mid_debounce_loses_nothing(
    stack: BurstStack, llm: FakeOpenAI, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    sids = [await stack.sms(LEAD, body) for body in BURST[:2]]
    await _held(collector, sids)
    await stack.stop("drafter")
    await stack.stop("scheduler")

    stack.advance(25)  # the timer falls due while both are down
    await collector.assert_none(DraftCreated, within=0.5)
    await stack.start("scheduler")
    await stack.start("drafter")

    (created,) = await collector.wait_for(DraftCreated, timeout=20)
    assert created.in_reply_to == sids[-1]
    await collector.assert_none(DraftCreated, lambda e: e.draft_id != created.draft_id, within=2.0)
    (prompt,) = await stack.texts_to(OWNER, 1)
    assert f'"{BURST[0]}" / "{BURST[1]}"' in prompt
    assert len(llm.requests) == 1


async def test_an_opt_out_drops_the_pending_burst(
    stack: BurstStack, llm: FakeOpenAI, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    first = await stack.sms(LEAD, BURST[1])
    await _held(collector, [first])
    stop = await stack.sms(LEAD, "STOP")
    await collector.wait_for(InboundRouted, lambda e: e.message_sid == stop, timeout=15)
    await collector.wait_for(TimerCancel, lambda e: e.timer_id.startswith("burst_debounce:"), timeout=15)

    stack.advance(25)
    await collector.assert_none(DraftCreated, within=2.0)
    assert llm.requests == []
    assert await pool.fetchval("SELECT status FROM bursts") == "dropped"


# --- withdrawn drafts (docs/drafter.md, "Withdrawn drafts") -------------------------


async def _pending_draft(stack: BurstStack, collector: EventCollector, body: str = BURST[1]) -> DraftCreated:
    """One lead message, drafted after the debounce; the owner has its prompt."""
    sid = await stack.sms(LEAD, body)
    await _held(collector, [sid])
    stack.advance(25)
    (created,) = await collector.wait_for(DraftCreated, timeout=15)
    await stack.texts_to(OWNER, 1)
    stack.rewind()
    return created


async def test_a_yes_during_the_debounce_sends_nothing_and_the_new_draft_replaces_it(
    stack: BurstStack, llm: FakeOpenAI, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    old = await _pending_draft(stack, collector)
    second = await stack.sms(LEAD, BURST[2])
    await collector.wait_for(InboundRouted, lambda e: e.message_sid == second, timeout=15)
    await collector.wait_for(TimerSet, lambda e: e.kind == "burst_debounce", count=2, timeout=15)
    # Withdrawn when the message arrived, not when the new draft is written.
    await collector.wait_for(TimerCancel, lambda e: e.timer_id == expiry_timer_id(old.draft_id))

    await stack.sms(OWNER, f"YES {old.ref}")  # still inside the 20 s debounce
    texts = await stack.texts_to(OWNER, 2)
    assert texts[1] == (
        f"Draft #{old.ref} is out of date: the lead wrote again; a new draft is coming. "
        "Nothing was sent."
    )
    await collector.wait_for(DraftDecided)
    await collector.assert_none(DraftApproved, within=1.0)

    stack.advance(25)
    (new,) = await collector.wait_for(DraftCreated, lambda e: e.draft_id != old.draft_id, timeout=15)
    prompts = await stack.texts_to(OWNER, 3)
    assert prompts[2] == (
        f'Draft #{new.ref} for {LEAD} (replaces #{old.ref}; they wrote 2 messages: "{BURST[1]}" / '
        f'"{BURST[2]}"): "{REPLY}" Reply YES {new.ref}, NO {new.ref}, or EDIT {new.ref} <new text>.'
    )
    # The old draft's message is answered once: in the new turns, not in the history too.
    contents = [m["content"] for m in llm.requests[-1].messages]
    assert contents[-2:] == [BURST[1], BURST[2]] and contents.count(BURST[1]) == 1

    await stack.sms(OWNER, f"YES {old.ref}")
    texts = await stack.texts_to(OWNER, 4)
    assert texts[3].startswith(f"Draft #{old.ref} was replaced by #{new.ref} because the lead wrote again")
    await collector.assert_none(DraftApproved, within=1.0)
    assert stack.twilio.messages_to(LEAD) == []
    rows = await pool.fetch("SELECT ref, status, withdrawn_reason, replaced_by FROM drafts ORDER BY id")
    assert [(r["ref"], r["status"], r["withdrawn_reason"]) for r in rows] == [
        (old.ref, "SUPERSEDED", "lead_wrote"),
        (new.ref, "DRAFT_PENDING_APPROVAL", None),
    ]
    assert str(rows[0]["replaced_by"]) == new.draft_id


async def test_a_message_that_needs_review_withdraws_the_pending_draft(
    stack: BurstStack, llm: FakeOpenAI, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    old = await _pending_draft(stack, collector)
    await stack.sms(LEAD, NEGATIVE)
    alert = (await stack.texts_to(OWNER, 2))[1]
    assert "Needs review (" in alert, alert
    thread_ref = alert[1:].split(" ", 1)[0]

    await stack.sms(OWNER, f"YES {old.ref}")
    texts = await stack.texts_to(OWNER, 3)
    assert texts[2] == (
        f"Draft #{old.ref} is out of date: the lead wrote again and it needs you; nothing was sent. "
        f"It is in the manual-intervention queue. Answer from the business number: SEND {thread_ref} <your text>."
    )
    await collector.assert_none(DraftApproved, within=1.0)
    stack.advance(25)
    await collector.assert_none(DraftCreated, lambda e: e.draft_id != old.draft_id, within=1.5)
    assert stack.twilio.messages_to(LEAD) == []
    keys = {r["key"] for r in await pool.fetch("SELECT key FROM manual_queue WHERE resolved_at IS NULL")}
    assert f"withdrawn:{old.draft_id}:1" in keys, keys
    assert await pool.fetchval("SELECT withdrawn_reason FROM drafts") == "review"


async def test_a_stop_withdraws_the_pending_draft_and_a_yes_to_it_sends_nothing(
    stack: BurstStack, llm: FakeOpenAI, collector: EventCollector, pool: asyncpg.Pool, bus: Bus
) -> None:
    old = await _pending_draft(stack, collector)
    await stack.sms(LEAD, "STOP")
    (optout,) = await collector.wait_for(ContactOptout, timeout=15)
    await collector.wait_for(TimerCancel, lambda e: e.timer_id == expiry_timer_id(old.draft_id))

    await stack.sms(OWNER, f"YES {old.ref}")
    texts = await stack.texts_to(OWNER, 2)
    assert texts[1] == f"Draft #{old.ref} was withdrawn: {LEAD} opted out (STOP); nothing was sent."
    await collector.wait_for(DraftDecided)
    await collector.assert_none(DraftApproved, within=1.0)
    await collector.assert_none(OutboundFailed, within=0.5)  # nothing even reached the sender's gate
    assert REPLY not in [m["body"] for m in stack.twilio.messages_to(LEAD)]

    # A replayed or duplicated opt-out changes nothing (idempotent).
    withdrawn = "SELECT count(*) FROM audit_log WHERE action = 'draft_withdrawn'"
    assert await pool.fetchval(withdrawn) == 1
    await bus.publish(msgspec.structs.replace(optout, id=str(uuid.uuid4())))
    await collector.wait_for(ContactOptout, count=2, timeout=15)
    await collector.assert_none(TimerCancel, lambda e: "withdrawn" in e.id, within=1.0)
    assert await pool.fetchval(withdrawn) == 1
    assert await pool.fetchval("SELECT withdrawn_reason FROM drafts") == "opted_out"


async def test_a_person_answering_withdraws_the_pending_draft(
    stack: BurstStack, llm: FakeOpenAI, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    old = await _pending_draft(stack, collector)
    await stack.sms(OWNER, f"SEND {old.ref} {REPLY}")
    await collector.wait_for(HumanReply, timeout=15)
    assert await stack.texts_to(LEAD, 1) == [REPLY]

    await stack.sms(OWNER, f"YES {old.ref}")
    texts = await stack.texts_to(OWNER, 3)
    assert f"Draft #{old.ref} was withdrawn: you answered them yourself; nothing was sent." in texts
    await collector.assert_none(DraftApproved, within=1.0)
    assert await stack.texts_to(LEAD, 1) == [REPLY]  # once: the draft was never sent
    assert await pool.fetchval("SELECT withdrawn_reason FROM drafts") == "human_reply"


async def test_a_burst_held_before_a_person_answers_is_not_drafted(
    stack: BurstStack, llm: FakeOpenAI, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    first = await stack.sms(LEAD, BURST[1])
    await _held(collector, [first])
    async with stack.http.post(
        f"{stack.ingest_url}/api/threads/{LEAD}/messages",
        json={"text": REPLY},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    ) as resp:
        assert resp.status == 202, await resp.text()
    await collector.wait_for(HumanReply, timeout=15)
    await collector.wait_for(TimerCancel, lambda e: e.timer_id.startswith("burst_debounce:"), timeout=15)

    stack.advance(25)  # the debounce timer would have fired now
    await collector.assert_none(DraftCreated, within=2.0)
    assert llm.requests == []
    assert await pool.fetchval("SELECT status FROM bursts") == "dropped"
    assert await stack.texts_to(LEAD, 1) == [REPLY]
