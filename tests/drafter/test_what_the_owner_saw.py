"""The owner approves exactly the text they were shown (issue 11 items 8 and 9).

- Drafts are bounded (``max_draft_chars``): an over-long LLM draft is cut, and the
  prompt carries the whole result; YES sends exactly that.
- A text that cannot be shown whole by SMS (a long workflow message or edit) gets a
  notice instead of a prompt and cannot be approved by SMS; the dashboard/API can.
- A bare YES never applies to a version prompted too recently to have been read.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from libs.bus import Bus
from libs.events import (
    DraftApproved,
    DraftCreated,
    DraftDecided,
    DraftRequested,
    OutboundRequested,
    thread_of,
)
from tests.drafter.conftest import LEAD, OWNER, StartDrafter, committed, owner_says, routed, settled
from tests.harness import EventCollector
from testsupport.fakes.openai_server import FakeOpenAI

SENTENCE = "Our technicians clear kitchen sink drains quickly and tidy up afterwards. "
LONG_REPLY = "Drain cleaning is $129. " + SENTENCE * 40  # ~3,000 characters


def _prompt(ref: str, body: str) -> str:
    return f'Draft #{ref} for {LEAD}: "{body}" Reply YES {ref}, NO {ref}, or EDIT {ref} <new text>.'


def _to_owner(e: OutboundRequested) -> bool:
    return e.to_number == OWNER


async def test_a_very_long_llm_draft_is_cut_and_the_prompt_shows_all_of_it(
    start_drafter: StartDrafter,
    llm_settings: dict[str, Any],
    primary: FakeOpenAI,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
) -> None:
    await start_drafter(**llm_settings)
    primary.reply(LONG_REPLY)
    await bus.publish(routed("SM800"))
    (created,) = await collector.wait_for(DraftCreated)
    body = created.body
    assert len(body) <= 480 and body.endswith("afterwards.")  # cut at a sentence end
    assert LONG_REPLY.startswith(body)
    (prompt,) = await collector.wait_for(OutboundRequested, _to_owner)
    assert prompt.kind == "owner_prompt"
    assert prompt.body == _prompt(created.ref, body)  # the whole draft, verbatim

    await committed(pool, created.draft_id)
    await bus.publish(owner_says("approve", created.ref))
    (approved,) = await collector.wait_for(DraftApproved)
    assert approved.body == body  # exactly what the prompt showed, no hidden tail


async def test_a_text_too_long_for_one_sms_is_left_for_the_dashboard(
    start_drafter: StartDrafter, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    await start_drafter()
    offer = "Spring offer: " + SENTENCE * 10  # a workflow text is never cut
    enrollment = str(uuid.uuid4())
    await bus.publish(
        DraftRequested(
            thread=thread_of(LEAD), request_id=f"wf:{enrollment}:1",
            workflow_enrollment_id=enrollment, step_id="offer", to_number=LEAD, body=offer,
        )
    )
    (created,) = await collector.wait_for(DraftCreated)
    assert created.body == offer
    (notice,) = await collector.wait_for(OutboundRequested, _to_owner)
    assert notice.kind == "owner_alert"
    assert notice.body == (
        f"Draft #{created.ref} for {LEAD} is {len(offer)} characters, too long to show whole "
        "by SMS (limit 480). It was NOT sent: review it on the dashboard."
    )
    await committed(pool, created.draft_id)

    # YES by SMS (with the ref, or bare) is refused: the owner never saw the whole text.
    for ref in (created.ref, None):
        decision = owner_says("approve", ref)
        await bus.publish(decision)
        (reply,) = await collector.wait_for(
            OutboundRequested, lambda e, d=decision: e.request_id == f"reply:{d.id}:{OWNER}"
        )
        assert reply.body == (
            f"Draft #{created.ref} was too long to show you whole by SMS, so it cannot be "
            "approved by SMS; nothing was sent. Review it on the dashboard."
        )
    await collector.assert_none(DraftApproved, within=0.5)

    # An SMS EDIT longer than the limit is stored but not prompted either.
    long_edit = ("Spring offer, edited: " + SENTENCE * 7).strip()
    await bus.publish(owner_says("edit", created.ref, text=long_edit))
    (v2,) = await collector.wait_for(DraftCreated, lambda e: e.version == 2)
    (notice2,) = await collector.wait_for(
        OutboundRequested, lambda e: _to_owner(e) and e.request_id.startswith(f"prompt:{v2.draft_id}:2")
    )
    assert notice2.kind == "owner_alert" and "too long to show whole" in notice2.body
    await committed(pool, v2.draft_id, 2)

    # The dashboard shows the whole text, and its approval goes through.
    await bus.publish(
        DraftDecided(thread=thread_of(LEAD), action="approve", reviewer="dashboard:owner",
                     source="dashboard", draft_id=v2.draft_id, ref=v2.ref)
    )
    (approved,) = await collector.wait_for(DraftApproved)
    assert (approved.version, approved.body) == (2, long_edit)


async def test_a_bare_yes_sent_before_the_prompt_could_be_read_asks_again(
    start_drafter: StartDrafter, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    await start_drafter(bare_reply_grace_s=30.0)
    await bus.publish(routed("SM801"))
    (created,) = await collector.wait_for(DraftCreated)
    await committed(pool, created.draft_id)

    # The owner's bare YES arrived right after this draft's prompt went out: they meant
    # something else (or nothing); show it and ask, never approve it.
    decision = owner_says("approve")
    await bus.publish(decision)
    (reply,) = await collector.wait_for(
        OutboundRequested, lambda e: e.request_id == f"reply:{decision.id}:{OWNER}"
    )
    assert reply.body == (
        "Your reply named no draft and this one arrived just now; nothing was done. "
        + _prompt(created.ref, created.body)
    )
    await collector.assert_none(DraftApproved, within=0.5)
    (row,) = await settled(pool, "SELECT outcome FROM approvals")
    assert row["outcome"] == "clarify"

    # The owner's own edit they wrote themselves: a bare YES right after it applies.
    await bus.publish(owner_says("edit", created.ref, text="Drain cleaning is $129 flat."))
    (v2,) = await collector.wait_for(DraftCreated, lambda e: e.version == 2)
    await committed(pool, v2.draft_id, 2)
    await bus.publish(DraftDecided(thread=thread_of(OWNER), action="approve", reviewer=OWNER,
                                   source="sms", message_sid="SMbare2"))
    (approved,) = await collector.wait_for(DraftApproved)
    assert (approved.version, approved.body) == (2, "Drain cleaning is $129 flat.")
