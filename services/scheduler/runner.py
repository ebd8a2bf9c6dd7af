"""The runner: executes an active enrollment's steps, one transaction per step.

Each step runs holding the enrollment's row lock and is recorded in
workflow_executions under the enrollment's next sequence number. The step
function (steps.py) decides; the runner performs its effects (effects.py),
records the execution and saves the enrollment. Each step is one unit of the
slice's event outbox (libs/event_outbox.py): the events the step publishes
(``Publish`` effects) commit with its execution row and the enrollment, and are on
the bus only after that commit. A transient failure (SMTP down, database error)
rolls the step back, its events included, and raises, so the consumer redelivers
the event that drove the enrollment.

A step that fails for good is recorded (the execution's ``error`` and a
``workflow_step_failed`` audit row) and the enrollment follows the step's
``on_error`` (a step, or ``end``: ended with reason ``step_failed``); without
one it goes on as if the step had succeeded. Steps with an outside effect
(``http``, ``send_email``) first commit their execution row on their own
connection; a redelivery that finds that row still open does not repeat the
effect (its outcome is unknown) but records the step as failed.

A step that records a conversation outcome (an ``end`` step's) is judged by the
LLM, when one is configured, *before* the lock is taken: the runner leaves the
transaction, asks the judge, then locks again and runs the step with the verdict.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import aiosmtplib
import asyncpg
import nats.errors
import structlog

from libs.db import audit
from libs.event_outbox import EventOutbox, Unit

from .clock import Clock
from .effects import OUTSIDE, Effect, EffectFailed, Effects, Publish, SendEmail
from .enrollment import Enrollment, lock
from .outcomes import OutcomeJudge, Verdict, decide, store_outcome
from .registry import Registry
from .steps import StepContext, StepResult, outcome_of, plan
from .store import Q, view_of
from .workflow.model import END, Step

log = structlog.get_logger("engine")
SERVICE = "scheduler"
MAX_STEPS_PER_RUN = 500
#: Errors worth a redelivery (the step is rolled back); any other error fails the step for good.
TRANSIENT = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    aiosmtplib.SMTPException,
    nats.errors.Error,
)
INTERRUPTED = "interrupted: an earlier attempt of this step may have run; not repeated"


@dataclass(frozen=True)
class _Ask:
    """An outcome to put to the judge outside the lock; ``key`` names the execution it is for."""

    key: str
    thread: str
    outcome: str
    reason: str


def _outcome_reason(outcome: str) -> str:
    return "goal_reached" if outcome == "success" else "workflow_end"


@dataclass(frozen=True, kw_only=True)
class Runner:
    #: The slice's event outbox: each step is one of its units.
    outbox: EventOutbox
    #: Connections for execution rows committed before a side effect, apart from the
    #: step's own transaction (a separate pool, so steps cannot starve it).
    claims: asyncpg.Pool
    registry: Registry
    #: Its timers and emailer serve the steps too (the timer a step finishes, email templates).
    effects: Effects
    clock: Clock
    judge: OutcomeJudge | None

    @property
    def pool(self) -> asyncpg.Pool:
        """The slice's pool (the outbox's): reads outside a step's unit."""
        return self.outbox.pool

    async def advance(self, enrollment_id: uuid.UUID | str) -> None:
        """Run steps of an active enrollment until it waits, pauses or finishes."""
        verdicts: dict[str, Verdict] = {}
        for _ in range(MAX_STEPS_PER_RUN):
            ask = None
            async with self.outbox.unit() as u:
                enrollment = await lock(u.conn, enrollment_id)
                if enrollment is None or enrollment.status != "active":
                    return
                ask = await self._judge_first(enrollment, verdicts)
                if ask is None and not await self._run_current(u, enrollment, verdicts):
                    return
            if ask is not None:
                # The lock is released: the model may take its time.
                contact = await self.pool.fetchrow(Q.get_contact, ask.thread)
                verdicts[ask.key] = await decide(self.judge, ask.outcome, ask.reason, view_of(contact))
        log.error("advance_step_limit", enrollment_id=str(enrollment_id))

    async def _judge_first(self, enrollment: Enrollment, verdicts: dict[str, Verdict]) -> _Ask | None:
        """The outcome the current step will record, when the LLM must judge it first."""
        if self.judge is None or not self.judge.enabled:
            return None
        definition = await self.registry.definition(enrollment.workflow_key, enrollment.workflow_version)
        step_id = enrollment.current_step
        if step_id is None or step_id not in definition.steps:
            return None
        outcome = outcome_of(definition.configs[step_id])
        key = f"{enrollment.request_id(enrollment.step_seq + 1)}:{step_id}"
        if outcome is None or key in verdicts:
            return None
        return _Ask(key, enrollment.thread, outcome, _outcome_reason(outcome))

    async def _run_current(self, u: Unit, enrollment: Enrollment, verdicts: dict[str, Verdict]) -> bool:
        """Run one step under the row lock; True when the enrollment is still active."""
        conn = u.conn
        definition = await self.registry.definition(enrollment.workflow_key, enrollment.workflow_version)
        step_id = enrollment.current_step
        contact = await conn.fetchrow(Q.get_contact, enrollment.thread)
        if step_id is None or step_id == END:
            await self.finish(conn, enrollment, "completed", None)
            return False
        if contact is None or contact["opted_out"]:
            await self.finish(conn, enrollment, "ended", "opt_out")
            return False
        if step_id not in definition.steps:
            # The file was edited without bumping its version: never guess where to go.
            log.error("enrollment_step_missing", enrollment_id=str(enrollment.id), step=step_id)
            await self.finish(conn, enrollment, "ended", f"step {step_id!r} no longer exists")
            return False
        ctx = StepContext(
            enrollment=enrollment,
            definition=definition,
            contact=contact,
            now=self.clock.now(),
            templates=self.effects.emailer.template,
        )
        step = ctx.step
        publish: list[Publish] = []
        try:
            async with conn.transaction():  # a savepoint: a failed step leaves no half-done writes
                result = await self._execute(conn, ctx, definition.configs[step_id], publish)
        except TRANSIENT:
            raise
        except Exception as err:
            log.exception("workflow_step_crashed", enrollment_id=str(enrollment.id), step=step_id)
            result = StepResult(definition.next_of(step.id), error=f"{type(err).__name__}: {err}")
            publish.clear()  # the savepoint rolled the step's writes back: its events go too
        for effect in publish:
            u.emit(effect.event, msg_id=effect.msg_id)
        if result.error is not None:
            await self._failed(conn, enrollment, step, result)
        await self._record(conn, ctx, result)
        if result.outcome is not None:
            verdict = verdicts.get(f"{ctx.key}:{step_id}") or Verdict.by_rule(result.outcome)
            await store_outcome(
                conn,
                verdict,
                thread=enrollment.thread,
                reason=_outcome_reason(result.outcome),
                source_event=ctx.key,
                details={"workflow": enrollment.workflow_key, "step": step_id},
            )
        return enrollment.status == "active"

    async def _execute(
        self, conn: asyncpg.Connection, ctx: StepContext, config: Any, publish: list[Publish]
    ) -> StepResult:
        """Plan the step, then perform its effects in order (outside ones claimed first);
        events to publish are collected in ``publish`` for the caller to emit once the
        step's savepoint has held."""
        result = plan(ctx, config)
        if result.error is not None:
            return result
        for effect in result.effects:
            if isinstance(effect, Publish):
                publish.append(effect)
            elif isinstance(effect, OUTSIDE):
                if not await self._claim(ctx, result.input):
                    result.error = INTERRUPTED
                    return result
                try:
                    result.output = await self._perform(conn, ctx, effect)
                except EffectFailed as err:
                    result.error = str(err)
                    return result
            else:
                await self._perform(conn, ctx, effect)
        return result

    async def _perform(
        self, conn: asyncpg.Connection, ctx: StepContext, effect: Effect
    ) -> dict[str, Any] | None:
        try:
            return await self.effects.perform(conn, ctx.enrollment.thread, effect)
        except EffectFailed:
            raise
        except Exception:
            if isinstance(effect, SendEmail):
                # Not sent (SMTP down, refused): a redelivery may try again.
                await self.claims.execute(Q.release_execution, ctx.enrollment.id, ctx.seq)
            raise

    async def _record(self, conn: asyncpg.Connection, ctx: StepContext, result: StepResult) -> None:
        """Write the execution row, move the enrollment on and audit a stop."""
        enrollment, step = ctx.enrollment, ctx.step
        if result.executed:
            await conn.execute(
                Q.insert_execution.sql,
                *Q.insert_execution.bind(
                    result,  # its input, output and error
                    enrollment_id=enrollment.id,
                    seq=ctx.seq,
                    step_id=step.id,
                    step_type=step.type,
                    late=False,
                    started_at=ctx.now,
                    completed_at=self.clock.now() if result.completed else None,
                ),
            )
        next_step = step.id if result.next_step is None else result.next_step
        status = result.status
        if status == "active" and next_step == END:
            status = "completed"
        enrollment.status, enrollment.current_step = status, next_step
        enrollment.waiting_for, enrollment.timer_id = result.waiting_for, result.timer_id
        enrollment.step_seq = ctx.seq if result.executed else enrollment.step_seq
        enrollment.replied = enrollment.replied if result.replied is None else result.replied
        enrollment.pause_reason, enrollment.ended_reason = result.pause_reason, result.ended_reason
        await enrollment.save(conn)
        if status != "active":
            reason = result.pause_reason or result.ended_reason or result.waiting_for
            await self._audit(conn, enrollment, f"workflow_{status}", step=step.id, reason=reason)

    async def _failed(
        self, conn: asyncpg.Connection, enrollment: Enrollment, step: Step, result: StepResult
    ) -> None:
        """Record a failed step and point ``result`` at the step's failure path."""
        if step.on_error == END or (step.on_error is None and step.branches is not None):
            # A branching step that fails has no "as if it succeeded": end it too.
            result.next_step, result.status, result.ended_reason = step.id, "ended", "step_failed"
        elif step.on_error is not None:
            result.next_step = step.on_error
        await self._audit(
            conn,
            enrollment,
            "workflow_step_failed",
            step=step.id,
            error=result.error,
            next=result.next_step if result.status == "active" else None,
        )

    async def _claim(self, ctx: StepContext, data: dict[str, Any]) -> bool:
        """Commit this execution's row before its side effect; False when a previous
        delivery already did (it may have had the effect: do not repeat it)."""
        step = ctx.step
        row = await self.claims.fetchval(
            Q.claim_execution, ctx.enrollment.id, ctx.seq, step.id, step.type, data, self.clock.now()
        )
        return row is not None

    async def finish(
        self, conn: asyncpg.Connection, enrollment: Enrollment, status: str, reason: str | None
    ) -> None:
        """Close the enrollment where it stands (completed, or ended for ``reason``)."""
        enrollment.status, enrollment.waiting_for, enrollment.timer_id = status, None, None
        enrollment.pause_reason, enrollment.ended_reason = None, reason
        await enrollment.save(conn)
        await self._audit(conn, enrollment, f"workflow_{status}", reason=reason)

    async def end(self, conn: asyncpg.Connection, enrollment: Enrollment, reason: str) -> None:
        """End a live enrollment (reply, opt-out, rejected approval) and drop its timer."""
        if enrollment.timer_id:
            await self.effects.timers.cancel(enrollment.timer_id)
        await self.finish(conn, enrollment, "ended", reason)

    async def _audit(
        self, conn: asyncpg.Connection, enrollment: Enrollment, action: str, **details: Any
    ) -> None:
        await audit(
            conn,
            service=SERVICE,
            action=action,
            thread=enrollment.thread,
            details={"enrollment_id": str(enrollment.id), "workflow": enrollment.workflow_key, **details},
        )
