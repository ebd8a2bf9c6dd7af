"""Wiring: the scheduler's handlers (handlers.py), the timer firing loop and the workflow engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from libs.db import audit, create_pool
from libs.service import Built, Clock, ServiceContext, ServiceSpec

from . import webhook, workflow_admin
from .clock import Clock as TimerClock
from .endpoints import endpoints
from .engine import Engine
from .handlers import SERVICE, Scheduler
from .outcomes import OutcomeJudge
from .settings import SchedulerSettings
from .timers import TimerStore
from .workflow.definition import load_directory

log = structlog.get_logger("scheduler")


async def build(ctx: ServiceContext[SchedulerSettings], clock: Clock) -> Built:
    """Tests pass a ManualClock (a ``Clock`` too) to drive time; they reach the timer
    store and the engine of a running instance through ``ctx.parts``."""
    settings = ctx.settings
    # Its own clock type: the firing loop also sleeps on it (a test's ManualClock
    # wakes it when time jumps); a plain callable only says what time it is.
    the_clock = clock if isinstance(clock, TimerClock) else TimerClock(clock)
    judge = OutcomeJudge(settings)
    ctx.stack.push_async_callback(judge.aclose)
    http = webhook.session(webhook.Destinations(settings.http_step_allow))
    ctx.stack.push_async_callback(http.close)
    # Execution rows committed ahead of a side effect: their own connections.
    claims = await create_pool(settings.database_url, min_size=1, max_size=2)
    ctx.stack.push_async_callback(claims.close)
    # The overdue hook is the Scheduler's, made below (it needs the timers itself).
    timers = TimerStore(ctx.bus, settings, the_clock)
    await timers.open()
    engine = Engine(
        ctx.resources,
        timers=timers,
        clock=the_clock,
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
    ctx.endpoints.extend(endpoints(engine))
    ctx.stack.push_async_callback((await workflow_admin.listen_for_changes(ctx.bus, engine)).unsubscribe)
    scheduler = Scheduler(ctx, engine, timers, judge)
    timers.on_overdue = scheduler.on_overdue
    ctx.spawn(timers.run(ctx.stop), "timers")

    async def timers_ready() -> bool:
        return timers.ready.is_set()

    ctx.checks["timers"] = timers_ready
    return Built(scheduler.handlers(), {"timers": timers, "engine": engine, "scheduler": scheduler})


MIGRATIONS = Path(__file__).parent / "migrations"
SPEC = ServiceSpec(SERVICE, SchedulerSettings, build, MIGRATIONS)
