"""The workflow engine: enrolls contacts and hands the rest to its parts.

Where things live (docs/scheduler.md has the map):

- registry.py: the loaded workflows, by version;
- enrollment.py: the typed enrollment row and its save;
- steps.py: one function per step type (``STEPS``), deciding without doing;
- effects.py: the effects a step asks for, and performing them;
- runner.py: runs an active enrollment's steps, one locked transaction each;
- waits.py: a delay's or reply timeout's timer fired, an approval decided;
- conversation.py: replies, opt-outs, pauses and resumes;
- outcomes.py: conversation outcomes (rule, optional LLM judge outside any lock).

Each step is one unit of the slice's event outbox (libs/event_outbox.py): the
events it publishes commit with its rows. Effects are idempotent across
redeliveries: published events carry ``wf:<enrollment>:<seq>`` as their dedup id, timers are named
``wf.<enrollment>.<seq>``, http calls send it as Idempotency-Key, and emails as
the Message-ID; every entry point resumes an enrollment left ``active``.

A ``send_sms`` with ``approval: required`` publishes ``draft.requested`` instead of
sending and waits (``waiting_for = approval``) like a delay waits for its timer: the
drafter runs the owner's YES/NO/EDIT loop, and its ``draft.approved`` (which the
sender delivers) moves the enrollment on, its ``draft.rejected`` ends it.
"""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import asyncpg
import structlog

from libs.db import audit
from libs.resources import Resources, UsesResources

from . import conversation, waits, webhook
from .clock import Clock
from .effects import Effects
from .emailer import Emailer
from .enrollment import LIVE
from .outcomes import OutcomeJudge
from .registry import Registry
from .runner import INTERRUPTED, SERVICE, Runner
from .settings import SchedulerSettings
from .store import Q, view_of
from .timers import TimerStore
from .workflow.conditions import evaluate
from .workflow.definition import Definition

__all__ = ["INTERRUPTED", "SERVICE", "Engine"]
log = structlog.get_logger("engine")


class Engine(UsesResources[SchedulerSettings]):
    def __init__(
        self,
        resources: Resources[SchedulerSettings],
        *,
        timers: TimerStore,
        clock: Clock,
        http: aiohttp.ClientSession,
        judge: OutcomeJudge | None = None,
        claims: asyncpg.Pool | None = None,
    ) -> None:
        #: Its bus for core NATS only (workflow_admin's change broadcast); events go
        #: through its outbox: rows and the events they mean commit together.
        self.resources = resources
        self.clock = clock
        self.registry = Registry(self.pool)
        effects = Effects(
            timers, Emailer(self.settings), http, webhook.Destinations(self.settings.http_step_allow)
        )
        self.runner = Runner(
            outbox=self.outbox,
            claims=claims or self.pool,
            registry=self.registry,
            effects=effects,
            clock=clock,
            judge=judge,
        )

    # --- workflows (registry.py) -------------------------------------------------

    @property
    def active(self) -> dict[str, Definition]:
        return self.registry.active

    @property
    def disabled(self) -> set[str]:
        return self.registry.disabled

    @disabled.setter
    def disabled(self, keys: set[str]) -> None:
        self.registry.disabled = keys

    async def register(self, definitions: list[Definition]) -> None:
        await self.registry.register(definitions)

    async def activate_stored(self) -> None:
        await self.registry.activate_stored()

    async def definition(self, key: str, version: int) -> Definition:
        return await self.registry.definition(key, version)

    # --- enrollment ----------------------------------------------------------------

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
        for definition in list(self.registry.active.values()):
            trigger = definition.workflow.trigger
            if trigger.type != trigger_type or definition.key in self.registry.disabled:
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
                created = await self._insert(conn, definition, thread, enrollment_id, event_id)
        if resume is not None:
            # An earlier delivery enrolled it and then failed mid-step: carry on.
            await self.runner.advance(resume)
        if not created:
            return None
        await self.runner.advance(enrollment_id)
        return str(enrollment_id)

    async def _insert(
        self,
        conn: asyncpg.Connection,
        definition: Definition,
        thread: str,
        enrollment_id: uuid.UUID,
        event_id: str,
    ) -> bool:
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
        if row is None:
            return False
        details = {
            "workflow": definition.key,
            "version": definition.version,
            "enrollment_id": str(enrollment_id),
            "event": event_id,
        }
        await audit(conn, service=SERVICE, action="workflow_enrolled", thread=thread, details=details)
        return True

    # --- running, waits and the conversation ---------------------------------------

    async def advance(self, enrollment_id: uuid.UUID | str) -> None:
        await self.runner.advance(enrollment_id)

    async def timer_fired(self, timer_id: str, kind: str, payload: dict[str, Any], late: bool) -> None:
        await waits.timer_fired(self.runner, timer_id, kind, payload, late)

    async def approval_decided(
        self, enrollment_id: uuid.UUID, request_id: str | None, *, approved: bool, output: dict[str, Any]
    ) -> None:
        await waits.approval_decided(self.runner, enrollment_id, request_id, approved=approved, output=output)

    async def lead_replied(self, thread: str, phone: str, body: str, event_id: str) -> None:
        await conversation.lead_replied(self.runner, thread, phone, body, event_id)

    async def opted_out(self, thread: str, phone: str, event_id: str) -> int:
        return await conversation.opted_out(self.runner, thread, phone, event_id)

    async def paused(self, thread: str, phone: str, *, paused: bool, actor: str, event_id: str) -> None:
        await conversation.paused(self.runner, thread, phone, paused=paused, actor=actor, event_id=event_id)
