"""Workflow messages (draft.requested) through the owner's approval loop."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from libs.bus import Bus
from libs.events import (
    ContactPaused,
    DraftApproved,
    DraftCreated,
    DraftRejected,
    DraftRequested,
    OutboundRequested,
    TimerCancel,
    TimerSet,
    thread_of,
)
from tests.drafter.conftest import (
    LEAD,
    LEAD_2,
    OWNER,
    OWNER_2,
    StartDrafter,
    committed,
    moved,
    owner_says,
    rows,
    rpc,
    sample,
    settled,
)
from tests.harness import EventCollector

ENROLLMENT = str(uuid.UUID("9b0c7a52-3f0e-4c1e-8d7a-1f2e3d4c5b6a"))
OFFER = "20% off your next drain cleaning this week, Ana. Want a slot?"


def requested(
    request_id: str = f"wf:{ENROLLMENT}:1",
    *,
    lead: str = LEAD,
    body: str = OFFER,
    step_id: str = "offer",
) -> DraftRequested:
    return DraftRequested(
        thread=thread_of(lead),
        request_id=request_id,
        workflow_enrollment_id=ENROLLMENT,
        step_id=step_id,
        to_number=lead,
        body=body,
    )


def prompt_text(ref: str, lead: str, body: str) -> str:
    """DESIGN.md's owner prompt, written out (not built by the code under test)."""
    return f'Draft #{ref} for {lead}: "{body}" Reply YES {ref}, NO {ref}, or EDIT {ref} <new text>.'


async def _requested_draft(
    bus: Bus, collector: EventCollector, pool: asyncpg.Pool, event: DraftRequested
) -> DraftCreated:
    await bus.publish(event)
    (created,) = await collector.wait_for(
        DraftCreated, lambda e: e.source == "workflow" and e.body == event.body
    )
    await committed(pool, created.draft_id)
    return created


@pytest.fixture
async def drafter(start_drafter: StartDrafter) -> None:
    await start_drafter(owner_numbers=[OWNER, OWNER_2])


async def test_request_becomes_a_draft_with_prompt_and_expiry(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    created = await _requested_draft(bus, collector, pool, requested())
    assert (created.version, created.body, created.to_number) == (1, OFFER, LEAD)
    assert created.thread == thread_of(LEAD) and created.in_reply_to == ""

    prompts = await collector.wait_for(
        OutboundRequested, lambda e: e.kind == "owner_prompt", count=2
    )
    assert {p.to_number for p in prompts} == {OWNER, OWNER_2}
    assert {p.body for p in prompts} == {prompt_text(created.ref, LEAD, OFFER)}

    (timer,) = await collector.wait_for(TimerSet)
    assert (timer.kind, timer.timer_id) == ("draft_expiry", f"draft_expiry:{created.draft_id}")
    assert timer.payload["draft_id"] == created.draft_id

    (row,) = await rows(pool, "SELECT * FROM drafts")
    assert (row["source"], row["status"], row["ref"]) == (
        "workflow",
        "DRAFT_PENDING_APPROVAL",
        created.ref,
    )
    assert (row["request_id"], row["workflow_enrollment_id"], row["workflow_step_id"]) == (
        f"wf:{ENROLLMENT}:1",
        ENROLLMENT,
        "offer",
    )
    (pending,) = (await rpc(bus, "pending"))["drafts"]
    assert (pending["ref"], pending["source"], pending["workflow_enrollment_id"]) == (
        created.ref,
        "workflow",
        ENROLLMENT,
    )
    (audited,) = await rows(pool, "SELECT details FROM audit_log WHERE action = 'draft_created'")
    assert audited["details"]["request_id"] == f"wf:{ENROLLMENT}:1"


async def test_a_replayed_request_drafts_once(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    event = requested()
    drafts_before = sample("replyline_drafts_created_total", source="workflow")
    await _requested_draft(bus, collector, pool, event)
    # The same request again, past JetStream's duplicate window (another Nats-Msg-Id),
    # then a second request on the same thread: once that one is drafted, the replay
    # (handled before it, in thread order) has been handled too.
    await bus.publish(event, msg_id="replayed-after-the-dedup-window")
    second = await _requested_draft(
        bus, collector, pool, requested(f"wf:{ENROLLMENT}:5", body="Second offer")
    )
    assert second.body == "Second offer"
    found = await rows(pool, "SELECT request_id, ref FROM drafts ORDER BY id")
    assert [r["request_id"] for r in found] == [f"wf:{ENROLLMENT}:1", f"wf:{ENROLLMENT}:5"]
    assert len({r["ref"] for r in found}) == 2
    assert len(collector.of_type(DraftCreated)) == 2
    await moved("replyline_drafts_created_total", drafts_before, 2, source="workflow")


async def test_unusable_request_is_not_drafted(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    await bus.publish(requested("wf:x:1", body="   "))
    await bus.publish(requested("wf:x:2", lead="", body="hi"))
    await _requested_draft(bus, collector, pool, requested("wf:x:3", lead=LEAD_2, body="ok"))
    found = await rows(pool, "SELECT request_id FROM drafts")
    assert [r["request_id"] for r in found] == ["wf:x:3"]


async def test_yes_approves_with_the_workflow_ids(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    created = await _requested_draft(bus, collector, pool, requested())
    await bus.publish(owner_says("approve", created.ref))
    (approved,) = await collector.wait_for(DraftApproved)
    assert (approved.draft_id, approved.version, approved.to_number, approved.body) == (
        created.draft_id,
        1,
        LEAD,
        OFFER,
    )
    assert (approved.request_id, approved.workflow_enrollment_id) == (
        f"wf:{ENROLLMENT}:1",
        ENROLLMENT,
    )
    await collector.wait_for(TimerCancel)
    (approval,) = await settled(pool, "SELECT * FROM approvals")
    assert (approval["action"], approval["outcome"]) == ("approve", "accepted")


async def test_edit_then_yes_sends_the_edited_text_for_the_workflow(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    created = await _requested_draft(bus, collector, pool, requested())
    await bus.publish(owner_says("edit", created.ref, text="15% off this week, Ana?"))
    (v2,) = await collector.wait_for(DraftCreated, lambda e: e.version == 2)
    assert (v2.source, v2.body) == ("edit", "15% off this week, Ana?")
    assert v2.ref != created.ref  # each version has its own ref
    await committed(pool, created.draft_id, 2)
    await bus.publish(owner_says("approve", v2.ref))
    (approved,) = await collector.wait_for(DraftApproved)
    assert (approved.version, approved.body) == (2, "15% off this week, Ana?")
    assert (approved.request_id, approved.workflow_enrollment_id) == (
        f"wf:{ENROLLMENT}:1",
        ENROLLMENT,
    )
    await settled(pool, "SELECT 1 FROM drafts WHERE status = 'APPROVED_TO_SEND'")
    versions = await rows(pool, "SELECT version, status, workflow_enrollment_id FROM drafts")
    assert sorted((r["version"], r["status"]) for r in versions) == [
        (1, "SUPERSEDED"),
        (2, "APPROVED_TO_SEND"),
    ]
    assert {r["workflow_enrollment_id"] for r in versions} == {ENROLLMENT}


async def test_no_rejects_without_pausing_the_thread(
    drafter: None, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    created = await _requested_draft(bus, collector, pool, requested())
    await bus.publish(owner_says("reject", created.ref, notes="not this week"))
    (rejected,) = await collector.wait_for(DraftRejected)
    assert (rejected.draft_id, rejected.reviewer, rejected.reason) == (
        created.draft_id,
        OWNER,
        "not this week",
    )
    assert (rejected.request_id, rejected.workflow_enrollment_id) == (
        f"wf:{ENROLLMENT}:1",
        ENROLLMENT,
    )
    await collector.wait_for(TimerCancel)
    (row,) = await settled(pool, "SELECT status FROM drafts WHERE status <> 'DRAFT_PENDING_APPROVAL'")
    assert row["status"] == "REJECTED"
    # A reply draft's NO hands the thread to a person; a workflow message's NO only
    # drops that message (and ends its enrollment, in the scheduler).
    await collector.assert_none(ContactPaused, within=0.3)
    assert await rows(pool, "SELECT * FROM manual_queue") == []
    await collector.assert_none(DraftApproved, within=0.1)
