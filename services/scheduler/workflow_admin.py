"""Workflow administration behind the owner API: dry run, enrollments, on/off switches.

Answered over NATS request/reply like import/export (services/scheduler/rpc.py):

``rpc.scheduler.workflows.test`` ``{"name", "contact", "start"}`` -> ``{"name", "version",
"timeline": [{"at", "offset", "step_id", "step_type", "summary"}], "text"}`` (the same
simulation and text as ``replyline workflows test``; nothing is sent or stored)
``rpc.scheduler.workflows.enrollments`` ``{"name", "status", "limit"}`` -> ``{"name",
"enrollments": [...]}``
``rpc.scheduler.workflows.deactivate`` / ``reactivate`` ``{"name", "by"}`` -> ``{"name",
"active"}``; each answers ``{"error": "not_found"}`` for an unknown workflow.

A switch is stored in ``workflow_switches`` and every replica hears of it on
``rpc.scheduler.workflows.changed`` (no queue group), so none keeps enrolling.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from libs.bus import Bus
from libs.db import audit

from .engine import SERVICE, Engine
from .store import Q
from .workflow.definition import Definition, load_text, slug
from .workflow.timeline import format_timeline, simulate

log = structlog.get_logger("scheduler.workflow_admin")

STATUSES = ("active", "waiting", "paused", "completed", "ended")
MAX_LIMIT = 1000
OWNER = "owner"
FILE_REMOVED = "source_file_removed"


class TestRequest(msgspec.Struct, frozen=True):
    name: str
    contact: dict[str, Any] = {}
    start: str | None = None


class EnrollmentsRequest(msgspec.Struct, frozen=True):
    name: str
    status: str | None = None
    limit: int = 200


class SwitchRequest(msgspec.Struct, frozen=True):
    name: str
    by: str = ""


def changed_subject(prefix: str) -> str:
    return f"{prefix}rpc.scheduler.workflows.changed"


async def _stored(engine: Engine, name: str) -> Definition | None:
    row = await engine.pool.fetchrow(Q.latest_definition, slug(name))
    if row is None:
        return None
    return load_text(json.dumps(row["definition"]), f"{row['source']} (stored)")


async def dry_run(engine: Engine, request: TestRequest) -> dict[str, Any]:
    definition = await _stored(engine, request.name)
    if definition is None:
        return {"error": "not_found"}
    try:
        start = datetime.fromisoformat(request.start) if request.start else engine.clock.now()
    except ValueError:
        return {"error": "invalid", "issues": [{"source": "start", "line": 0, "reason": "not an ISO time"}]}
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    entries = simulate(definition, dict(request.contact), start)
    return {
        "name": definition.name,
        "version": definition.version,
        "start": start.isoformat(),
        "timeline": [
            {
                "at": e.at.isoformat(),
                "offset_s": int((e.at - start).total_seconds()),
                "step_id": e.step_id,
                "step_type": e.step_type,
                "summary": e.summary,
            }
            for e in entries
        ],
        "text": format_timeline(entries, start),
    }


async def enrollments(engine: Engine, request: EnrollmentsRequest) -> dict[str, Any]:
    if request.status is not None and request.status not in STATUSES:
        reason = f"status must be one of {', '.join(STATUSES)}"
        return {"error": "invalid", "issues": [{"source": "status", "line": 0, "reason": reason}]}
    key = slug(request.name)
    if await engine.pool.fetchrow(Q.latest_definition, key) is None:
        return {"error": "not_found"}
    limit = max(1, min(request.limit, MAX_LIMIT))
    rows = await engine.pool.fetch(Q.enrollments_of_workflow, key, request.status, limit)
    return {
        "name": key,
        "active": key not in engine.disabled,
        "enrollments": [
            {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in dict(r).items()} for r in rows
        ],
    }


async def _switch(engine: Engine, request: SwitchRequest, enabled: bool) -> dict[str, Any]:
    key = slug(request.name)
    if await engine.pool.fetchrow(Q.latest_definition, key) is None:
        return {"error": "not_found"}
    async with engine.pool.acquire() as conn, conn.transaction():
        await conn.execute(Q.set_workflow_switch, key, enabled, OWNER, request.by)
        await audit(
            conn,
            service=SERVICE,
            action="workflow.reactivated" if enabled else "workflow.deactivated",
            actor="HUMAN",
            details={"workflow": key, "by": request.by, "reason": OWNER},
        )
    await load_switches(engine)
    log.info("workflow_switched", workflow=key, active=enabled, by=request.by)
    await engine.bus.nc.publish(changed_subject(engine.bus.prefix), key.encode())
    return {"name": key, "active": enabled}


async def deactivate(engine: Engine, request: SwitchRequest) -> dict[str, Any]:
    return await _switch(engine, request, False)


async def reactivate(engine: Engine, request: SwitchRequest) -> dict[str, Any]:
    return await _switch(engine, request, True)


async def load_switches(engine: Engine) -> None:
    rows = await engine.pool.fetch(Q.workflow_switches)
    engine.disabled = {r["workflow_key"] for r in rows if not r["enabled"]}


async def retire_missing_files(engine: Engine, directory: str, loaded: list[Definition]) -> list[str]:
    """At start-up: a stored workflow whose source file in ``directory`` is gone is switched
    off (it would otherwise keep enrolling unnoticed); one whose file is back is switched on
    again unless the owner switched it off. Workflows imported through the API (their source
    is not a file of ``directory``) are left alone. Returns the keys switched off."""
    from_files = {d.key for d in loaded}
    switches = {r["workflow_key"]: r for r in await engine.pool.fetch(Q.workflow_switches)}
    retired: list[str] = []
    for row in await engine.pool.fetch(Q.stored_sources):
        key, source = row["workflow_key"], row["source"]
        switch = switches.get(key)
        if key in from_files:
            if switch is not None and not switch["enabled"] and switch["reason"] == FILE_REMOVED:
                await _system_switch(engine, key, True, "workflow.reactivated", source)
                log.info("workflow_source_back", workflow=key, file=source)
            continue
        if not _file_gone(source, directory):
            continue
        if switch is not None and not switch["enabled"]:
            continue  # already off
        await _system_switch(engine, key, False, "workflow.deactivated", source)
        log.warning(
            "workflow_source_missing",
            workflow=key,
            version=row["version"],
            file=source,
            hint="its file was removed from the workflows folder: deactivated (running enrollments "
            "finish); put the file back or `replyline workflows reactivate` to enroll again",
        )
        retired.append(key)
    await load_switches(engine)
    return retired


def _file_gone(source: str, directory: str) -> bool:
    """True when ``source`` names a file of ``directory`` that no longer exists (start-up only,
    a few stat calls)."""
    if not source:
        return False
    path = Path(source)
    return path.resolve().parent == Path(directory).resolve() and not path.exists()


async def _system_switch(engine: Engine, key: str, enabled: bool, action: str, source: str) -> None:
    async with engine.pool.acquire() as conn, conn.transaction():
        await conn.execute(Q.set_workflow_switch, key, enabled, FILE_REMOVED, "start-up")
        await audit(
            conn,
            service=SERVICE,
            action=action,
            details={"workflow": key, "reason": FILE_REMOVED, "file": source},
        )


async def listen_for_changes(bus: Bus, engine: Engine) -> Subscription:
    """Every replica reloads the switches when one of them changed a switch."""

    async def on_change(msg: Msg) -> None:
        try:
            await load_switches(engine)
        except Exception:
            log.exception("workflow_switches_reload_failed")

    return await bus.nc.subscribe(changed_subject(bus.prefix), cb=on_change)


__all__ = [
    "EnrollmentsRequest",
    "SwitchRequest",
    "TestRequest",
    "deactivate",
    "dry_run",
    "enrollments",
    "listen_for_changes",
    "load_switches",
    "reactivate",
    "retire_missing_files",
]
