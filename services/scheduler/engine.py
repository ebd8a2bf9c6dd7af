"""The workflow engine: enrollments, step execution, waits, replies, pauses and opt-outs.

Each step runs in its own transaction holding the enrollment's row lock, and
is recorded in workflow_executions under the enrollment's next sequence
number. Effects are idempotent across redeliveries: published events carry
``wf:<enrollment>:<seq>`` as their dedup id, timers are named
``wf.<enrollment>.<seq>``, http calls send it as Idempotency-Key, and emails as
the Message-ID. A transient failure (SMTP down, database error) rolls the step
back and raises, so the consumer redelivers the event that drove the
enrollment; every entry point resumes an enrollment left ``active``.

A step that fails for good (a bad address, a blocked or broken webhook, lead
data the email library refuses, any other non-transient error) is recorded
(the execution's ``error`` and a ``workflow_step_failed`` audit row) and the
enrollment follows the step's ``on_error`` (a step, or ``end``: ended with
reason ``step_failed``); without one it goes on as if the step had succeeded.
Steps with an outside effect the bus cannot deduplicate (``http``,
``send_email``) first commit their execution row on their own connection; a
redelivery that finds that row still open does not repeat the effect (its
outcome is unknown) but records the step as failed.

A ``send_sms`` with ``approval: required`` publishes ``draft.requested`` instead of
sending and waits (``waiting_for = approval``) like a delay waits for its timer: the
drafter runs the owner's YES/NO/EDIT loop, and its ``draft.approved`` (which the
sender delivers) moves the enrollment on, its ``draft.rejected`` ends it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aiosmtplib
import asyncpg
import nats.errors
import structlog

from libs.bus import Bus
from libs.db import audit
from libs.events import ContactTagged, ContactUpdated, DraftRequested, OutboundRequested

from . import webhook
from .clock import Clock
from .emailer import Emailer, EmailError, single_address
from .outcomes import OutcomeJudge, record_outcome
from .settings import SchedulerSettings
from .store import Q, set_field, view_of
from .timers import TimerStore
from .workflow.conditions import evaluate
from .workflow.definition import Definition, DefinitionError, load_text
from .workflow.durations import delay_end, timeout_end
from .workflow.model import (
    END,
    AbSplitConfig,
    ConditionConfig,
    DelayConfig,
    EndConfig,
    HttpConfig,
    SendEmailConfig,
    SendSmsConfig,
    Step,
    StepConfig,
    TagConfig,
    UpdateFieldConfig,
    WaitForReplyConfig,
    sms_text,
)
from .workflow.template import render, render_url, render_value
from .workflow.timeline import ab_variant

log = structlog.get_logger("engine")
SERVICE = "scheduler"
LIVE = ("active", "waiting", "paused")
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


@dataclass
class StepResult:
    next_step: str | None  # None: stay on this step
    status: str = "active"
    waiting_for: str | None = None
    timer_id: str | None = None
    pause_reason: str | None = None
    ended_reason: str | None = None
    input: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] | None = None
    error: str | None = None
    completed: bool = True  # False while a delay or a wait is pending
    executed: bool = True  # False when the step was held (paused) without running
    outcome: str | None = None
    replied: bool | None = None  # new value of the enrollment's replied flag


class Engine:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        bus: Bus,
        timers: TimerStore,
        settings: SchedulerSettings,
        clock: Clock,
        emailer: Emailer,
        http: aiohttp.ClientSession,
        judge: OutcomeJudge | None = None,
        claims: asyncpg.Pool | None = None,
    ) -> None:
        self.pool = pool
        #: Connections for execution rows committed before a side effect, apart from the
        #: step's own transaction (a separate pool, so steps cannot starve it).
        self.claims = claims or pool
        self.destinations = webhook.Destinations(settings.http_step_allow)
        self.bus = bus
        self.timers = timers
        self.settings = settings
        self.clock = clock
        self.emailer = emailer
        self.http = http
        self.judge = judge
        self._definitions: dict[tuple[str, int], Definition] = {}
        #: The definition each workflow enrolls new contacts in (highest loaded version).
        self.active: dict[str, Definition] = {}
        #: Workflows switched off (workflow_switches): they enroll nobody new; running
        #: enrollments finish on their pinned version. Kept by workflow_admin.py.
        self.disabled: set[str] = set()

    # --- definitions -----------------------------------------------------------

    async def register(self, definitions: list[Definition]) -> None:
        for definition in definitions:
            await self.pool.execute(
                Q.upsert_definition,
                definition.key,
                definition.version,
                definition.name,
                definition.workflow.trigger.type,
                definition.to_builtins(),
                definition.source,
            )
            self._definitions[(definition.key, definition.version)] = definition
            current = self.active.get(definition.key)
            if current is None or current.version < definition.version:
                self.active[definition.key] = definition
            log.info("workflow_loaded", workflow=definition.key, version=definition.version)

    async def activate_stored(self) -> None:
        """Enroll in every stored workflow too, not only the files loaded at start.

        workflow_definitions is the source of truth: a workflow imported through
        the API stays active across restarts and on every replica.
        """
        for row in await self.pool.fetch(Q.list_definitions):
            current = self.active.get(row["workflow_key"])
            if current is not None and current.version >= row["version"]:
                continue
            try:
                definition = await self.definition(row["workflow_key"], row["version"])
            except LookupError as err:
                log.error("stored_workflow_unreadable", workflow=row["workflow_key"], error=str(err))
                continue
            self.active[definition.key] = definition
            log.info("workflow_loaded", workflow=definition.key, version=definition.version, stored=True)

    async def definition(self, key: str, version: int) -> Definition:
        """The version an enrollment pinned, from memory or from workflow_definitions."""
        cached = self._definitions.get((key, version))
        if cached is not None:
            return cached
        row = await self.pool.fetchrow(Q.get_definition, key, version)
        if row is None:
            raise LookupError(f"workflow {key} v{version} is not in workflow_definitions")
        try:
            definition = load_text(json.dumps(row["definition"]), f"{row['source']} (stored)")
        except DefinitionError as err:
            raise LookupError(str(err)) from err
        self._definitions[(key, version)] = definition
        return definition

    # --- enrollment --------------------------------------------------------------

    async def trigger(
        self, trigger_type: str, thread: str, *, context: dict[str, Any], event_id: str
    ) -> list[str]:
        """Enroll the contact in every workflow whose trigger matches; returns enrollment ids."""
        contact = await self.pool.fetchrow(Q.get_contact, thread)
        if contact is None or contact["opted_out"]:
            return []
        view = view_of(contact, context)
        enrolled = []
        errors: list[Exception] = []
        for definition in list(self.active.values()):
            trigger = definition.workflow.trigger
            if trigger.type != trigger_type or definition.key in self.disabled:
                continue
            if not all(evaluate(c.field, c.operator, c.value, view) for c in trigger.conditions):
                continue
            try:
                enrollment_id = await self.enroll(definition, thread, event_id=event_id)
            except Exception as err:
                # One workflow's trouble must not keep the others from enrolling; the
                # redelivery resumes this one (its enrollment is found by event id).
                log.exception("enroll_failed", workflow=definition.key, thread=thread)
                errors.append(err)
                continue
            if enrollment_id is not None:
                enrolled.append(enrollment_id)
        if errors:
            raise errors[0]
        return enrolled

    async def enroll(self, definition: Definition, thread: str, *, event_id: str) -> str | None:
        """Start ``definition`` for a contact, unless it is (or was) already enrolled."""
        # Derived from the triggering event, so a redelivered event finds its own enrollment.
        enrollment_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{definition.key}:{thread}:{event_id}")
        created = False
        resume = None
        async with self.pool.acquire() as conn, conn.transaction():
            existing = await conn.fetchrow(Q.any_enrollment, definition.key, thread)
            if existing is not None and (
                existing["status"] in LIVE or not definition.workflow.allow_reenroll
            ):
                log.info("enrollment_exists", workflow=definition.key, thread=thread)
                if existing["status"] == "active":
                    resume = existing["id"]
            else:
                try:
                    async with conn.transaction():  # a savepoint: the outer one survives a conflict
                        row = await conn.fetchrow(
                            Q.insert_enrollment,
                            enrollment_id,
                            definition.key,
                            definition.version,
                            thread,
                            definition.first_step,
                            event_id,
                        )
                except asyncpg.UniqueViolationError:
                    row = None  # this very event enrolled it before (allow_reenroll)
                if row is not None:
                    created = True
                    await audit(
                        conn,
                        service=SERVICE,
                        action="workflow_enrolled",
                        thread=thread,
                        details={
                            "workflow": definition.key,
                            "version": definition.version,
                            "enrollment_id": str(enrollment_id),
                            "event": event_id,
                        },
                    )
        if resume is not None:
            # An earlier delivery enrolled it and then failed mid-step: carry on.
            await self.advance(resume)
        if not created:
            return None
        await self.advance(enrollment_id)
        return str(enrollment_id)

    # --- running steps -------------------------------------------------------------

    async def advance(self, enrollment_id: uuid.UUID | str) -> None:
        """Run steps of an active enrollment until it waits, pauses or finishes."""
        for _ in range(MAX_STEPS_PER_RUN):
            async with self.pool.acquire() as conn, conn.transaction():
                enrollment = await conn.fetchrow(Q.lock_enrollment, _uuid(enrollment_id))
                if enrollment is None or enrollment["status"] != "active":
                    return
                if not await self._run_current(conn, enrollment):
                    return
        log.error("advance_step_limit", enrollment_id=str(enrollment_id))

    async def _run_current(self, conn: asyncpg.Connection, enrollment: asyncpg.Record) -> bool:
        """Run one step under the row lock; True when the enrollment is still active."""
        definition = await self.definition(enrollment["workflow_key"], enrollment["workflow_version"])
        step_id = enrollment["current_step"]
        contact = await conn.fetchrow(Q.get_contact, enrollment["thread"])
        if step_id in (None, END):
            await self._finish(conn, enrollment, "completed", None)
            return False
        if contact is None or contact["opted_out"]:
            await self._finish(conn, enrollment, "ended", "opt_out")
            return False
        if step_id not in definition.steps:
            # The file was edited without bumping its version: never guess where to go.
            log.error("enrollment_step_missing", enrollment_id=str(enrollment["id"]), step=step_id)
            await self._finish(conn, enrollment, "ended", f"step {step_id!r} no longer exists")
            return False
        step = definition.steps[step_id]
        config = definition.configs[step_id]
        seq = enrollment["step_seq"] + 1
        started = self.clock.now()
        try:
            async with conn.transaction():  # a savepoint: a failed step leaves no half-done writes
                result = await self._execute(conn, enrollment, definition, step, config, contact, seq)
        except TRANSIENT:
            raise
        except Exception as err:
            log.exception("workflow_step_crashed", enrollment_id=str(enrollment["id"]), step=step_id)
            result = StepResult(definition.next_of(step.id), error=f"{type(err).__name__}: {err}")
        if result.error is not None:
            await self._failed(conn, enrollment, step, result)
        if result.executed:
            await conn.execute(
                Q.insert_execution,
                enrollment["id"],
                seq,
                step.id,
                step.type,
                result.input,
                result.output,
                result.error,
                False,
                started,
                self.clock.now() if result.completed else None,
            )
        next_step = step_id if result.next_step is None else result.next_step
        status = result.status
        if status == "active" and next_step == END:
            status = "completed"
        await conn.execute(
            Q.update_enrollment,
            enrollment["id"],
            status,
            next_step,
            result.waiting_for,
            result.timer_id,
            seq if result.executed else enrollment["step_seq"],
            enrollment["replied"] if result.replied is None else result.replied,
            result.pause_reason,
            result.ended_reason,
        )
        if status != "active":
            await audit(
                conn,
                service=SERVICE,
                action=f"workflow_{status}",
                thread=enrollment["thread"],
                details={
                    "enrollment_id": str(enrollment["id"]),
                    "workflow": enrollment["workflow_key"],
                    "step": step_id,
                    "reason": result.pause_reason or result.ended_reason or result.waiting_for,
                },
            )
        if result.outcome is not None:
            await record_outcome(
                conn,
                self.judge,
                thread=enrollment["thread"],
                outcome=result.outcome,
                reason="goal_reached" if result.outcome == "success" else "workflow_end",
                source_event=f"wf:{enrollment['id']}:{seq}",
                contact=view_of(contact),
                details={"workflow": enrollment["workflow_key"], "step": step_id},
            )
        return status == "active"

    async def _failed(
        self, conn: asyncpg.Connection, enrollment: asyncpg.Record, step: Step, result: StepResult
    ) -> None:
        """Record a failed step and point ``result`` at the step's failure path."""
        if step.on_error == END or (step.on_error is None and step.branches is not None):
            # A branching step that fails has no "as if it succeeded": end it too.
            result.next_step, result.status, result.ended_reason = step.id, "ended", "step_failed"
        elif step.on_error is not None:
            result.next_step = step.on_error
        await audit(
            conn,
            service=SERVICE,
            action="workflow_step_failed",
            thread=enrollment["thread"],
            details={
                "enrollment_id": str(enrollment["id"]),
                "workflow": enrollment["workflow_key"],
                "step": step.id,
                "error": result.error,
                "next": result.next_step if result.status == "active" else None,
            },
        )

    async def _claim(self, enrollment: asyncpg.Record, step: Step, seq: int, data: dict[str, Any]) -> bool:
        """Commit this execution's row before its side effect; False when a previous
        delivery already did (it may have had the effect: do not repeat it)."""
        row = await self.claims.fetchval(
            Q.claim_execution, enrollment["id"], seq, step.id, step.type, data, self.clock.now()
        )
        return row is not None

    async def _release(self, enrollment: asyncpg.Record, seq: int) -> None:
        """The effect certainly did not happen (SMTP refused the connection...): let a redelivery run it."""
        await self.claims.execute(Q.release_execution, enrollment["id"], seq)

    async def _execute(
        self,
        conn: asyncpg.Connection,
        enrollment: asyncpg.Record,
        definition: Definition,
        step: Step,
        config: StepConfig,
        contact: asyncpg.Record,
        seq: int,
    ) -> StepResult:
        key = f"wf:{enrollment['id']}:{seq}"
        thread = enrollment["thread"]
        view = view_of(contact)
        following = definition.next_of(step.id) if step.branches is None else END
        now = self.clock.now()

        if isinstance(config, SendSmsConfig):
            if contact["paused"]:
                return StepResult(None, "paused", pause_reason="thread_paused", executed=False)
            if enrollment["replied"] and definition.workflow.on_reply == "pause":
                return StepResult(None, "paused", pause_reason="lead_replied", executed=False)
            body = render(sms_text(config.body, view.get("language")), view)
            if config.approval == "required":
                # The drafter owns the owner's approval loop; the draft it creates
                # carries this request id back in draft.approved / draft.rejected.
                await self.bus.publish(
                    DraftRequested(
                        thread=thread,
                        request_id=key,
                        to_number=contact["phone"],
                        body=body,
                        workflow_enrollment_id=str(enrollment["id"]),
                        step_id=step.id,
                    )
                )
                return StepResult(
                    None,
                    "waiting",
                    waiting_for="approval",
                    input={"body": body, "request_id": key},
                    completed=False,
                )
            await self.bus.publish(
                OutboundRequested(
                    thread=thread,
                    request_id=key,
                    to_number=contact["phone"],
                    body=body,
                    kind="workflow",
                    media_urls=tuple(config.media_urls),
                    workflow_enrollment_id=str(enrollment["id"]),
                )
            )
            return StepResult(following, input={"body": body}, output={"request_id": key})

        if isinstance(config, SendEmailConfig):
            return await self._send_email(config, view, key, following, enrollment, step, seq)

        if isinstance(config, DelayConfig | WaitForReplyConfig):
            waiting_reply = isinstance(config, WaitForReplyConfig)
            fire_at = (
                timeout_end(config, now)
                if isinstance(config, WaitForReplyConfig)
                else (delay_end(config, now))
            )
            timer_id = f"wf.{enrollment['id']}.{seq}"
            await self.timers.set(
                timer_id,
                "reply_timeout" if waiting_reply else "workflow_delay",
                fire_at,
                thread=thread,
                payload={"enrollment_id": str(enrollment["id"]), "seq": seq, "step_id": step.id},
            )
            return StepResult(
                None,
                "waiting",
                waiting_for="reply" if waiting_reply else "delay",
                timer_id=timer_id,
                input={"fire_at": fire_at.isoformat()},
                completed=False,
                # A reply before the wait does not count as the answer, nor pause later SMS.
                replied=False if waiting_reply else None,
            )

        if isinstance(config, ConditionConfig):
            assert step.branches is not None
            result = evaluate(config.field, config.operator, config.value, view)
            branch = "true" if result else "false"
            return StepResult(
                step.branches[branch],
                input={"value": view.get(config.field)},
                output={"result": result, "branch": branch},
            )

        if isinstance(config, AbSplitConfig):
            assert step.branches is not None
            variant = ab_variant(config.weights, definition.key, step.id, thread)
            return StepResult(step.branches[variant], output={"variant": variant})

        if isinstance(config, TagConfig):
            added = step.type == "add_tag"
            await conn.execute(Q.add_tag if added else Q.remove_tag, thread, config.tag)
            await self.bus.publish(
                ContactTagged(thread=thread, number=contact["phone"], tag_name=config.tag, added=added),
                msg_id=key,
            )
            return StepResult(following, output={"tag": config.tag, "added": added})

        if isinstance(config, UpdateFieldConfig):
            value = render_value(config.value, view)
            await set_field(conn, thread, config.field, value)
            await self.bus.publish(
                ContactUpdated(thread=thread, number=contact["phone"], field=config.field, value=value),
                msg_id=key,
            )
            return StepResult(following, output={"field": config.field, "value": value})

        if isinstance(config, HttpConfig):
            url = render_url(config.url, view)
            if not await self._claim(enrollment, step, seq, {"url": url}):
                return StepResult(following, input={"url": url}, error=INTERRUPTED)
            try:
                output = await webhook.call(
                    self.http,
                    method=config.method,
                    url=url,
                    headers=config.headers,
                    body=render_value(config.body, view),
                    timeout_s=config.timeout,
                    retries=config.retries,
                    idempotency_key=key,
                    destinations=self.destinations,
                )
            except webhook.WebhookError as err:
                # Recorded, and the step's failure path taken: a dead webhook must not stall the sequence.
                return StepResult(following, input={"url": url}, error=str(err))
            return StepResult(following, input={"url": url}, output=output)

        if isinstance(config, EndConfig):
            return StepResult(END, output={"outcome": config.outcome}, outcome=config.outcome)

        raise AssertionError(f"no executor for {step.type}")

    async def _send_email(
        self,
        config: SendEmailConfig,
        view: dict[str, Any],
        key: str,
        following: str,
        enrollment: asyncpg.Record,
        step: Step,
        seq: int,
    ) -> StepResult:
        data: dict[str, Any] = {"template": config.template}
        try:
            if config.template is not None:
                template = self.emailer.template(config.template)
                subject, body = template.subject, template.body
            else:
                subject, body = config.subject or "", config.body or ""
            to = single_address(render(config.to, view))
        except EmailError as err:
            # Nothing to retry (no address, no template): a failed step.
            return StepResult(following, input=data, error=str(err))
        data["to"] = to
        if not await self._claim(enrollment, step, seq, data):
            return StepResult(following, input=data, error=INTERRUPTED)
        try:
            output = await self.emailer.send(
                to=to, subject=render(subject, view), body=render(body, view), message_key=key
            )
        except EmailError as err:
            return StepResult(following, input=data, error=str(err))
        except Exception:
            # Not sent (SMTP down, refused): a redelivery may try again.
            await self._release(enrollment, seq)
            raise
        return StepResult(following, input=data, output=output)

    async def _finish(
        self, conn: asyncpg.Connection, enrollment: asyncpg.Record, status: str, reason: str | None
    ) -> None:
        await conn.execute(
            Q.update_enrollment,
            enrollment["id"],
            status,
            enrollment["current_step"],
            None,
            None,
            enrollment["step_seq"],
            enrollment["replied"],
            None,
            reason,
        )
        await audit(
            conn,
            service=SERVICE,
            action=f"workflow_{status}",
            thread=enrollment["thread"],
            details={
                "enrollment_id": str(enrollment["id"]),
                "reason": reason,
                "workflow": enrollment["workflow_key"],
            },
        )

    # --- waits ends ----------------------------------------------------------------

    async def timer_fired(self, timer_id: str, kind: str, payload: dict[str, Any], late: bool) -> None:
        """A delay or reply timeout ended: take the next step (or the timeout branch)."""
        enrollment_id = payload.get("enrollment_id")
        if not enrollment_id:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            enrollment = await conn.fetchrow(Q.lock_enrollment, _uuid(enrollment_id))
            if enrollment is None:
                return
            if enrollment["timer_id"] != timer_id:
                # Already moved on (a redelivery, or a reply beat the timeout).
                resume = enrollment["status"] == "active"
            else:
                definition = await self.definition(enrollment["workflow_key"], enrollment["workflow_version"])
                step = definition.steps.get(enrollment["current_step"])
                output: dict[str, Any] = {"fired_at": self.clock.now().isoformat(), "late": late}
                if step is None:
                    next_step = enrollment["current_step"]  # advance() ends it with the reason
                elif kind == "reply_timeout" and step.branches is not None:
                    next_step = step.branches["timeout"]
                    output["branch"] = "timeout"
                else:
                    next_step = definition.next_of(step.id)
                resume = await self._finish_wait(
                    conn, enrollment, int(payload["seq"]), output, late=late, next_step=next_step
                )
        if resume:
            await self.advance(enrollment_id)

    async def approval_decided(
        self,
        enrollment_id: uuid.UUID,
        request_id: str | None,
        *,
        approved: bool,
        output: dict[str, Any],
    ) -> None:
        """The owner approved (the drafter published draft.approved; the sender sends it)
        or rejected the message an approval-required ``send_sms`` asked for."""
        resume = False
        async with self.pool.acquire() as conn, conn.transaction():
            enrollment = await conn.fetchrow(Q.lock_enrollment, enrollment_id)
            if enrollment is None:
                return
            expected = f"wf:{enrollment['id']}:{enrollment['step_seq']}"
            if enrollment["waiting_for"] != "approval" or (request_id and request_id != expected):
                # A redelivery, or a decision on a request this enrollment has moved past
                # (it ended on a reply or an opt-out meanwhile): nothing to do here.
                log.info("approval_ignored", enrollment_id=str(enrollment_id), request_id=request_id)
                resume = enrollment["status"] == "active"
            elif not approved:
                await conn.execute(
                    Q.complete_execution,
                    enrollment["id"],
                    enrollment["step_seq"],
                    output,
                    False,
                    self.clock.now(),
                )
                await self._end(conn, enrollment, "approval_rejected")
            else:
                definition = await self.definition(enrollment["workflow_key"], enrollment["workflow_version"])
                step = definition.steps.get(enrollment["current_step"])
                # A vanished step stays put: advance() ends the enrollment with the reason.
                next_step = enrollment["current_step"] if step is None else definition.next_of(step.id)
                resume = await self._finish_wait(
                    conn, enrollment, enrollment["step_seq"], output, late=False, next_step=next_step
                )
        if resume:
            await self.advance(enrollment_id)

    async def _finish_wait(
        self,
        conn: asyncpg.Connection,
        enrollment: asyncpg.Record,
        seq: int,
        output: dict[str, Any],
        *,
        late: bool,
        next_step: str,
    ) -> bool:
        """Close the waiting step's execution and point the enrollment at ``next_step``.

        Returns whether the enrollment should run on now; one paused by a human
        meanwhile stays paused, one step further.
        """
        await conn.execute(Q.complete_execution, enrollment["id"], seq, output, late, self.clock.now())
        status = "active" if enrollment["status"] == "waiting" else enrollment["status"]
        await conn.execute(
            Q.update_enrollment,
            enrollment["id"],
            status,
            next_step,
            None,
            None,
            enrollment["step_seq"],
            enrollment["replied"],
            enrollment["pause_reason"],
            enrollment["ended_reason"],
        )
        return bool(status == "active")

    # --- conversation events -------------------------------------------------------

    async def lead_replied(self, thread: str, phone: str, body: str, event_id: str) -> None:
        """An inbound message from the lead: wait_for_reply steps take their replied branch;
        other enrollments pause, continue or end by their workflow's ``on_reply``."""
        now = self.clock.now()
        resume: list[Any] = []
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(Q.ensure_contact, thread, phone)
            await conn.execute(Q.record_reply, thread, body, now)
            for enrollment in await conn.fetch(Q.live_enrollments_of_thread, thread):
                definition = await self.definition(enrollment["workflow_key"], enrollment["workflow_version"])
                if enrollment["waiting_for"] == "reply":
                    step = definition.steps.get(enrollment["current_step"])
                    if step is None or step.branches is None:
                        continue
                    if enrollment["timer_id"]:
                        await self.timers.cancel(enrollment["timer_id"])
                    await conn.execute(
                        Q.complete_execution,
                        enrollment["id"],
                        enrollment["step_seq"],
                        {"branch": "replied", "reply": body},
                        False,
                        now,
                    )
                    status = "active" if enrollment["status"] == "waiting" else "paused"
                    await conn.execute(
                        Q.update_enrollment,
                        enrollment["id"],
                        status,
                        step.branches["replied"],
                        None,
                        None,
                        enrollment["step_seq"],
                        False,
                        enrollment["pause_reason"],
                        None,
                    )
                    if status == "active":
                        resume.append(enrollment["id"])
                elif definition.workflow.on_reply == "end":
                    await self._end(conn, enrollment, "lead_replied")
                elif definition.workflow.on_reply == "pause" and not enrollment["replied"]:
                    await conn.execute(
                        Q.update_enrollment,
                        enrollment["id"],
                        enrollment["status"],
                        enrollment["current_step"],
                        enrollment["waiting_for"],
                        enrollment["timer_id"],
                        enrollment["step_seq"],
                        True,
                        enrollment["pause_reason"],
                        None,
                    )
        for enrollment_id in resume:
            await self.advance(enrollment_id)

    async def opted_out(self, thread: str, phone: str, event_id: str) -> int:
        """STOP: end every live enrollment of the thread; returns how many."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(Q.ensure_contact, thread, phone)
            await conn.execute(Q.set_opted_out, thread, True)
            enrollments = await conn.fetch(Q.live_enrollments_of_thread, thread)
            for enrollment in enrollments:
                await self._end(conn, enrollment, "opt_out")
            contact = await conn.fetchrow(Q.get_contact, thread)
            await record_outcome(
                conn,
                self.judge,
                thread=thread,
                outcome="discarded",
                reason="opt_out",
                source_event=event_id,
                contact=view_of(contact),
                details={"enrollments_ended": len(enrollments)},
            )
        return len(enrollments)

    async def paused(self, thread: str, phone: str, *, paused: bool, actor: str, event_id: str) -> None:
        """A human paused (took over) or resumed a thread."""
        resume: list[Any] = []
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(Q.ensure_contact, thread, phone)
            await conn.execute(Q.set_paused, thread, paused)
            for enrollment in await conn.fetch(Q.live_enrollments_of_thread, thread):
                waiting_for = enrollment["waiting_for"]
                if paused and enrollment["status"] != "paused":
                    status, reason = "paused", "human"
                elif not paused and enrollment["status"] == "paused":
                    # A resume never stands in for the owner's approval: an enrollment
                    # waiting for one keeps waiting for the drafter's decision.
                    if enrollment["pause_reason"] == "approval_required":
                        # Held by an older release, which sent nothing to the drafter:
                        # run the step again, so it asks the drafter now.
                        waiting_for = None
                    waiting = waiting_for in ("delay", "reply", "approval")
                    status, reason = ("waiting" if waiting else "active"), None
                    if status == "active":
                        resume.append(enrollment["id"])
                else:
                    continue
                await conn.execute(
                    Q.update_enrollment,
                    enrollment["id"],
                    status,
                    enrollment["current_step"],
                    waiting_for,
                    enrollment["timer_id"],
                    enrollment["step_seq"],
                    False if not paused else enrollment["replied"],
                    reason,
                    None,
                )
            if paused:
                contact = await conn.fetchrow(Q.get_contact, thread)
                await record_outcome(
                    conn,
                    self.judge,
                    thread=thread,
                    outcome="escalated",
                    reason="escalation",
                    source_event=event_id,
                    contact=view_of(contact),
                    details={"actor": actor},
                )
        for enrollment_id in resume:
            await self.advance(enrollment_id)

    async def _end(self, conn: asyncpg.Connection, enrollment: asyncpg.Record, reason: str) -> None:
        if enrollment["timer_id"]:
            await self.timers.cancel(enrollment["timer_id"])
        await self._finish(conn, enrollment, "ended", reason)


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
