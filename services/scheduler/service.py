"""Wiring: the scheduler's handlers (handlers.py), the timer firing loop and the workflow engine."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from libs.consumer import Handler
from libs.db import audit, create_pool
from libs.events import Event
from libs.service import Build, ServiceContext

from . import webhook, workflow_admin
from .clock import Clock
from .emailer import Emailer
from .engine import Engine
from .handlers import SERVICE, Scheduler
from .outcomes import OutcomeJudge
from .rpc import serve_rpc
from .settings import SchedulerSettings
from .timers import Outcome, TimerRecord, TimerStore
from .workflow.definition import load_directory

log = structlog.get_logger("scheduler")


def make_build(clock: Clock | None = None, expose: dict[str, Any] | None = None) -> Build[SchedulerSettings]:
    """The service's ``build``; tests pass a ManualClock to drive time and ``expose``
    to reach the timer store and the engine of a running instance."""

    async def build(ctx: ServiceContext[SchedulerSettings]) -> Mapping[type[Event], Handler]:
        settings = ctx.settings
        the_clock = clock or Clock()
        judge = OutcomeJudge(settings)
        ctx.stack.push_async_callback(judge.aclose)
        http = webhook.session(webhook.Destinations(settings.http_step_allow))
        ctx.stack.push_async_callback(http.close)
        # Execution rows committed ahead of a side effect: their own connections.
        claims = await create_pool(settings.database_url, min_size=1, max_size=2)
        ctx.stack.push_async_callback(claims.close)
        holder: dict[str, Scheduler] = {}

        async def on_overdue(record: TimerRecord, outcome: Outcome, lateness: float) -> None:
            await holder["scheduler"].on_overdue(record, outcome, lateness)

        timers = TimerStore(ctx.bus, settings, the_clock, on_overdue=on_overdue)
        await timers.open()
        engine = Engine(
            pool=ctx.pool,
            bus=ctx.bus,
            timers=timers,
            settings=settings,
            clock=the_clock,
            emailer=Emailer(settings),
            http=http,
            judge=judge,
            claims=claims,
        )
        # Parsing is CPU work on untrusted text: keep it off the event loop.
        definitions, issues = await asyncio.to_thread(load_directory, settings.workflows_dir)
        for issue in issues:
            log.error("workflow_rejected", file=issue.source, line=issue.line, reason=issue.reason)
            await audit(
                ctx.pool,
                service=SERVICE,
                action="workflow_rejected",
                details={"file": issue.source, "line": issue.line, "reason": issue.reason},
            )
        await engine.register(definitions)
        await engine.activate_stored()
        await workflow_admin.retire_missing_files(engine, settings.workflows_dir, definitions)
        for sub in await serve_rpc(ctx.bus, engine):
            ctx.stack.push_async_callback(sub.unsubscribe)
        scheduler = holder["scheduler"] = Scheduler(ctx, engine, timers, judge)
        ctx.spawn(timers.run(ctx.stop), "timers")

        async def timers_ready() -> bool:
            return timers.ready.is_set()

        ctx.checks["timers"] = timers_ready
        if expose is not None:
            expose.update(timers=timers, engine=engine, scheduler=scheduler)
        return scheduler.handlers()

    return build


build = make_build()
MIGRATIONS = Path(__file__).parent / "migrations"
