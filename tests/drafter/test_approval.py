"""The owner's decisions: YES / NO / EDIT, bare and ambiguous replies, refusals, expiry."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from libs.bus import Bus
from libs.events import (
    ContactPaused,
    DraftApproved,
    DraftCreated,
    DraftRejected,
    OutboundRequested,
    TimerCancel,
    TimerFired,
    TimerSet,
    decode,
    thread_of,
    utcnow,
)
from tests.drafter.conftest import (
    LEAD,
    LEAD_2,
    OWNER,
    StartDrafter,
    committed,
    moved,
    owner_says,
    routed,
    rows,
    rpc,
    sample,
    settled,
)
from tests.harness import EventCollector, eventually

TEMPLATE_EN = (
    "Thanks for asking! Our prices: drain cleaning: from $129; water heater repair: $95 "
    "diagnostic, credited to the repair; leak detection: from $150. A technician confirms the "
    "final price on site. - Sunny Side Plumbing"
)


async def _draft(
    bus: Bus, collector: EventCollector, pool: asyncpg.Pool, sid: str, lead: str = LEAD
) -> DraftCreated:
    await bus.publish(routed(sid, lead=lead))
    (created,) = await collector.wait_for(DraftCreated, lambda e: e.in_reply_to == sid)
    await committed(pool, created.draft_id)
    return created


DECISIONS = "replyline_draft_decisions_total"


def _decisions(*keys: tuple[str, str, str]) -> dict[tuple[str, str, str], float]:
    return {k: sample(DECISIONS, action=k[0], source=k[1], outcome=k[2]) for k in keys}


async def _decisions_moved(
    before: dict[tuple[str, str, str], float], by: dict[tuple[str, str, str], int]
) -> None:
    for key, value in before.items():
        await moved(DECISIONS, value, by.get(key, 0), action=key[0], source=key[1], outcome=key[2])


def _to_owner(kind: str = "owner_prompt") -> Callable[[OutboundRequested], bool]:
    return lambda e: e.to_number == OWNER and e.kind == kind


@pytest.fixture
async def drafter(start_drafter: StartDrafter) -> None:
    await start_drafter()  # templates: no LLM needed for the approval loop


async def test_yes_with_ref_approves_the_draft(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    created = await _draft(bus, collector, pool, "SM200")
    assert created.body == TEMPLATE_EN
    await bus.publish(owner_says("approve", created.ref, notes="looks good"))

    (approved,) = await collector.wait_for(DraftApproved)
    assert (approved.draft_id, approved.version) == (created.draft_id, 1)
    assert (approved.to_number, approved.body, approved.reviewer) == (LEAD, TEMPLATE_EN, OWNER)
    assert approved.thread == thread_of(LEAD) and approved.in_reply_to == "SM200"
    (cancel,) = await collector.wait_for(TimerCancel)
    assert cancel.timer_id == f"draft_expiry:{created.draft_id}"

    (approval,) = await settled(pool, "SELECT * FROM approvals")
    assert (approval["reviewer"], approval["source"]) == (OWNER, "sms")
    assert approval["action"] == "approve"
    assert (approval["outcome"], approval["notes"], approval["ref"]) == (
        "accepted", "looks good", created.ref
    )
    (draft,) = await rows(pool, "SELECT status, decided_by FROM drafts")
    assert draft == {"status": "APPROVED_TO_SEND", "decided_by": OWNER}
    audit = await rows(
        pool, "SELECT actor, details FROM audit_log WHERE action = 'decision_accepted'"
    )
    assert audit[0]["actor"] == "HUMAN" and audit[0]["details"]["reviewer"] == OWNER
    assert (await rpc(bus, "pending"))["drafts"] == []


async def test_edit_makes_a_new_version_and_a_new_prompt_then_yes_sends_it(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    created = await _draft(bus, collector, pool, "SM201")
    ref = created.ref
    await bus.publish(owner_says("edit", ref, text="Drain cleaning is $129 flat. Tomorrow at 9?"))

    (v2,) = await collector.wait_for(DraftCreated, lambda e: e.version == 2)
    # Each version has its own ref: a reply to the old prompt never approves the new text.
    assert (v2.draft_id, v2.source) == (created.draft_id, "edit")
    assert v2.ref != ref
    assert v2.body == "Drain cleaning is $129 flat. Tomorrow at 9?"
    prompts = await collector.wait_for(OutboundRequested, _to_owner(), count=2)
    assert prompts[1].body == (
        f'Draft #{v2.ref} for +15551234567: "Drain cleaning is $129 flat. Tomorrow at 9?" '
        f"Reply YES {v2.ref}, NO {v2.ref}, or EDIT {v2.ref} <new text>."
    )
    # The expiry timer is replaced for the new version.
    timers = await collector.wait_for(TimerSet, count=2)
    assert timers[1].timer_id == timers[0].timer_id and timers[1].payload["version"] == 2

    await committed(pool, created.draft_id, version=2)
    versions = await rows(
        pool, "SELECT version, body, status, source, created_by FROM drafts ORDER BY version"
    )
    assert versions == [
        {"version": 1, "body": TEMPLATE_EN, "status": "SUPERSEDED", "source": "template",
         "created_by": "SYSTEM"},
        {"version": 2, "body": "Drain cleaning is $129 flat. Tomorrow at 9?",
         "status": "DRAFT_PENDING_APPROVAL", "source": "edit", "created_by": OWNER},
    ]

    await bus.publish(owner_says("approve", v2.ref))
    (approved,) = await collector.wait_for(DraftApproved)
    assert approved.version == 2 and approved.body == "Drain cleaning is $129 flat. Tomorrow at 9?"
    approvals = await settled(pool, "SELECT action, outcome, version FROM approvals ORDER BY id",
                              count=2)
    assert approvals == [
        {"action": "edit", "outcome": "accepted", "version": 1},
        {"action": "approve", "outcome": "accepted", "version": 2},
    ]


async def test_no_rejects_pauses_the_thread_and_queues_it_for_a_human(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    created = await _draft(bus, collector, pool, "SM202")
    await bus.publish(owner_says("reject", created.ref, notes="I will call them"))

    (rejected,) = await collector.wait_for(DraftRejected)
    assert (rejected.draft_id, rejected.reviewer, rejected.reason) == (
        created.draft_id, OWNER, "I will call them"
    )
    (paused,) = await collector.wait_for(ContactPaused)
    assert (paused.number, paused.paused, paused.actor) == (LEAD, True, OWNER)
    assert paused.thread == thread_of(LEAD)
    await collector.wait_for(TimerCancel)
    await collector.assert_none(DraftApproved, within=0.3)

    (item,) = await settled(pool, "SELECT * FROM manual_queue")
    assert (item["reason"], item["number"]) == ("rejected", LEAD)
    assert item["detail"] == f"draft #{created.ref} rejected by {OWNER}: I will call them"
    queue = await rpc(bus, "queue")
    assert [i["reason"] for i in queue["items"]] == ["rejected"]
    (draft,) = await rows(pool, "SELECT status FROM drafts")
    assert draft["status"] == "REJECTED"

    # Resuming the thread (owner API) takes it out of the queue.
    await bus.publish(ContactPaused(thread=thread_of(LEAD), number=LEAD, paused=False,
                                    actor="api:owner"))
    await settled(pool, "SELECT 1 FROM manual_queue WHERE resolved_by = 'api:owner'")
    assert (await rpc(bus, "queue"))["items"] == []


async def test_bare_yes_with_one_pending_draft_approves_it(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    created = await _draft(bus, collector, pool, "SM203")
    await bus.publish(owner_says("approve"))
    (approved,) = await collector.wait_for(DraftApproved)
    assert approved.draft_id == created.draft_id


async def test_bare_yes_with_two_pending_drafts_asks_which_one(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    first = await _draft(bus, collector, pool, "SM204")
    second = await _draft(bus, collector, pool, "SM205", lead=LEAD_2)
    await bus.publish(owner_says("approve"))

    (question,) = await collector.wait_for(
        OutboundRequested, lambda e: e.to_number == OWNER and "Which one?" in e.body
    )
    assert question.body == (
        f"2 drafts are waiting: #{first.ref} for {LEAD}, #{second.ref} for {LEAD_2}. "
        "Which one? Reply YES <ref>, NO <ref>, or EDIT <ref> <new text>."
    )
    await collector.assert_none(DraftApproved, within=0.5)
    (approval,) = await settled(pool, "SELECT * FROM approvals")
    assert approval["outcome"] == "clarify" and approval["draft_id"] is None
    drafts = await rows(pool, "SELECT status FROM drafts")
    assert {d["status"] for d in drafts} == {"DRAFT_PENDING_APPROVAL"}

    # With the ref, the same owner's YES is unambiguous.
    await bus.publish(owner_says("approve", second.ref))
    (approved,) = await collector.wait_for(DraftApproved)
    assert approved.draft_id == second.draft_id


async def test_unclear_unknown_and_already_decided_replies(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    created = await _draft(bus, collector, pool, "SM206")
    ref = created.ref
    clarify, refused, accepted = (
        ("unclear", "sms", "clarify"), ("approve", "sms", "refused"), ("approve", "sms", "accepted")
    )
    rejected_late = ("reject", "sms", "refused")
    before = _decisions(clarify, refused, accepted, rejected_late)

    await bus.publish(owner_says("unclear", text="what is this?"))
    (reply,) = await collector.wait_for(OutboundRequested, lambda e: "understand" in e.body)
    assert reply.body == (
        f'Sorry, I did not understand "what is this?". Waiting: #{ref} for {LEAD}. '
        "Reply YES <ref>, NO <ref>, or EDIT <ref> <new text>."
    )

    await bus.publish(owner_says("approve", "9999"))
    (reply,) = await collector.wait_for(OutboundRequested, lambda e: "#9999" in e.body)
    assert reply.body == (
        f"There is no draft #9999; nothing was changed. Waiting: #{ref} for {LEAD}."
    )

    await bus.publish(owner_says("approve", ref))
    await collector.wait_for(DraftApproved)
    await bus.publish(owner_says("reject", ref))
    (reply,) = await collector.wait_for(OutboundRequested, lambda e: "already" in e.body)
    assert reply.body == f"Draft #{ref} was already approved; nothing was changed."
    await collector.assert_none(DraftRejected, within=0.3)
    outcomes = await settled(pool, "SELECT outcome FROM approvals ORDER BY id", count=4)
    assert [o["outcome"] for o in outcomes] == ["clarify", "refused", "accepted", "refused"]
    await _decisions_moved(before, {clarify: 1, refused: 1, accepted: 1, rejected_late: 1})


async def test_a_non_owner_cannot_approve_and_the_attempt_is_audited(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    created = await _draft(bus, collector, pool, "SM207")
    stranger = "+15559990000"
    await bus.publish(owner_says("approve", created.ref, reviewer=stranger))

    (approval,) = await settled(pool, "SELECT * FROM approvals")
    assert (approval["reviewer"], approval["outcome"]) == (stranger, "refused")
    assert approval["notes"] == "reviewer is not an owner number"
    (audit,) = await rows(
        pool, "SELECT actor, details FROM audit_log WHERE action = 'decision_refused'"
    )
    assert audit["actor"] == "HUMAN" and audit["details"]["reviewer"] == stranger
    await collector.assert_none(DraftApproved, within=0.3)
    assert not [e for e in collector.of_type(OutboundRequested) if e.to_number == stranger]
    (draft,) = await rows(pool, "SELECT status FROM drafts")
    assert draft["status"] == "DRAFT_PENDING_APPROVAL"


async def test_api_decisions_are_accepted_by_draft_id(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    from libs.events import DraftDecided

    created = await _draft(bus, collector, pool, "SM208")
    before = _decisions(("approve", "api", "accepted"))
    await bus.publish(
        DraftDecided(thread=thread_of(LEAD), action="approve", reviewer="api:dashboard",
                     source="api", draft_id=created.draft_id)
    )
    (approved,) = await collector.wait_for(DraftApproved)
    assert approved.reviewer == "api:dashboard"
    await _decisions_moved(before, {("approve", "api", "accepted"): 1})


async def test_a_redelivered_decision_is_applied_once(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    created = await _draft(bus, collector, pool, "SM209")
    edits_before = sample("replyline_drafts_created_total", source="edit")
    before = _decisions(("edit", "sms", "accepted"))
    decision = owner_says("edit", created.ref, text="New text")
    await bus.publish(decision)
    await bus.publish(decision, msg_id="replayed-decision")  # past the stream's dedup
    (v2,) = await collector.wait_for(DraftCreated, lambda e: e.version == 2)
    await settled(pool, "SELECT 1 FROM approvals")
    await bus.publish(owner_says("approve", v2.ref))  # a marker after the replay
    await collector.wait_for(DraftApproved)
    versions = await rows(pool, "SELECT version FROM drafts ORDER BY version")
    assert [v["version"] for v in versions] == [1, 2]
    # Counted once: the replayed copy found its decision recorded.
    await _decisions_moved(before, {("edit", "sms", "accepted"): 1})
    await moved("replyline_drafts_created_total", edits_before, 1, source="edit")


async def test_expiry_alerts_the_owner_and_never_sends_the_draft(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    created = await _draft(bus, collector, pool, "SM210")
    (timer,) = await collector.wait_for(TimerSet)
    expired_before = sample("replyline_drafts_expired_total")
    # The scheduler fires the timer it was given; here the test plays the scheduler.
    fired = TimerFired(thread=timer.thread, timer_id=timer.timer_id, kind="draft_expiry",
                       fire_at=timer.fire_at, payload=timer.payload)
    await bus.publish(fired)

    (alert,) = await collector.wait_for(OutboundRequested, _to_owner("owner_alert"))
    assert alert.body == (
        f"Draft expired: #{created.ref} for {LEAD} was not decided within 24h and was NOT "
        f"sent. Reply YES {created.ref}, NO {created.ref}, or EDIT {created.ref} <new text> "
        "to decide now."
    )
    await collector.assert_none(DraftApproved, within=0.5)
    assert not [e for e in collector.of_type(OutboundRequested) if e.to_number == LEAD]
    (item,) = await settled(pool, "SELECT * FROM manual_queue")
    assert item["reason"] == "draft_expired"

    # A second firing (replayed timer) does not alert twice. The marker is on the
    # same thread, so once it is handled the replay has been handled. (A forwarded
    # message: a draftable or needs-review one would withdraw the pending draft.)
    await bus.publish(fired, msg_id="replayed-timer")
    await bus.publish(routed("SM299", decision="forward", rule="human_takeover"))
    await collector.wait_for(OutboundRequested, lambda e: e.request_id.startswith("forward:SM299"))
    alerts = [e for e in collector.of_type(OutboundRequested) if e.body.startswith("Draft expired")]
    assert len(alerts) == 1
    await moved("replyline_drafts_expired_total", expired_before, 1)

    await bus.publish(owner_says("approve", created.ref))  # still decidable after expiry
    (approved,) = await collector.wait_for(DraftApproved)
    assert approved.draft_id == created.draft_id


async def test_expiry_after_a_decision_or_an_edit_says_nothing(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    edited = await _draft(bus, collector, pool, "SM211")
    decided = await _draft(bus, collector, pool, "SM212", lead=LEAD_2)
    await bus.publish(owner_says("edit", edited.ref, text="Shorter text"))
    await bus.publish(owner_says("approve", decided.ref))
    await collector.wait_for(DraftApproved)
    await committed(pool, edited.draft_id, version=2)
    await settled(pool, "SELECT 1 FROM drafts WHERE status = 'APPROVED_TO_SEND'")
    now = utcnow()
    for draft in (edited, decided):  # both fire with the version-1 payload
        await bus.publish(
            TimerFired(thread=draft.thread, timer_id=f"draft_expiry:{draft.draft_id}",
                       kind="draft_expiry", fire_at=now - timedelta(seconds=1),
                       payload={"draft_id": draft.draft_id, "version": 1})
        )
    # Markers on both threads: once drafted, the timers before them were handled.
    await bus.publish(routed("SM213"))
    await bus.publish(routed("SM214", lead=LEAD_2))
    await collector.wait_for(DraftCreated, lambda e: e.in_reply_to in ("SM213", "SM214"), count=2)
    assert [e for e in collector.of_type(OutboundRequested) if e.kind == "owner_alert"] == []
    assert await rows(pool, "SELECT * FROM manual_queue") == []


async def test_a_decision_naming_an_unknown_ref_is_refused_at_once(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    """Nothing names a draft before its row is committed (the outbox), so a ref no row
    has is unknown: refused on first delivery, never held back and applied to a draft
    that commits later (the old UNKNOWN_DRAFT_RETRIES guessing did exactly that)."""
    await bus.publish(owner_says("approve", "1000"))  # the first draft will get ref 1000
    await bus.publish(routed("SM-race"))
    (reply,) = await collector.wait_for(OutboundRequested, lambda e: "There is no draft #1000" in e.body)
    assert reply.to_number == OWNER
    (created,) = await collector.wait_for(DraftCreated, lambda e: e.in_reply_to == "SM-race")
    assert created.ref == "1000"
    (approval,) = await settled(pool, "SELECT outcome, notes FROM approvals")
    assert (approval["outcome"], approval["notes"]) == ("refused", "unknown ref #1000")
    await collector.assert_none(DraftApproved, within=1.5)
    (draft,) = await rows(pool, "SELECT status FROM drafts")
    assert draft["status"] == "DRAFT_PENDING_APPROVAL"


async def test_a_versions_events_are_never_on_the_bus_before_its_row(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    """draft.created and the owner's prompt of every version (a lead's draft and the
    owner's edits) name a row that is already committed when they arrive: whoever acts
    on them (the owner, an API client) finds the draft."""
    seen: list[tuple[str, str, bool]] = []

    async def on_msg(msg: Any) -> None:
        event = decode(msg.data)
        if isinstance(event, DraftCreated):
            found = await pool.fetchval(
                "SELECT 1 FROM drafts WHERE draft_id = $1 AND version = $2",
                uuid.UUID(event.draft_id), event.version,
            )
            seen.append(("created", event.ref, found is not None))
        elif isinstance(event, OutboundRequested) and event.request_id.startswith("prompt:"):
            _, draft_id, version = event.request_id.split(":")[:3]
            found = await pool.fetchval(
                "SELECT 1 FROM drafts WHERE draft_id = $1 AND version = $2",
                uuid.UUID(draft_id), int(version),
            )
            seen.append(("prompt", event.request_id, found is not None))

    # A plain subscription: called as each event reaches NATS, with no stream consumer between.
    sub = await bus.nc.subscribe(f"{bus.prefix}>", cb=on_msg)
    try:
        created = await _draft(bus, collector, pool, "SM-visible")
        latest = created
        for n in range(5):
            await bus.publish(owner_says("edit", latest.ref, text=f"Edited text {n}"))
            (latest,) = await collector.wait_for(DraftCreated, lambda e, v=n + 2: e.version == v)
        await eventually(lambda: len(seen) >= 12, timeout=5)
    finally:
        await sub.unsubscribe()
    assert [s for s in seen if not s[2]] == []
