"""End to end: a person answers a lead from the business number (issue 13, human takeover).

ingest + router + drafter + sender + scheduler in-process on real NATS and Postgres;
Twilio is the fake Messages API (checked against its OpenAPI spec), the scheduler runs
on a manual clock so the 24 h quiet period passes in milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from libs.events import (
    ContactTakeover,
    DraftCreated,
    HumanReply,
    InboundRouted,
    OutboundFailed,
    OutboundSent,
)
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
from tests.harness import EventCollector, RunningService, eventually, start_service
from tests.specs import drafter_build, ingest_builder, router_build, scheduler_builder, sender_builder
from tests.test_e2e_approval import API_TOKEN, BUSINESS, LEAD, NOON_NY, OWNER, PUBLIC, Stack
from testsupport.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

NEGATIVE = "This is terrible, nobody showed up and I am furious"
SORRY = "Sorry about that, I can come at 3pm"


class TakeoverStack(Stack):
    def __init__(self, ingest_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession, clock: ManualClock):
        super().__init__(ingest_url, twilio, http)
        self.clock = clock

    async def api_send(self, number: str, text: str) -> tuple[int, dict[str, Any]]:
        async with self.http.post(
            f"{self.ingest_url}/api/threads/{number}/messages",
            json={"text": text},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        ) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake
        assert fake.violations == [], "requests that break Twilio's OpenAPI spec"


@pytest.fixture
async def stack(
    make_settings: Callable[..., Any], fake_twilio: FakeTwilio, tmp_path: Path
) -> AsyncIterator[TakeoverStack]:
    clock = ManualClock()
    (tmp_path / "workflows").mkdir()
    common: dict[str, Any] = {
        "owner_numbers": [OWNER],
        "business_number": BUSINESS,
        "public_base_url": PUBLIC,
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
    }
    listening: list[str] = []
    running: list[RunningService] = []
    scheduler_settings = make_settings(
        SchedulerSettings, **common, workflows_dir=str(tmp_path / "workflows"),
        email_templates_dir=str(tmp_path / "workflows"),
    )
    specs: list[tuple[str, Any, Any, Any]] = [
        ("scheduler", scheduler_settings, scheduler_builder(clock), SCHEDULER_MIGRATIONS),
        ("drafter", make_settings(DrafterSettings, **common), drafter_build, DRAFTER_MIGRATIONS),
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
            running.append(await start_service(settings, name=name, build=build, migrations=migrations))
        async with aiohttp.ClientSession() as http:
            yield TakeoverStack(listening[0], fake_twilio, http, clock)
    finally:
        for service in reversed(running):
            await service.stop()


def ref_in(text: str) -> str:
    match = re.match(r"#(\d+) ", text)
    assert match, text
    return match.group(1)


async def needs_review_ref(stack: TakeoverStack) -> str:
    await stack.sms(LEAD, NEGATIVE)
    (alert,) = await stack.texts_to(OWNER, 1)
    assert "Needs review (complaint)" in alert and "SEND " in alert, alert
    return ref_in(alert)


async def open_queue(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM manual_queue WHERE resolved_at IS NULL"))


async def test_owner_answers_by_sms_takes_over_and_ai_resumes_after_quiet_period(
    stack: TakeoverStack, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    ref = await needs_review_ref(stack)
    assert await open_queue(pool) == 1

    # Case and spacing do not matter; the text after the ref is sent exactly.
    await stack.sms(OWNER, f"  send   #{ref}   {SORRY}")
    assert await stack.texts_to(LEAD, 1) == [SORRY]
    assert stack.twilio.messages_to(LEAD)[0]["from"] == BUSINESS
    owner_texts = await stack.texts_to(OWNER, 2)
    assert owner_texts[1] == f'Sent to {LEAD} (#{ref}): "{SORRY}"'
    (started,) = await collector.wait_for(ContactTakeover, lambda e: e.active)
    assert started.number == LEAD
    (human,) = collector.of_type(HumanReply)
    assert (human.author, human.channel, human.body) == (OWNER, "sms", SORRY)
    assert await open_queue(pool) == 0  # the human reply resolved the manual-queue item
    audit = await pool.fetchrow("SELECT details FROM audit_log WHERE action = 'human_reply'")
    assert audit is not None and audit["details"]["channel"] == "sms"

    # In takeover: the lead's next message is forwarded to the owner, never drafted.
    await stack.sms(LEAD, "Great, see you then. How much will it cost?")
    (routed,) = await collector.wait_for(InboundRouted, lambda e: e.decision == "forward")
    assert (routed.rule, routed.status) == ("human_takeover", "HUMAN_TAKEOVER")
    forwarded = (await stack.texts_to(OWNER, 3))[2]
    assert forwarded.startswith(f'#{ref} {LEAD} wrote "Great, see you then. How much will it cost?"')
    assert f"SEND {ref}" in forwarded and f"RESUME {ref}" in forwarded
    await collector.assert_none(DraftCreated)

    # 24 h without a human reply: the AI takes the thread back and drafts again.
    stack.clock.advance(hours=24, minutes=1)
    (ended,) = await collector.wait_for(ContactTakeover, lambda e: not e.active, timeout=15)
    assert ended.reason == "quiet_period"
    await stack.sms(LEAD, "How much for a leaking pipe under the kitchen sink?")
    await collector.wait_for(DraftCreated, timeout=15)


async def takeover_metrics(stack: TakeoverStack) -> dict[str, float]:
    """The takeover metrics from ingest's /metrics (the services share the process registry)."""
    async with stack.http.get(
        f"{stack.ingest_url}/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"}
    ) as resp:
        assert resp.status == 200
        families = {f.name: f for f in text_string_to_metric_families(await resp.text())}

    def value(family: str, name: str, **labels: str) -> float:
        return sum(
            s.value for s in families[family].samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )  # fmt: skip

    return {
        "started_sms": value("replyline_takeovers", "replyline_takeovers_total", event="started", reason="sms"),
        "ended_resume": value("replyline_takeovers", "replyline_takeovers_total", event="ended", reason="resume"),
        "human_sms_accepted": value(
            "replyline_human_replies", "replyline_human_replies_total", channel="sms", outcome="accepted"
        ),
        "first_reply_count": value(
            "replyline_time_to_first_human_reply_seconds", "replyline_time_to_first_human_reply_seconds_count"
        ),
    }


async def test_resume_by_sms_hands_the_thread_back_at_once(
    stack: TakeoverStack, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    before = await takeover_metrics(stack)
    ref = await needs_review_ref(stack)
    await stack.sms(OWNER, f"SEND {ref} {SORRY}")
    await collector.wait_for(ContactTakeover, lambda e: e.active)
    await stack.sms(OWNER, f"SEND {ref} One more thing: bring the invoice")
    await stack.texts_to(LEAD, 2)
    # The owner's "Sent to ..." follows the lead's text (it waits for outbound.sent):
    # wait for it too, or RESUME's answer may overtake it (the order asserted below).
    await stack.texts_to(OWNER, 3)
    await stack.sms(OWNER, f"resume {ref}")
    (ended,) = await collector.wait_for(ContactTakeover, lambda e: not e.active)
    assert ended.reason == "resume"
    # One takeover (the second reply extends it), two human replies, one time to the
    # first human reply (the needs-review item it resolved), one hand-back by RESUME.
    after = await takeover_metrics(stack)
    actions = await pool.fetch("SELECT action FROM audit_log WHERE action LIKE 'human_takeover_%' ORDER BY id")
    assert [r["action"] for r in actions] == [
        "human_takeover_started", "human_takeover_extended", "human_takeover_ended",
    ]  # fmt: skip
    assert {k: after[k] - before[k] for k in before} == {
        "started_sms": 1, "ended_resume": 1, "human_sms_accepted": 2, "first_reply_count": 1,
    }  # fmt: skip
    texts = await stack.texts_to(OWNER, 4)
    assert texts[3].startswith(f"Resumed #{ref} ({LEAD})")
    await stack.sms(LEAD, "How much for a leaking pipe under the kitchen sink?")
    await collector.wait_for(DraftCreated, timeout=15)


async def test_api_send_takes_over_and_refuses_an_opted_out_lead(
    stack: TakeoverStack, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    await needs_review_ref(stack)
    status, body = await stack.api_send(LEAD, "Hi, this is Sam from Sunny Side. 3pm works?")
    assert status == 202, body
    assert await stack.texts_to(LEAD, 1) == ["Hi, this is Sam from Sunny Side. 3pm works?"]
    (human,) = await collector.wait_for(HumanReply)
    assert (human.channel, human.author) == ("api", "api:settings")
    await collector.wait_for(ContactTakeover, lambda e: e.active)
    await collector.wait_for(OutboundSent, lambda e: e.kind == "human_reply")
    await stack.sms(LEAD, "Yes 3pm is fine, how much?")
    await collector.wait_for(InboundRouted, lambda e: e.decision == "forward")
    await collector.assert_none(DraftCreated)

    await stack.sms(LEAD, "STOP")
    await eventually(lambda: pool.fetchval("SELECT opted_out FROM thread_controls"))
    status, body = await stack.api_send(LEAD, "One more thing")
    assert status == 409 and body["reason"] == "opted_out" and "opted out" in body["error"], body
    assert len(stack.twilio.messages_to(LEAD)) == 1


async def test_sms_send_to_an_opted_out_lead_is_refused_clearly(
    stack: TakeoverStack, collector: EventCollector
) -> None:
    ref = await needs_review_ref(stack)
    await stack.sms(LEAD, "STOP")
    await collector.wait_for(InboundRouted, lambda e: e.decision == "opt_out")
    await stack.sms(OWNER, f"SEND {ref} {SORRY}")
    texts = await stack.texts_to(OWNER, 2)
    assert texts[1] == f"NOT sent: {LEAD} has opted out (STOP). Nothing can be sent to them until they text START."
    await collector.assert_none(HumanReply)
    await collector.assert_none(OutboundFailed, lambda e: e.kind == "human_reply", within=0.2)
    assert stack.twilio.messages_to(LEAD) == []


async def test_owner_console_list_help_pause_and_malformed_send(
    stack: TakeoverStack, collector: EventCollector
) -> None:
    ref = await needs_review_ref(stack)
    await stack.sms(OWNER, "?")
    listing = (await stack.texts_to(OWNER, 2))[1]
    assert listing.splitlines()[0] == "1 waiting (newest first):"
    assert listing.splitlines()[1].startswith(f"#{ref} answer {LEAD}: ")
    await stack.sms(OWNER, "HELP")
    assert "SEND <ref> <text>" in (await stack.texts_to(OWNER, 3))[2]
    await stack.sms(OWNER, "SEND I will call them")  # no ref: clarified, never guessed
    clarify = (await stack.texts_to(OWNER, 4))[3]
    assert clarify.startswith('Sorry, I did not understand "SEND I will call them"'), clarify
    await stack.sms(OWNER, f"SEND {ref}")  # no text
    assert "needs text" in (await stack.texts_to(OWNER, 5))[4]
    await stack.sms(OWNER, f"PAUSE {ref}")
    assert (await stack.texts_to(OWNER, 6))[5].startswith(f"Paused #{ref} ({LEAD})")
    await stack.sms(LEAD, "Hello? How much for a drain cleaning?")
    await collector.wait_for(InboundRouted, lambda e: e.rule == "paused")
    await stack.sms(OWNER, "SEND 999999 hello")
    assert (await stack.texts_to(OWNER, 7))[6].startswith("There is no #999999")
    assert stack.twilio.messages_to(LEAD) == []
    await collector.assert_none(HumanReply)


async def test_dashboard_compose_takes_over_and_hands_back_in_chromium(
    stack: TakeoverStack, collector: EventCollector, tmp_path: Path
) -> None:
    from tests.ops.browser import chromium_page, find_chromium
    from tests.ops.test_dashboard_browser import screenshot_dir

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed")
    await needs_review_ref(stack)
    shots = screenshot_dir(tmp_path)
    thread_url = f"{stack.ingest_url}/dashboard/threads/{LEAD.lstrip('+')}"
    async with chromium_page(chromium) as page:
        await page.goto(stack.ingest_url + "/dashboard")
        await page.fill("#token", API_TOKEN)
        async with page.expect_navigation():
            await page.click("#sign-in")
        await page.goto(thread_url)
        assert NEGATIVE in await page.inner_text("#conversation")
        await page.fill("#compose-text", SORRY)
        async with page.expect_navigation():
            await page.click("#compose button[name=send]")
        assert "on its way from the business number" in await page.inner_text(".notice")
        assert await stack.texts_to(LEAD, 1) == [SORRY]
        (human,) = await collector.wait_for(HumanReply)
        assert (human.channel, human.author) == ("dashboard", "dashboard:settings")
        await collector.wait_for(ContactTakeover, lambda e: e.active)
        await collector.wait_for(OutboundSent, lambda e: e.kind == "human_reply")

        await stack.sms(LEAD, "Thanks! What will it cost?")
        await collector.wait_for(InboundRouted, lambda e: e.decision == "forward")

        async def shows_takeover() -> bool:
            await page.goto(thread_url)
            chat = await page.inner_text("#conversation")
            return await page.locator("#takeover").count() == 1 and "What will it cost?" in chat

        await eventually(shows_takeover, timeout=10, interval=0.3)
        chat = await page.inner_text("#conversation")
        assert SORRY in chat and "dashboard:settings via dashboard" in chat
        await page.screenshot(path=shots / "takeover_thread.png", full_page=True)

        async with page.expect_navigation():
            await page.click("button[name=resume]")
        (ended,) = await collector.wait_for(ContactTakeover, lambda e: not e.active)
        assert ended.reason == "resume"


async def test_readme_takeover_walkthrough_matches_the_code(
    stack: TakeoverStack, collector: EventCollector
) -> None:
    """README's "Taking over a conversation" commands, run as written, give the texts it shows."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("### Taking over a conversation", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = re.findall(r'^replyline sms --from (\+\d+) "([^"]+)"$', block, re.M)
    shown = " ".join(line.lstrip("# ").strip() for line in block.splitlines() if line.startswith("#"))
    readme_ref = re.search(r"SEND (\d+) <your text>", shown)
    assert readme_ref and len(commands) == 4, block
    assert [n for n, _ in commands] == [LEAD, OWNER, LEAD, OWNER]

    def as_run(text: str, ref: str) -> str:
        return text.replace(readme_ref.group(1), ref)  # type: ignore[union-attr]

    (lead, first), (owner, send), (_, second), (_, resume) = commands
    await stack.sms(lead, first)
    (alert,) = await stack.texts_to(OWNER, 1)
    ref = ref_in(alert)
    reason = re.search(r"Needs review \((\w+)\)", shown)
    assert reason and alert.startswith(f"#{ref} Needs review ({reason.group(1)}): {LEAD} wrote "), alert
    assert alert.endswith(f"No reply was drafted. Answer from the business number: SEND {ref} <your text>.")

    await stack.sms(owner, as_run(send, ref))
    sent_text = as_run(send, ref).split(" ", 2)[2]
    assert await stack.texts_to(LEAD, 1) == [sent_text]
    assert (await stack.texts_to(OWNER, 2))[1] == f'Sent to {LEAD} (#{ref}): "{sent_text}"'
    assert f"'Sent to {LEAD} (#{readme_ref.group(1)}): \"...\"'" in shown

    await stack.sms(lead, second)
    forwarded = (await stack.texts_to(OWNER, 3))[2]
    readme_forward = re.search(r"\('(#\d+ \+\d+ wrote \"[^\"]*\" You are answering)", shown)
    assert readme_forward and forwarded.startswith(as_run(readme_forward.group(1), ref)), forwarded

    await stack.sms(owner, as_run(resume, ref))
    await collector.wait_for(ContactTakeover, lambda e: not e.active)
    resumed = (await stack.texts_to(OWNER, 4))[3]
    readme_resumed = re.search(r"'(Resumed #[^']+)'", shown)
    assert readme_resumed and resumed == as_run(readme_resumed.group(1), ref)
