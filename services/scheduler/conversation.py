"""What the conversation does to enrollments: the lead replied, opted out, or a human
paused (took over) or resumed the thread.

The outcome such an event records (``discarded`` on an opt-out, ``escalated`` on a
pause) is decided before the transaction that locks the thread's enrollments: an
LLM judge may take seconds and must not hold those locks.
"""

from __future__ import annotations

import uuid

from .enrollment import live_of_thread
from .outcomes import decide, store_outcome
from .runner import Runner
from .store import Q, view_of


async def lead_replied(runner: Runner, thread: str, phone: str, body: str, event_id: str) -> None:
    """An inbound message from the lead: wait_for_reply steps take their replied branch;
    other enrollments pause, continue or end by their workflow's ``on_reply``."""
    now = runner.clock.now()
    resume: list[uuid.UUID] = []
    async with runner.pool.acquire() as conn, conn.transaction():
        await conn.execute(Q.ensure_contact, thread, phone)
        await conn.execute(Q.record_reply, thread, body, now)
        for enrollment in await live_of_thread(conn, thread):
            definition = await runner.registry.definition(
                enrollment.workflow_key, enrollment.workflow_version
            )
            if enrollment.waiting_for == "reply":
                step = definition.steps.get(enrollment.current_step or "")
                if step is None or step.branches is None:
                    continue
                if enrollment.timer_id:
                    await runner.effects.timers.cancel(enrollment.timer_id)
                output = {"branch": "replied", "reply": body}
                await conn.execute(
                    Q.complete_execution, enrollment.id, enrollment.step_seq, output, False, now
                )
                enrollment.status = "active" if enrollment.status == "waiting" else "paused"
                enrollment.current_step = step.branches["replied"]
                enrollment.waiting_for, enrollment.timer_id = None, None
                enrollment.replied, enrollment.ended_reason = False, None
                await enrollment.save(conn)
                if enrollment.status == "active":
                    resume.append(enrollment.id)
            elif definition.workflow.on_reply == "end":
                await runner.end(conn, enrollment, "lead_replied")
            elif definition.workflow.on_reply == "pause" and not enrollment.replied:
                enrollment.replied, enrollment.ended_reason = True, None
                await enrollment.save(conn)
    for enrollment_id in resume:
        await runner.advance(enrollment_id)


async def opted_out(runner: Runner, thread: str, phone: str, event_id: str) -> int:
    """STOP: end every live enrollment of the thread; returns how many."""
    await runner.pool.execute(Q.ensure_contact, thread, phone)
    contact = await runner.pool.fetchrow(Q.get_contact, thread)
    verdict = await decide(runner.judge, "discarded", "opt_out", view_of(contact))
    async with runner.pool.acquire() as conn, conn.transaction():
        await conn.execute(Q.set_opted_out, thread, True)
        enrollments = await live_of_thread(conn, thread)
        for enrollment in enrollments:
            await runner.end(conn, enrollment, "opt_out")
        await store_outcome(
            conn,
            verdict,
            thread=thread,
            reason="opt_out",
            source_event=event_id,
            details={"enrollments_ended": len(enrollments)},
        )
    return len(enrollments)


async def paused(runner: Runner, thread: str, phone: str, *, paused: bool, actor: str, event_id: str) -> None:
    """A human paused (took over) or resumed a thread."""
    await runner.pool.execute(Q.ensure_contact, thread, phone)
    verdict = None
    if paused:
        contact = await runner.pool.fetchrow(Q.get_contact, thread)
        verdict = await decide(runner.judge, "escalated", "escalation", view_of(contact))
    resume: list[uuid.UUID] = []
    async with runner.pool.acquire() as conn, conn.transaction():
        await conn.execute(Q.set_paused, thread, paused)
        for enrollment in await live_of_thread(conn, thread):
            if paused and enrollment.status != "paused":
                enrollment.status, enrollment.pause_reason = "paused", "human"
            elif not paused and enrollment.status == "paused":
                # A resume never stands in for the owner's approval: an enrollment
                # waiting for one keeps waiting for the drafter's decision.
                if enrollment.pause_reason == "approval_required":
                    # Held by an older release, which sent nothing to the drafter:
                    # run the step again, so it asks the drafter now.
                    enrollment.waiting_for = None
                waiting = enrollment.waiting_for in ("delay", "reply", "approval")
                enrollment.status, enrollment.pause_reason = ("waiting" if waiting else "active"), None
                enrollment.replied = False
                if enrollment.status == "active":
                    resume.append(enrollment.id)
            else:
                continue
            enrollment.ended_reason = None
            await enrollment.save(conn)
        if verdict is not None:
            details = {"actor": actor}
            await store_outcome(
                conn, verdict, thread=thread, reason="escalation", source_event=event_id, details=details
            )
    for enrollment_id in resume:
        await runner.advance(enrollment_id)
