"""The end of a wait: a delay's or a reply timeout's timer fired, or the owner decided
on the message an approval-required ``send_sms`` asked for."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import structlog

from .enrollment import Enrollment, lock
from .runner import Runner
from .store import Q

log = structlog.get_logger("engine")


async def timer_fired(runner: Runner, timer_id: str, kind: str, payload: dict[str, Any], late: bool) -> None:
    """A delay or reply timeout ended: take the next step (or the timeout branch)."""
    enrollment_id = payload.get("enrollment_id")
    if not enrollment_id:
        return
    async with runner.pool.acquire() as conn, conn.transaction():
        enrollment = await lock(conn, enrollment_id)
        if enrollment is None:
            return
        if enrollment.timer_id != timer_id:
            # Already moved on (a redelivery, or a reply beat the timeout).
            resume = enrollment.status == "active"
        else:
            definition = await runner.registry.definition(
                enrollment.workflow_key, enrollment.workflow_version
            )
            step = definition.steps.get(enrollment.current_step or "")
            output: dict[str, Any] = {"fired_at": runner.clock.now().isoformat(), "late": late}
            if step is None:
                next_step = enrollment.current_step  # advance() ends it with the reason
            elif kind == "reply_timeout" and step.branches is not None:
                next_step = step.branches["timeout"]
                output["branch"] = "timeout"
            else:
                next_step = definition.next_of(step.id)
            resume = await finish_wait(runner, conn, enrollment, int(payload["seq"]), output, late, next_step)
    if resume:
        await runner.advance(enrollment_id)


async def approval_decided(
    runner: Runner,
    enrollment_id: uuid.UUID,
    request_id: str | None,
    *,
    approved: bool,
    output: dict[str, Any],
) -> None:
    """The owner approved (the drafter published draft.approved; the sender sends it)
    or rejected the message an approval-required ``send_sms`` asked for."""
    resume = False
    async with runner.pool.acquire() as conn, conn.transaction():
        enrollment = await lock(conn, enrollment_id)
        if enrollment is None:
            return
        if enrollment.waiting_for != "approval" or (request_id and request_id != enrollment.request_id()):
            # A redelivery, or a decision on a request this enrollment has moved past
            # (it ended on a reply or an opt-out meanwhile): nothing to do here.
            log.info("approval_ignored", enrollment_id=str(enrollment_id), request_id=request_id)
            resume = enrollment.status == "active"
        elif not approved:
            now = runner.clock.now()
            await conn.execute(Q.complete_execution, enrollment.id, enrollment.step_seq, output, False, now)
            await runner.end(conn, enrollment, "approval_rejected")
        else:
            definition = await runner.registry.definition(
                enrollment.workflow_key, enrollment.workflow_version
            )
            step = definition.steps.get(enrollment.current_step or "")
            # A vanished step stays put: advance() ends the enrollment with the reason.
            next_step = enrollment.current_step if step is None else definition.next_of(step.id)
            resume = await finish_wait(
                runner, conn, enrollment, enrollment.step_seq, output, False, next_step
            )
    if resume:
        await runner.advance(enrollment_id)


async def finish_wait(
    runner: Runner,
    conn: asyncpg.Connection,
    enrollment: Enrollment,
    seq: int,
    output: dict[str, Any],
    late: bool,
    next_step: str | None,
) -> bool:
    """Close the waiting step's execution and point the enrollment at ``next_step``.

    Returns whether the enrollment should run on now; one paused by a human
    meanwhile stays paused, one step further.
    """
    await conn.execute(Q.complete_execution, enrollment.id, seq, output, late, runner.clock.now())
    if enrollment.status == "waiting":
        enrollment.status = "active"
    enrollment.current_step, enrollment.waiting_for, enrollment.timer_id = next_step, None, None
    await enrollment.save(conn)
    return enrollment.status == "active"
