"""The sender service end to end: real NATS, real Postgres, the real twilio client, fake Twilio."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from libs.bus import Bus
from libs.event_outbox import EventOutbox
from libs.events import (
    ContactOptin,
    ContactOptout,
    ContactUpdated,
    DraftApproved,
    HumanReply,
    OutboundFailed,
    OutboundRequested,
    OutboundSent,
    OutboundStatus,
    TimerFired,
    TimerSet,
    thread_of,
)
from libs.resources import Resources
from services.sender.console import CONSOLE_SID_PREFIX, ConsoleTransport
from services.sender.outbox import Outbox, quiet_hours_timer_id
from services.sender.settings import SenderSettings
from tests.harness import EventCollector, eventually
from tests.sender.conftest import FROM, LEAD, OWNER, PUBLIC, Clock, StartSender, approved
from testsupport.fakes.twilio_server import FakeTwilio, TwilioError, error

pytestmark = pytest.mark.timeout(90)


async def outbox(pool: asyncpg.Pool, draft: DraftApproved) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM outbound_messages WHERE draft_id = $1", draft.draft_id)
    assert row is not None
    return row


async def _outbox_drained(pool: asyncpg.Pool) -> bool:
    """Every event the sender committed is published (and its outbox row deleted)."""
    return await pool.fetchval("SELECT count(*) FROM sender_event_outbox") == 0


async def audit_actions(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT action FROM audit_log WHERE service = 'sender' ORDER BY id")
    return [r["action"] for r in rows]


async def test_approved_draft_is_sent_once(
    start_sender: StartSender,
    bus: Bus,
    collector: EventCollector,
    fake_twilio: FakeTwilio,
    pool: asyncpg.Pool,
) -> None:
    await start_sender()
    draft = approved()
    started = time.perf_counter()
    await bus.publish(draft)
    await fake_twilio.wait_for_creates(1)
    latency_ms = (time.perf_counter() - started) * 1000
    [sent] = await collector.wait_for(OutboundSent, lambda e: e.draft_id == draft.draft_id)
    print(f"\ndraft.approved -> Twilio create: {latency_ms:.1f} ms")

    [message] = fake_twilio.messages
    assert (message["to"], message["from"], message["body"]) == (LEAD, FROM, draft.body)
    assert fake_twilio.creates[0]["StatusCallback"] == [f"{PUBLIC}/twilio/status"]
    assert sent.provider_sid == message["sid"] and sent.kind == "approved_draft"
    row = await outbox(pool, draft)
    assert (row["status"], row["provider_sid"], row["attempts"]) == ("SENT", message["sid"], 1)
    await eventually(lambda: _outbox_drained(pool))
    assert await audit_actions(pool) == ["outbound.sent"]

    # The same approval again (a redelivery past NATS' dedup window): no second SMS.
    await bus.publish(draft, msg_id=f"replay-{uuid.uuid4()}")
    await collector.assert_none(
        OutboundSent, lambda e: e.draft_id == draft.draft_id and e.id != sent.id, within=1.0
    )
    assert len(fake_twilio.creates) == 1
    assert await pool.fetchval("SELECT count(*) FROM outbound_messages") == 1


async def test_status_callbacks_update_delivery(
    start_sender: StartSender,
    bus: Bus,
    collector: EventCollector,
    fake_twilio: FakeTwilio,
    pool: asyncpg.Pool,
) -> None:
    await start_sender()
    draft = approved()
    await bus.publish(draft)
    [sent] = await collector.wait_for(OutboundSent)
    sid = sent.provider_sid

    def status(value: str, code: int | None = None) -> OutboundStatus:
        return OutboundStatus(
            thread=thread_of(LEAD), provider_sid=sid, status=value, error_code=code, to_number=LEAD
        )

    for value in ("sent", "delivered", "sent"):  # the late "sent" must not hide "delivered"
        await bus.publish(status(value), msg_id=str(uuid.uuid4()))

    async def delivered() -> bool:
        row = await outbox(pool, draft)
        count = await pool.fetchval(
            "SELECT count(*) FROM delivery_events WHERE provider_sid = $1", sid
        )
        return row["provider_status"] == "delivered" and count == 2

    await eventually(delivered, timeout=10)
    assert (await outbox(pool, draft))["status"] == "SENT"

    # A carrier failure after acceptance: FAILED_SEND, outbound.failed, and the owner hears of it.
    second = approved(body="Second message")
    await bus.publish(second)
    [sent2] = await collector.wait_for(OutboundSent, lambda e: e.draft_id == second.draft_id)
    await bus.publish(
        OutboundStatus(
            thread=thread_of(LEAD),
            provider_sid=sent2.provider_sid,
            status="undelivered",
            error_code=30007,
        )
    )
    [failed] = await collector.wait_for(OutboundFailed, lambda e: e.draft_id == second.draft_id)
    assert (failed.reason, failed.error_code, failed.provider_sid) == (
        "undelivered",
        30007,
        sent2.provider_sid,
    )
    row = await outbox(pool, second)
    assert (row["status"], row["provider_status"], row["error_code"]) == (
        "FAILED_SEND",
        "undelivered",
        30007,
    )
    [alert] = await collector.wait_for(OutboundRequested, lambda e: e.kind == "owner_alert")
    assert alert.to_number == OWNER and "30007" in alert.body
    # The alert itself goes out (owner alerts skip the lead gates).
    await collector.wait_for(OutboundSent, lambda e: e.request_id == alert.request_id)
    assert [m["to"] for m in fake_twilio.messages] == [LEAD, LEAD, OWNER]


async def test_callback_before_result_is_applied_later(
    start_sender: StartSender,
    sender_settings: Callable[..., SenderSettings],
    bus: Bus,
    collector: EventCollector,
    fake_twilio: FakeTwilio,
    pool: asyncpg.Pool,
) -> None:
    """Another replica may store Twilio's callback before our create call has returned."""
    await start_sender()
    # What a second sender replica does with the outbound.status event it consumed.
    other_replica = Outbox(
        Resources(settings=sender_settings(), pool=pool, bus=bus, outbox=EventOutbox(bus, pool, "sender")),
        transport=ConsoleTransport(),
    )

    async def callback_first(resource: dict[str, object]) -> None:
        status = OutboundStatus(
            thread=thread_of(LEAD), provider_sid=str(resource["sid"]), status="sent"
        )
        assert await other_replica.record_status(status) is None

    fake_twilio.on_create = callback_first
    draft = approved()
    await bus.publish(draft)
    await collector.wait_for(OutboundSent)
    assert await pool.fetchval("SELECT count(*) FROM delivery_events") == 1
    row = await outbox(pool, draft)
    assert (row["status"], row["provider_status"], row["attempts"]) == ("SENT", "sent", 1)
    assert len(fake_twilio.creates) == 1


async def test_transient_errors_are_retried_then_sent(
    start_sender: StartSender,
    bus: Bus,
    collector: EventCollector,
    fake_twilio: FakeTwilio,
    pool: asyncpg.Pool,
) -> None:
    await start_sender()
    fake_twilio.queue_errors(error(20429), error(20500))
    draft = approved()
    await bus.publish(draft)
    [sent] = await collector.wait_for(OutboundSent, timeout=15)
    assert len(fake_twilio.creates) == 3
    assert [m["sid"] for m in fake_twilio.messages] == [sent.provider_sid]
    row = await outbox(pool, draft)
    assert (row["status"], row["attempts"]) == ("SENT", 3)


async def test_transient_errors_give_up_after_max_attempts(
    start_sender: StartSender,
    bus: Bus,
    collector: EventCollector,
    fake_twilio: FakeTwilio,
    pool: asyncpg.Pool,
) -> None:
    await start_sender(max_send_attempts=2)
    fake_twilio.fail_to(LEAD, TwilioError(503, 20503, "Service Unavailable"))
    draft = approved()
    await bus.publish(draft)
    [failed] = await collector.wait_for(OutboundFailed, timeout=15)
    assert (failed.reason, failed.error_code) == ("retries_exhausted", 20503)
    await collector.assert_none(OutboundSent, lambda e: e.to_number == LEAD, within=1.0)
    assert len([c for c in fake_twilio.creates if c["To"] == [LEAD]]) == 2
    assert (await outbox(pool, draft))["status"] == "FAILED_SEND"


@pytest.mark.parametrize("code", [21610, 21211, 21614, 21408, 30004, 30034])
async def test_permanent_errors_fail_without_retry(
    start_sender: StartSender,
    bus: Bus,
    collector: EventCollector,
    fake_twilio: FakeTwilio,
    pool: asyncpg.Pool,
    code: int,
) -> None:
    await start_sender()
    fake_twilio.fail_to(LEAD, error(code))
    draft = approved()
    await bus.publish(draft)
    [failed] = await collector.wait_for(OutboundFailed)
    assert (failed.error_code, failed.reason, failed.permanent) == (code, "provider_error", True)
    assert error(code).message in failed.error_message
    [alert] = await collector.wait_for(OutboundRequested, lambda e: e.kind == "owner_alert")
    assert alert.to_number == OWNER and str(code) in alert.body
    await collector.wait_for(OutboundSent, lambda e: e.to_number == OWNER)
    # No blind retry: one create for the lead, ever.
    await collector.assert_none(OutboundSent, lambda e: e.to_number == LEAD, within=1.5)
    assert [c["To"] for c in fake_twilio.creates] == [[LEAD], [OWNER]]
    row = await outbox(pool, draft)
    assert (row["status"], row["error_code"], row["attempts"]) == ("FAILED_SEND", code, 1)
    assert "outbound.failed" in await audit_actions(pool)
    opted_out = await pool.fetchval("SELECT opted_out FROM consent WHERE number = $1", LEAD)
    # Twilio's "unsubscribed recipient" also teaches the consent projection.
    assert opted_out is (True if code == 21610 else None)


async def test_opted_out_contact_is_refused_on_every_lead_path(
    start_sender: StartSender,
    bus: Bus,
    collector: EventCollector,
    fake_twilio: FakeTwilio,
    pool: asyncpg.Pool,
) -> None:
    await start_sender()
    await bus.publish(ContactOptout(thread=thread_of(LEAD), number=LEAD, keyword="STOP"))
    await eventually(lambda: pool.fetchval("SELECT opted_out FROM consent WHERE number = $1", LEAD))

    draft = approved()
    await bus.publish(draft)
    workflow = OutboundRequested(
        thread=thread_of(LEAD),
        request_id="wf-1",
        to_number=LEAD,
        body="Still interested?",
        kind="workflow",
    )
    await bus.publish(workflow)
    refused = await collector.wait_for(OutboundFailed, count=2)
    assert {(f.kind, f.reason) for f in refused} == {
        ("approved_draft", "opted_out"),
        ("workflow", "opted_out"),
    }
    # The owner hears about the refused approved draft only.
    [alert] = await collector.wait_for(OutboundRequested, lambda e: e.kind == "owner_alert")
    assert "opted out" in alert.body
    await collector.wait_for(OutboundSent, lambda e: e.to_number == OWNER)
    assert [m["to"] for m in fake_twilio.messages] == [OWNER]
    assert (await outbox(pool, draft))["status"] == "REFUSED"
    actions = await audit_actions(pool)
    assert actions.count("outbound.refused_opted_out") == 2 and "consent.opt_out" in actions

    # START again: the next approved draft goes out.
    await bus.publish(ContactOptin(thread=thread_of(LEAD), number=LEAD, keyword="START"))
    later = approved(body="Welcome back")
    await bus.publish(later)
    await collector.wait_for(OutboundSent, lambda e: e.draft_id == later.draft_id)
    assert fake_twilio.messages_to(LEAD)[0]["body"] == "Welcome back"


async def test_quiet_hours_defer_through_a_timer(
    start_sender: StartSender,
    bus: Bus,
    collector: EventCollector,
    fake_twilio: FakeTwilio,
    pool: asyncpg.Pool,
    clock: Clock,
) -> None:
    ny = ZoneInfo("America/New_York")
    clock.now = datetime(2030, 6, 4, 3, 0, tzinfo=ny)  # 3 a.m. for a New York lead
    await start_sender()
    draft = approved()
    await bus.publish(draft)
    # Owner prompts skip quiet hours; an "owner" kind to a lead's number does not.
    prompt = OutboundRequested(
        thread=thread_of(OWNER),
        request_id="p-1",
        to_number=OWNER,
        body="Draft #7 ...",
        kind="owner_prompt",
    )
    sneaky = OutboundRequested(
        thread=thread_of(LEAD),
        request_id="p-2",
        to_number=LEAD,
        body="not an owner",
        kind="owner_alert",
    )
    await bus.publish(prompt)
    await bus.publish(sneaky)

    timers = await collector.wait_for(TimerSet, count=2)
    morning = datetime(2030, 6, 4, 8, 0, tzinfo=ny)
    assert {t.fire_at for t in timers} == {morning}
    assert all(t.kind == "quiet_hours" for t in timers)
    row = await outbox(pool, draft)
    assert (row["status"], row["not_before"]) == ("DEFERRED", morning)
    [timer] = [t for t in timers if t.timer_id == quiet_hours_timer_id(row["id"])]
    await collector.wait_for(OutboundSent, lambda e: e.request_id == "p-1")
    assert [m["to"] for m in fake_twilio.messages] == [OWNER]

    # The scheduler fires the timer at 08:00: the draft goes out.
    clock.now = morning
    await bus.publish(
        TimerFired(
            thread=timer.thread,
            timer_id=timer.timer_id,
            kind="quiet_hours",
            fire_at=timer.fire_at,
            payload=timer.payload,
        )
    )
    [sent] = await collector.wait_for(OutboundSent, lambda e: e.draft_id == draft.draft_id)
    assert fake_twilio.messages_to(LEAD)[0]["sid"] == sent.provider_sid
    assert "outbound.deferred" in await audit_actions(pool)


async def test_console_transport_without_credentials(
    start_sender: StartSender,
    bus: Bus,
    collector: EventCollector,
    fake_twilio: FakeTwilio,
    pool: asyncpg.Pool,
) -> None:
    await start_sender(twilio_account_sid="", twilio_auth_token="")
    draft = approved()
    await bus.publish(draft)
    [sent] = await collector.wait_for(OutboundSent)
    assert sent.provider_sid.startswith(CONSOLE_SID_PREFIX)
    assert (await outbox(pool, draft))["status"] == "SENT"
    assert fake_twilio.requests == []


async def test_unknown_outcome_is_reconciled_not_resent(
    start_sender: StartSender,
    bus: Bus,
    collector: EventCollector,
    fake_twilio: FakeTwilio,
    pool: asyncpg.Pool,
) -> None:
    """Twilio accepts the message but the answer never arrives (timeout): no second SMS."""
    await start_sender(twilio_timeout_s=0.5)
    import asyncio

    stalled = asyncio.Event()

    async def stall(_resource: dict[str, object]) -> None:
        if not stalled.is_set():
            stalled.set()
            await asyncio.sleep(3)  # the provider hangs past twilio_timeout_s: no answer comes

    fake_twilio.on_create = stall
    draft = approved()
    await bus.publish(draft)
    [sent] = await collector.wait_for(OutboundSent, timeout=20)
    assert len(fake_twilio.creates) == 1
    assert sent.provider_sid == fake_twilio.messages[0]["sid"]
    assert "outbound.reconciled" in await audit_actions(pool)


async def test_sweep_redrives_an_abandoned_row(
    start_sender: StartSender,
    collector: EventCollector,
    fake_twilio: FakeTwilio,
    pool: asyncpg.Pool,
) -> None:
    """A row left SENDING by a dead worker whose call never reached Twilio is sent once."""
    await start_sender()
    outbox_id = uuid.uuid4()
    await pool.execute(
        """
        INSERT INTO outbound_messages (id, dedup_key, kind, to_number, body, lead_facing, status,
                                       attempts, sending_started_at, updated_at, request_id)
        VALUES ($1, 'outbound.requested:lost-1', 'reply', $2, 'lost one', true, 'SENDING', 1,
                now() - interval '1 minute', now() - interval '1 minute', 'lost-1')
        """,
        outbox_id,
        LEAD,
    )
    [sent] = await collector.wait_for(OutboundSent, lambda e: e.request_id == "lost-1", timeout=15)
    assert [m["body"] for m in fake_twilio.messages] == ["lost one"]
    assert sent.outbox_id == str(outbox_id)
    assert "outbound.reconciled_not_found" in await audit_actions(pool)


async def test_known_contact_time_zone_beats_the_area_code(
    start_sender: StartSender,
    bus: Bus,
    collector: EventCollector,
    fake_twilio: FakeTwilio,
    pool: asyncpg.Pool,
    clock: Clock,
) -> None:
    # 03:00 in New York (the number's area code) but 09:00 in Madrid, where the lead lives.
    clock.now = datetime(2030, 6, 4, 7, 0, tzinfo=ZoneInfo("UTC"))
    await start_sender()
    await bus.publish(
        ContactUpdated(thread=thread_of(LEAD), number=LEAD, field="timezone", value="Europe/Madrid")
    )
    await eventually(lambda: pool.fetchval("SELECT time_zone FROM contact_time_zones"))
    draft = approved()
    await bus.publish(draft)
    await collector.wait_for(OutboundSent, lambda e: e.draft_id == draft.draft_id)
    assert collector.of_type(TimerSet) == []


@pytest.mark.parametrize("human_quiet", [False, True], ids=["default", "human_reply_quiet_hours"])
async def test_human_reply_at_night_is_sent_at_once_unless_configured(
    start_sender: StartSender,
    bus: Bus,
    collector: EventCollector,
    fake_twilio: FakeTwilio,
    pool: asyncpg.Pool,
    clock: Clock,
    human_quiet: bool,
) -> None:
    # A person answering a lead who just wrote is a reply, not a campaign message:
    # by default it goes at 03:00 the lead's time; a workflow message at the same
    # moment waits for the window either way (docs/sender.md, "Quiet hours").
    ny = ZoneInfo("America/New_York")
    clock.now = datetime(2030, 6, 4, 3, 0, tzinfo=ny)
    morning = datetime(2030, 6, 4, 8, 0, tzinfo=ny)
    await start_sender(human_reply_quiet_hours=human_quiet)
    human = HumanReply(
        thread=thread_of(LEAD),
        request_id="human-1",
        to_number=LEAD,
        body="Sorry about that, I can come at 3pm",
        author=OWNER,
        channel="sms",
        ref="1006",
    )
    workflow = OutboundRequested(
        thread=thread_of(LEAD),
        request_id="wf-night",
        to_number=LEAD,
        body="Still interested?",
        kind="workflow",
    )
    await bus.publish(human)
    await bus.publish(workflow)

    async def status(request_id: str) -> str:
        value = await pool.fetchval(
            "SELECT status FROM outbound_messages WHERE request_id = $1", request_id
        )
        return str(value)

    await eventually(lambda: _is(status("wf-night"), "DEFERRED"))
    wf_id = await pool.fetchval("SELECT id FROM outbound_messages WHERE request_id = 'wf-night'")
    [wf_timer] = await collector.wait_for(TimerSet, lambda t: t.timer_id == quiet_hours_timer_id(wf_id))
    assert wf_timer.fire_at == morning
    if human_quiet:
        await eventually(lambda: _is(status("human-1"), "DEFERRED"))
        timers = await collector.wait_for(TimerSet, count=2)
        assert {t.fire_at for t in timers} == {morning}
        await collector.assert_none(OutboundSent, within=1.0)
        assert fake_twilio.messages == []
    else:
        [sent] = await collector.wait_for(OutboundSent, lambda e: e.request_id == "human-1")
        assert sent.kind == "human_reply"
        [message] = fake_twilio.messages
        assert (message["to"], message["from"], message["body"]) == (LEAD, FROM, human.body)
        assert await status("human-1") == "SENT"
        assert collector.of_type(TimerSet) == [wf_timer]


async def _is(value: Awaitable[str], expected: str) -> bool:
    return await value == expected
