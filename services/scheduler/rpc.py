"""Workflow import/export over core NATS request/reply (the owner API on ingest asks).

``<prefix>rpc.scheduler.workflows.import`` ``{"text", "source", "format"}`` ->
``{"name", "version"}`` or ``{"error": "invalid", "issues": [{"source", "line", "reason"}]}``
``<prefix>rpc.scheduler.workflows.export`` ``{"name", "format"}`` -> ``{"text"}`` or
``{"error": "not_found"}``
``<prefix>rpc.scheduler.workflows.list`` ``{}`` -> ``{"workflows": [{"name", "key", "version", "active"}]}``
``test``, ``enrollments``, ``deactivate``, ``reactivate``: see workflow_admin.py.
Any other failure answers ``{"error": "..."}``. Replicas share the subjects in one queue group.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
import structlog
import yaml
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from libs.bus import Bus

from . import contact_import
from . import workflow_admin as admin
from .engine import Engine
from .store import Q
from .workflow.definition import Definition, DefinitionError, load_text, slug

log = structlog.get_logger("scheduler.rpc")

QUEUE_GROUP = "scheduler"
Format = Literal["yaml", "json"]


def rpc_subject(prefix: str, method: str) -> str:
    return f"{prefix}rpc.scheduler.workflows.{method}"


class ImportRequest(msgspec.Struct, frozen=True):
    text: str
    source: str = "api.yaml"
    format: Format = "yaml"


class ExportRequest(msgspec.Struct, frozen=True):
    name: str
    format: Format = "yaml"


class ListRequest(msgspec.Struct, frozen=True):
    pass


def render(definition: Definition, fmt: str) -> str:
    """The definition as YAML or JSON text (what export and the CLI write)."""
    data = definition.to_builtins()
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _source_name(request: ImportRequest) -> str:
    # parse() falls back to JSON only for a .json source: make the name match the format.
    name = request.source.strip() or "api"
    suffix = ".json" if request.format == "json" else ".yaml"
    return name if name.endswith((".json", ".yaml", ".yml")) else name + suffix


async def import_workflow(engine: Engine, request: ImportRequest) -> dict[str, Any]:
    try:
        # Off the event loop: the text is untrusted (source.py bounds what parsing may cost).
        definition = await asyncio.to_thread(load_text, request.text, _source_name(request))
    except DefinitionError as err:
        issues = [{"source": i.source, "line": i.line, "reason": i.reason} for i in err.issues]
        return {"error": "invalid", "issues": issues}
    # The same path as the files of workflows/ at start: the row and the active version.
    await engine.register([definition])
    return {"name": definition.name, "key": definition.key, "version": definition.version}


async def export_workflow(engine: Engine, request: ExportRequest) -> dict[str, Any]:
    row = await engine.pool.fetchrow(Q.latest_definition, slug(request.name))
    if row is None:
        return {"error": "not_found"}
    definition = await asyncio.to_thread(
        load_text, json.dumps(row["definition"]), f"{row['source']} (stored)"
    )
    return {"text": render(definition, request.format)}


async def list_workflows(engine: Engine, request: ListRequest) -> dict[str, Any]:
    rows = await engine.pool.fetch(Q.list_definitions)
    return {
        "workflows": [
            {
                "name": r["name"],
                "key": r["workflow_key"],
                "version": r["version"],
                "active": r["workflow_key"] not in engine.disabled,
            }
            for r in rows
        ]
    }


def _method(
    kind: type[Any], call: Callable[[Engine, Any], Awaitable[dict[str, Any]]]
) -> tuple[type[Any], Callable[[Engine, Any], Awaitable[dict[str, Any]]]]:
    return kind, call


METHODS = {
    "import": _method(ImportRequest, import_workflow),
    "export": _method(ExportRequest, export_workflow),
    "list": _method(ListRequest, list_workflows),
    # Dry run, enrollments and switches (services/scheduler/workflow_admin.py).
    "test": _method(admin.TestRequest, admin.dry_run),
    "enrollments": _method(admin.EnrollmentsRequest, admin.enrollments),
    "deactivate": _method(admin.SwitchRequest, admin.deactivate),
    "reactivate": _method(admin.SwitchRequest, admin.reactivate),
}

#: ``rpc.scheduler.contacts.<method>``: contact imports (services/scheduler/contact_import.py).
CONTACT_METHODS = {
    "stage": _method(contact_import.StageRequest, contact_import.stage),
    "commit": _method(contact_import.CommitRequest, contact_import.commit),
    "abort": _method(contact_import.AbortRequest, contact_import.abort),
}


async def serve_rpc(bus: Bus, engine: Engine) -> list[Subscription]:
    """Subscribe the responders; the caller unsubscribes them on shutdown."""
    subs = []
    for name, (kind, call) in METHODS.items():
        subs.append(
            await bus.nc.subscribe(
                rpc_subject(bus.prefix, name), queue=QUEUE_GROUP, cb=_responder(engine, name, kind, call)
            )
        )
    for name, (kind, call) in CONTACT_METHODS.items():
        subs.append(
            await bus.nc.subscribe(
                f"{bus.prefix}rpc.scheduler.contacts.{name}",
                queue=QUEUE_GROUP,
                cb=_responder(engine, f"contacts.{name}", kind, call),
            )
        )
    subs.append(await admin.listen_for_changes(bus, engine))
    # A request sent right after start must find the interest registered on the server.
    await bus.nc.flush()
    return subs


def _responder(
    engine: Engine,
    name: str,
    kind: type[Any],
    call: Callable[[Engine, Any], Awaitable[dict[str, Any]]],
) -> Callable[[Msg], Awaitable[None]]:
    async def respond(msg: Msg) -> None:
        try:
            request = msgspec.json.decode(msg.data or b"{}", type=kind)
            answer = await call(engine, request)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            answer = {"error": f"bad request: {exc}"}
        except Exception as exc:  # the caller must get an answer, not a timeout
            log.exception("rpc_failed", method=name)
            answer = {"error": f"scheduler failed: {type(exc).__name__}"}
        if msg.reply:
            await msg.respond(msgspec.json.encode(answer))

    return respond
