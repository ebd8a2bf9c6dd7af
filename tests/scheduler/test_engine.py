"""The workflow engine against real NATS, Postgres and SMTP, with a manual clock."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from libs.bus import Bus
from libs.events import (
    ContactOptout,
    ContactPaused,
    ContactTagged,
    ContactUpdated,
    DraftApproved,
    DraftRequested,
    Event,
    InboundRouted,
    LeadCreated,
    OutboundRequested,
    OutboundSent,
    TimerFired,
)
from services.scheduler.clock import ManualClock
from services.scheduler.handlers import no_response_timer_id
from tests.harness import EventCollector, eventually
from tests.scheduler.conftest import Inbox, Schedulers

PHONE = "+15551234567"
THREAD = "15551234567"


def lead(
    lead_id: str = "lead-1", *, phone: str = PHONE, source: str = "facebook_ad", **fields: Any
) -> LeadCreated:
    return LeadCreated(
        thread=phone.lstrip("+"),
        lead_id=lead_id,
        phone=phone,
        first_name="Ana",
        last_name="Lopez",
        email="ana@example.com",
        source=source,
        fields=fields,
    )


def reply(body: str, sid: str = "SM1", phone: str = PHONE) -> InboundRouted:
    return InboundRouted(
        thread=phone.lstrip("+"),
        message_sid=sid,
        from_number=phone,
        body=body,
        decision="draft",
        rule="9",
        status="DRAFT_PENDING_APPROVAL",
    )


def sms_to(phone: str = PHONE) -> Callable[[OutboundRequested], bool]:
    return lambda e: e.to_number == phone and e.kind == "workflow"


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    return await eventually(check, timeout=timeout)


async def enrollment(
    pool: asyncpg.Pool, workflow: str = "new_lead_welcome", thread: str = THREAD
) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT * FROM workflow_enrollments WHERE workflow_key = $1 AND thread = $2 "
        "ORDER BY created_at DESC LIMIT 1",
        workflow,
        thread,
    )


async def status_is(
    pool: asyncpg.Pool, status: str, workflow: str = "new_lead_welcome", thread: str = THREAD
) -> bool:
    row = await enrollment(pool, workflow, thread)
    return row is not None and row["status"] == status


async def waiting_at(pool: asyncpg.Pool, step: str, workflow: str = "new_lead_welcome") -> bool:
    """The enrollment sits on ``step``'s timer (so advancing the clock now passes it)."""
    row = await enrollment(pool, workflow)
    return row is not None and row["status"] == "waiting" and row["current_step"] == step


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


async def handled(bus: Bus, pool: asyncpg.Pool, thread: str = THREAD, phone: str = PHONE) -> None:
    """Everything published for ``thread`` so far has been handled.

    The scheduler handles one thread's events in order, so once a marker field published
    now is stored, every earlier event of the thread is done (no sleep to guess it).
    """
    marker = uuid.uuid4().hex
    await bus.publish(ContactUpdated(thread=thread, number=phone, field="test_marker", value=marker))
    await until(
        lambda: pool.fetchval(
            "SELECT fields->>'test_marker' = $2 FROM contacts WHERE thread = $1", thread, marker
        )
    )


async def assert_no_new(collector: EventCollector, cls: type[Event], within: float = 0.3) -> None:
    """No ``cls`` event arrives beyond those already collected."""
    known = {e.id for e in collector.of_type(cls)}
    await collector.assert_none(cls, lambda e: e.id not in known, within=within)


async def test_welcome_sequence_without_reply_reminds_then_tags_cold(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    clock: ManualClock,
    pool: asyncpg.Pool,
    smtp_inbox: tuple[Inbox, int],
) -> None:
    await schedulers.start()
    await bus.publish(lead())
    [welcome] = await collector.wait_for(OutboundRequested, sms_to(), timeout=10)
    assert welcome.body == ("Hi Ana, thanks for reaching out to us! When is a good time to talk?")
    await until(lambda: status_is(pool, "waiting"))
    clock.advance(hours=23)
    await collector.assert_none(OutboundRequested, lambda e: "checking in" in e.body, within=0.4)
    clock.advance(hours=1, seconds=1)
    [reminder] = await collector.wait_for(OutboundRequested, lambda e: "checking in" in e.body)
    assert reminder.body == "Just checking in, Ana: still interested?"
    assert reminder.workflow_enrollment_id is not None
    await until(lambda: waiting_at(pool, "wait_two_days"))
    clock.advance(days=2, seconds=1)
    [tagged] = await collector.wait_for(ContactTagged, lambda e: e.tag_name == "cold_lead")
    assert tagged.added and tagged.thread == THREAD
    await until(lambda: status_is(pool, "completed"))
    tags = await pool.fetchval("SELECT tags FROM contacts WHERE thread = $1", THREAD)
    assert "cold_lead" in tags
    steps = await pool.fetch("SELECT step_id, output, completed_at FROM workflow_executions ORDER BY seq")
    assert [r["step_id"] for r in steps] == [
        "welcome",
        "wait_a_day",
        "replied",
        "reminder",
        "wait_two_days",
        "tag_cold",
    ]
    assert all(r["completed_at"] is not None for r in steps)
    assert steps[2]["output"] == {"result": False, "branch": "false"}
    assert smtp_inbox[0].messages == []


async def test_welcome_sequence_with_reply_sends_the_email(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    clock: ManualClock,
    pool: asyncpg.Pool,
    smtp_inbox: tuple[Inbox, int],
) -> None:
    await schedulers.start()
    await bus.publish(lead())
    await collector.wait_for(OutboundRequested, sms_to())
    await until(lambda: status_is(pool, "waiting"))
    await bus.publish(reply("Tomorrow at 10 works"))
    await until(
        lambda: pool.fetchval("SELECT last_sms_reply IS NOT NULL FROM contacts WHERE thread = $1", THREAD)
    )
    clock.advance(days=1, seconds=1)
    await until(lambda: status_is(pool, "completed"))
    inbox = smtp_inbox[0]
    [mail] = inbox.messages
    assert mail["To"] == "ana@example.com"
    assert mail["Subject"] == "Thanks for your reply, Ana"
    assert "Hi Ana," in mail.get_payload()
    await collector.assert_none(OutboundRequested, lambda e: "checking in" in e.body, within=0.3)
    branch = await pool.fetchval("SELECT output FROM workflow_executions WHERE step_id = 'replied'")
    assert branch == {"result": True, "branch": "true"}


async def test_trigger_conditions_filter_leads(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
) -> None:
    await schedulers.start()
    await bus.publish(lead("google-lead", source="google", phone="+15550009999"))
    await bus.publish(lead("fb-lead"))
    await collector.wait_for(OutboundRequested, sms_to())
    await collector.assert_none(OutboundRequested, sms_to("+15550009999"), within=0.3)
    assert await enrollment(pool, thread="15550009999") is None


async def test_no_duplicate_enrollment_of_one_contact(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
) -> None:
    await schedulers.start()
    await bus.publish(lead("lead-a"))
    await collector.wait_for(OutboundRequested, sms_to())
    await bus.publish(lead("lead-b"))  # same person submits the form again
    await bus.publish(lead("lead-a"))  # and the first webhook is redelivered
    # Events of one thread are handled in order: once this tag is in, both leads were handled.
    await bus.publish(ContactTagged(thread=THREAD, number=PHONE, tag_name="marker"))
    await until(lambda: pool.fetchval("SELECT 'marker' = ANY(tags) FROM contacts"))
    assert len(collector.of_type(OutboundRequested)) == 1
    assert await pool.fetchval("SELECT count(*) FROM workflow_enrollments") == 1


async def test_opt_out_ends_enrollments_and_cancels_their_timers(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    clock: ManualClock,
    pool: asyncpg.Pool,
) -> None:
    _, exposed = await schedulers.start()
    await bus.publish(lead())
    await collector.wait_for(OutboundRequested, sms_to())
    await until(lambda: status_is(pool, "waiting"))
    assert exposed["timers"].pending == 1
    await bus.publish(ContactOptout(thread=THREAD, number=PHONE, keyword="STOP"))
    await until(lambda: status_is(pool, "ended"))
    row = await enrollment(pool)
    assert row is not None and row["ended_reason"] == "opt_out"
    await eventually(lambda: exposed["timers"].pending == 0)
    clock.advance(days=4)
    await collector.assert_none(TimerFired, within=0.5)
    assert len(collector.of_type(OutboundRequested)) == 1
    outcome = await pool.fetchrow("SELECT outcome, reason FROM conversation_outcomes")
    assert (outcome["outcome"], outcome["reason"]) == ("discarded", "opt_out")
    # An opted-out contact is not enrolled again.
    await bus.publish(lead("lead-again"))
    await handled(bus, pool)
    assert await pool.fetchval("SELECT count(*) FROM workflow_enrollments") == 1


CAMPAIGN = """
name: Campaign
trigger: {type: contact_created}
on_reply: %s
steps:
  - id: first
    type: send_sms
    config: {body: "First {{first_name}}"}
  - id: pause
    type: delay
    config: {duration: 2, unit: hours}
  - id: second
    type: send_sms
    config: {body: "Second {{first_name}}"}
"""


async def test_inbound_reply_pauses_campaign_sms_until_resumed(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    clock: ManualClock,
    pool: asyncpg.Pool,
    workflow_dir: Path,
) -> None:
    write(workflow_dir, "campaign.yaml", CAMPAIGN % "pause")
    await schedulers.start()
    await bus.publish(lead(source="web"))
    await collector.wait_for(OutboundRequested, lambda e: e.body == "First Ana")
    await until(lambda: status_is(pool, "waiting", "campaign"))
    await bus.publish(reply("Who is this?"))
    await until(lambda: pool.fetchval("SELECT replied FROM workflow_enrollments"))
    clock.advance(hours=2, seconds=1)
    await until(lambda: status_is(pool, "paused", "campaign"))
    row = await enrollment(pool, "campaign")
    assert row is not None and row["pause_reason"] == "lead_replied"
    await collector.assert_none(OutboundRequested, lambda e: e.body == "Second Ana", within=0.3)
    # The owner hands the thread back to automation.
    await bus.publish(ContactPaused(thread=THREAD, number=PHONE, paused=False, actor="owner"))
    await collector.wait_for(OutboundRequested, lambda e: e.body == "Second Ana")
    await until(lambda: status_is(pool, "completed", "campaign"))


async def test_workflow_may_continue_despite_a_reply(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    clock: ManualClock,
    pool: asyncpg.Pool,
    workflow_dir: Path,
) -> None:
    write(workflow_dir, "campaign.yaml", CAMPAIGN % "continue")
    await schedulers.start()
    await bus.publish(lead(source="web"))
    await collector.wait_for(OutboundRequested, lambda e: e.body == "First Ana")
    await until(lambda: status_is(pool, "waiting", "campaign"))
    await bus.publish(reply("ok"))
    await until(lambda: pool.fetchval("SELECT last_sms_reply = 'ok' FROM contacts"))
    clock.advance(hours=2, seconds=1)
    await collector.wait_for(OutboundRequested, lambda e: e.body == "Second Ana")


WAIT_FOR_REPLY = """
name: Qualify
trigger: {type: contact_created}
steps:
  - id: ask
    type: send_sms
    config: {body: "Budget?"}
  - id: wait
    type: wait_for_reply
    config: {timeout: 1, unit: hours}
    branches: {replied: thanks, timeout: nudge}
  - id: thanks
    type: send_sms
    config: {body: "Thanks!"}
    next: end
  - id: nudge
    type: send_sms
    config: {body: "Still there?"}
"""


async def test_wait_for_reply_takes_the_replied_branch(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    clock: ManualClock,
    pool: asyncpg.Pool,
    workflow_dir: Path,
) -> None:
    (workflow_dir / "new_lead_welcome.yaml").unlink()
    write(workflow_dir, "qualify.yaml", WAIT_FOR_REPLY)
    _, exposed = await schedulers.start()
    await bus.publish(lead())
    await collector.wait_for(OutboundRequested, lambda e: e.body == "Budget?")
    await until(lambda: status_is(pool, "waiting", "qualify"))
    await bus.publish(reply("about 5k"))
    await collector.wait_for(OutboundRequested, lambda e: e.body == "Thanks!")
    await until(lambda: status_is(pool, "completed", "qualify"))
    assert exposed["timers"].pending == 0  # the timeout timer was cancelled
    clock.advance(hours=2)
    await collector.assert_none(OutboundRequested, lambda e: e.body == "Still there?", within=0.4)


async def test_wait_for_reply_times_out(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    clock: ManualClock,
    pool: asyncpg.Pool,
    workflow_dir: Path,
) -> None:
    (workflow_dir / "new_lead_welcome.yaml").unlink()
    write(workflow_dir, "qualify.yaml", WAIT_FOR_REPLY)
    await schedulers.start()
    await bus.publish(lead())
    await collector.wait_for(OutboundRequested, lambda e: e.body == "Budget?")
    await until(lambda: status_is(pool, "waiting", "qualify"))
    clock.advance(hours=1, seconds=1)
    await collector.wait_for(OutboundRequested, lambda e: e.body == "Still there?")
    [fired] = await collector.wait_for(TimerFired)
    assert fired.kind == "reply_timeout"
    output = await pool.fetchval("SELECT output FROM workflow_executions WHERE step_id = 'wait'")
    assert output["branch"] == "timeout"


async def test_scheduler_restart_mid_delay_loses_nothing(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    clock: ManualClock,
    pool: asyncpg.Pool,
) -> None:
    first, _ = await schedulers.start()
    await bus.publish(lead())
    await collector.wait_for(OutboundRequested, sms_to())
    await until(lambda: status_is(pool, "waiting"))
    await schedulers.stop(first)
    clock.advance(hours=12)
    await schedulers.start()
    clock.advance(hours=12, seconds=1)
    await collector.wait_for(OutboundRequested, lambda e: "checking in" in e.body)
    await assert_no_new(collector, OutboundRequested)
    assert [e.body[:4] for e in collector.of_type(OutboundRequested)] == ["Hi A", "Just"]


async def test_broken_definition_rejected_at_load_with_file_line_reason(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
    workflow_dir: Path,
) -> None:
    write(workflow_dir, "broken.yaml", CAMPAIGN.replace("type: delay", "type: dealy") % "pause")
    await schedulers.start()
    [row] = await pool.fetch("SELECT details FROM audit_log WHERE action = 'workflow_rejected'")
    assert row["details"]["file"].endswith("broken.yaml")
    assert row["details"]["line"] == 10
    assert "unknown step type 'dealy'" in row["details"]["reason"]
    # The valid workflow next to it still runs.
    await bus.publish(lead())
    await collector.wait_for(OutboundRequested, sms_to())
    assert await pool.fetchval("SELECT count(*) FROM workflow_definitions") == 1


async def test_tag_field_and_http_steps(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
    workflow_dir: Path,
    unused_tcp_port: int,
) -> None:
    calls: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        calls.append({"body": await request.json(), "key": request.headers["Idempotency-Key"]})
        # The first attempt fails: the step retries.
        return web.Response(status=503 if len(calls) == 1 else 200, text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        (workflow_dir / "new_lead_welcome.yaml").unlink()
        write(
            workflow_dir,
            "vip.yaml",
            f"""
name: VIP
trigger:
  type: tag_added
  conditions: [{{field: tag, operator: equals, value: vip}}]
steps:
  - id: mark
    type: update_field
    config: {{field: tier, value: "gold-{{{{first_name}}}}"}}
  - id: notify
    type: http
    config:
      url: http://127.0.0.1:{unused_tcp_port}/hook
      body: {{phone: "{{{{phone}}}}", tier: "{{{{tier}}}}"}}
      timeout: 2
      retries: 2
  - id: unvip
    type: remove_tag
    config: {{tag: new}}
""",
        )
        # The fake webhook listens on loopback, which http steps refuse unless allowed.
        await schedulers.start(http_step_allow=("127.0.0.1",))
        await bus.publish(lead(source="web"))
        await until(lambda: pool.fetchval("SELECT count(*) FROM contacts"))
        await bus.publish(ContactTagged(thread=THREAD, number=PHONE, tag_name="new"))
        await bus.publish(ContactTagged(thread=THREAD, number=PHONE, tag_name="vip"))
        [updated] = await collector.wait_for(ContactUpdated)
        assert (updated.field, updated.value) == ("tier", "gold-Ana")
        await until(lambda: status_is(pool, "completed", "vip"))
        assert [c["body"] for c in calls] == [{"phone": PHONE, "tier": "gold-Ana"}] * 2
        assert calls[0]["key"] == calls[1]["key"]
        output = await pool.fetchval("SELECT output FROM workflow_executions WHERE step_id = 'notify'")
        assert output["status"] == 200 and output["attempts"] == 2
        contact = await pool.fetchrow("SELECT fields, tags FROM contacts")
        assert contact["fields"]["tier"] == "gold-Ana"
        assert "new" not in contact["tags"] and "vip" in contact["tags"]
    finally:
        await runner.cleanup()


async def test_sms_received_and_field_updated_triggers(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
    workflow_dir: Path,
) -> None:
    (workflow_dir / "new_lead_welcome.yaml").unlink()
    write(
        workflow_dir,
        "pricing.yaml",
        """
name: Pricing question
trigger:
  type: sms_received
  conditions: [{field: body, operator: contains, value: price}]
steps:
  - id: answer
    type: send_sms
    config: {body: "Our prices start at $99."}
""",
    )
    write(
        workflow_dir,
        "budget.yaml",
        """
name: Big budget
trigger:
  type: field_updated
  conditions:
    - {field: field, operator: equals, value: budget}
    - {field: budget, operator: greater_than, value: 1000}
steps:
  - id: flag
    type: add_tag
    config: {tag: big_budget}
""",
    )
    await schedulers.start()
    await bus.publish(reply("hello", sid="SM1"))
    await bus.publish(reply("what's the PRICE?", sid="SM2"))
    await collector.wait_for(OutboundRequested, lambda e: e.body.startswith("Our prices"))
    await bus.publish(ContactUpdated(thread=THREAD, number=PHONE, field="budget", value=500))
    await bus.publish(ContactUpdated(thread=THREAD, number=PHONE, field="budget", value="2500"))
    await collector.wait_for(ContactTagged, lambda e: e.tag_name == "big_budget")
    await assert_no_new(collector, OutboundRequested)
    assert len(collector.of_type(OutboundRequested)) == 1
    assert (
        await pool.fetchval("SELECT count(*) FROM workflow_enrollments WHERE workflow_key = 'big_budget'")
        == 1
    )


async def test_outcomes_by_rule(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    clock: ManualClock,
    pool: asyncpg.Pool,
    workflow_dir: Path,
) -> None:
    (workflow_dir / "new_lead_welcome.yaml").unlink()
    write(
        workflow_dir,
        "book.yaml",
        """
name: Book
trigger: {type: contact_created}
steps:
  - id: done
    type: end
    config: {outcome: success}
""",
    )
    _, exposed = await schedulers.start(no_response_days=3)
    timers = exposed["timers"]
    await bus.publish(lead())
    await until(lambda: pool.fetchval("SELECT count(*) FROM conversation_outcomes"))
    # A lead-facing send starts the no-response clock; silence for 3 days settles it.
    other = "+15550003333"
    await bus.publish(
        OutboundSent(thread=other[1:], outbox_id="o1", to_number=other, provider_sid="SMx", kind="reply")
    )
    # Advance only once the send has armed the no-response timer (its row alone is not
    # enough: the contact is stored before the timer is set).
    await until(lambda: timers.get(no_response_timer_id(other[1:])))
    clock.advance(days=3, seconds=1)
    await until(
        lambda: pool.fetchval("SELECT count(*) FROM conversation_outcomes WHERE thread = $1", other[1:])
    )
    await bus.publish(ContactTagged(thread=THREAD, number=PHONE, tag_name="disqualified"))
    await bus.publish(ContactPaused(thread=THREAD, number=PHONE, paused=True, actor="owner"))
    await until(lambda: pool.fetchval("SELECT count(*) = 4 FROM conversation_outcomes"))
    rows = await pool.fetch(
        "SELECT thread, outcome, reason, decided_by FROM conversation_outcomes ORDER BY id"
    )
    assert [(r["outcome"], r["reason"]) for r in rows] == [
        ("success", "goal_reached"),
        ("no_response", "no_reply"),
        ("unqualified", "tag:disqualified"),
        ("escalated", "escalation"),
    ]
    assert {r["decided_by"] for r in rows} == {"rule"}
    audited = await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'conversation_outcome'")
    assert audited == 4


async def test_approval_required_asks_the_drafter_and_waits_for_its_decision(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
    workflow_dir: Path,
) -> None:
    """The scheduler alone: draft.requested out, the drafter's draft.approved in
    (tests/scheduler/test_workflow_approval.py runs the whole loop with the drafter)."""
    (workflow_dir / "new_lead_welcome.yaml").unlink()
    write(
        workflow_dir,
        "careful.yaml",
        """
name: Careful
trigger: {type: contact_created}
steps:
  - id: offer
    type: send_sms
    config: {body: "20% off for you, {{first_name}}", approval: required}
  - id: mark
    type: add_tag
    config: {tag: offer_sent}
""",
    )
    await schedulers.start()
    await bus.publish(lead())
    [requested] = await collector.wait_for(DraftRequested)
    row = await until(lambda: enrollment(pool, "careful"))
    assert requested.request_id == f"wf:{row['id']}:1"
    assert (requested.workflow_enrollment_id, requested.step_id) == (str(row["id"]), "offer")
    assert (requested.to_number, requested.body, requested.source) == (
        PHONE,
        "20% off for you, Ana",
        "workflow",
    )
    assert requested.thread == THREAD
    await until(lambda: status_is(pool, "waiting", "careful"))
    row = await enrollment(pool, "careful")
    assert row is not None and (row["waiting_for"], row["current_step"]) == ("approval", "offer")

    # Pausing and resuming the thread is not an approval: nothing goes out, it keeps waiting.
    await bus.publish(ContactPaused(thread=THREAD, number=PHONE, paused=True, actor="owner"))
    await until(lambda: status_is(pool, "paused", "careful"))
    await bus.publish(ContactPaused(thread=THREAD, number=PHONE, paused=False, actor="owner"))
    await until(lambda: status_is(pool, "waiting", "careful"))
    await collector.assert_none(OutboundRequested, within=0.3)
    await collector.assert_none(ContactTagged, within=0.1)
    row = await enrollment(pool, "careful")
    assert row is not None and row["waiting_for"] == "approval"

    # A decision on another request of this enrollment (an older step) is ignored.
    await bus.publish(
        DraftApproved(
            thread=THREAD, draft_id="d0", version=1, to_number=PHONE, body="old", reviewer="+1",
            request_id=f"wf:{row['id']}:7", workflow_enrollment_id=str(row["id"]),
        )
    )
    # What the drafter publishes when the owner says YES (after an EDIT: version 2).
    await bus.publish(
        DraftApproved(
            thread=THREAD, draft_id="d1", version=2, to_number=PHONE, body="15% off, Ana",
            reviewer="+15550000001", request_id=requested.request_id,
            workflow_enrollment_id=requested.workflow_enrollment_id,
        )
    )
    [tagged] = await collector.wait_for(ContactTagged, lambda e: e.tag_name == "offer_sent")
    assert tagged.added
    await until(lambda: status_is(pool, "completed", "careful"))
    steps = await pool.fetch(
        "SELECT step_id, input, output, completed_at FROM workflow_executions ORDER BY seq"
    )
    assert [r["step_id"] for r in steps] == ["offer", "mark"]
    assert steps[0]["input"] == {"body": "20% off for you, Ana", "request_id": requested.request_id}
    assert steps[0]["output"] == {
        "draft_id": "d1", "version": 2, "approved": True, "reviewer": "+15550000001",
        "body": "15% off, Ana",
    }
    assert steps[0]["completed_at"] is not None
    # The scheduler never texts the lead itself for an approval-required step: the sender
    # delivers draft.approved.
    await collector.assert_none(OutboundRequested, within=0.2)


async def test_enrollment_held_by_the_old_approval_pause_asks_the_drafter_on_resume(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
    workflow_dir: Path,
) -> None:
    """Before draft.requested, approval paused the enrollment without executing the step;
    resuming such an enrollment now runs the step, which asks the drafter."""
    (workflow_dir / "new_lead_welcome.yaml").unlink()
    write(
        workflow_dir,
        "careful.yaml",
        """
name: Careful
trigger: {type: contact_created}
steps:
  - id: offer
    type: send_sms
    config: {body: "20% off for you, {{first_name}}", approval: required}
""",
    )
    await schedulers.start()
    await bus.publish(lead())
    await collector.wait_for(DraftRequested)
    await until(lambda: status_is(pool, "waiting", "careful"))
    row = await enrollment(pool, "careful")
    assert row is not None
    # The row as the older release left it (paused, step not executed, 3 steps run before).
    await pool.execute("DELETE FROM workflow_executions")
    await pool.execute(
        "UPDATE workflow_enrollments SET status = 'paused', pause_reason = 'approval_required', "
        "waiting_for = 'approval', step_seq = 3 WHERE id = $1",
        row["id"],
    )
    await bus.publish(ContactPaused(thread=THREAD, number=PHONE, paused=False, actor="owner"))
    [again] = await collector.wait_for(DraftRequested, lambda e: e.request_id.endswith(":4"))
    assert (again.request_id, again.body) == (f"wf:{row['id']}:4", "20% off for you, Ana")
    await until(lambda: status_is(pool, "waiting", "careful"))
    await collector.assert_none(OutboundRequested, within=0.3)


async def test_reenrollment_only_when_allowed_and_never_twice_per_event(
    schedulers: Schedulers,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
    workflow_dir: Path,
) -> None:
    (workflow_dir / "new_lead_welcome.yaml").unlink()
    write(
        workflow_dir,
        "hello.yaml",
        """
name: Hello again
trigger: {type: contact_created}
allow_reenroll: true
steps:
  - id: hi
    type: send_sms
    config: {body: "Hello {{first_name}}"}
""",
    )
    await schedulers.start()
    await bus.publish(lead("first"))
    await until(lambda: status_is(pool, "completed", "hello_again"))
    # The same lead event again (as a redelivery would bring it): no second enrollment.
    await bus.publish(lead("first"), msg_id="redelivered-copy")
    await bus.publish(lead("second"))
    await collector.wait_for(OutboundRequested, sms_to(), count=2)
    await bus.publish(ContactTagged(thread=THREAD, number=PHONE, tag_name="marker"))
    await until(lambda: pool.fetchval("SELECT 'marker' = ANY(tags) FROM contacts"))
    assert len(collector.of_type(OutboundRequested)) == 2
    events = await pool.fetch("SELECT trigger_event FROM workflow_enrollments ORDER BY created_at")
    assert [r["trigger_event"] for r in events] == ["first", "second"]
