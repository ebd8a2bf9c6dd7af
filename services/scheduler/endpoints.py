"""The scheduler's request/reply endpoints (libs/rpc.py), on the ``replyline-scheduler`` micro service.

Workflows: import, export and list here; dry run, enrollments and the on/off switches in
workflow_admin.py. Contact imports (stage, commit, abort) in contact_import.py. The owner
API on ingest and the CLI ask; replicas share each endpoint in one queue group.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import yaml

from libs import rpc

from . import contact_import
from . import workflow_admin as admin
from .engine import Engine
from .store import Q
from .workflow.definition import Definition, DefinitionError, load_text, slug


def render(definition: Definition, fmt: str) -> str:
    """The definition as YAML or JSON text (what export and the CLI write)."""
    data = definition.to_builtins()
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _source_name(request: rpc.ImportWorkflow) -> str:
    # parse() falls back to JSON only for a .json source: make the name match the format.
    name = request.source.strip() or "api"
    suffix = ".json" if request.format == "json" else ".yaml"
    return name if name.endswith((".json", ".yaml", ".yml")) else name + suffix


async def import_workflow(engine: Engine, request: rpc.ImportWorkflow) -> rpc.Imported:
    try:
        # Off the event loop: the text is untrusted (source.py bounds what parsing may cost).
        definition = await asyncio.to_thread(load_text, request.text, _source_name(request))
    except DefinitionError as err:
        issues = [{"source": i.source, "line": i.line, "reason": i.reason} for i in err.issues]
        raise rpc.Refused(400, rpc.INVALID, {"issues": issues}) from None
    # The same path as the files of workflows/ at start: the row and the active version.
    await engine.register([definition])
    return rpc.Imported(name=definition.name, key=definition.key, version=definition.version)


async def export_workflow(engine: Engine, request: rpc.ExportWorkflow) -> rpc.Exported:
    row = await engine.pool.fetchrow(Q.latest_definition, slug(request.name))
    if row is None:
        raise rpc.Refused(404, rpc.NOT_FOUND)
    definition = await asyncio.to_thread(
        load_text, json.dumps(row["definition"]), f"{row['source']} (stored)"
    )
    return rpc.Exported(text=render(definition, request.format))


async def list_workflows(engine: Engine, request: rpc.ListWorkflows) -> rpc.Workflows:
    rows = await engine.pool.fetch(Q.list_definitions)
    return rpc.Workflows(
        workflows=[
            rpc.WorkflowEntry(
                name=r["name"],
                key=r["workflow_key"],
                version=r["version"],
                active=r["workflow_key"] not in engine.disabled,
            )
            for r in rows
        ]
    )


def endpoints(engine: Engine) -> list[rpc.Served[Any, Any]]:
    """Every endpoint the scheduler answers, bound to ``engine``."""

    def bound(endpoint: rpc.Endpoint[Any, Any], call: Any) -> rpc.Served[Any, Any]:
        async def handler(request: Any) -> Any:
            return await call(engine, request)

        return rpc.serve(endpoint, handler)

    return [
        bound(rpc.WORKFLOW_IMPORT, import_workflow),
        bound(rpc.WORKFLOW_EXPORT, export_workflow),
        bound(rpc.WORKFLOW_LIST, list_workflows),
        bound(rpc.WORKFLOW_TEST, admin.dry_run),
        bound(rpc.WORKFLOW_ENROLLMENTS, admin.enrollments),
        bound(rpc.WORKFLOW_DEACTIVATE, admin.deactivate),
        bound(rpc.WORKFLOW_REACTIVATE, admin.reactivate),
        bound(rpc.CONTACTS_STAGE, contact_import.stage),
        bound(rpc.CONTACTS_COMMIT, contact_import.commit),
        bound(rpc.CONTACTS_ABORT, contact_import.abort),
    ]
