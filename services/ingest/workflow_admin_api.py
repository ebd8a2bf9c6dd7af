"""Owner API for stored workflows: import, list, export, dry run, enrollments, on/off.

All answered by the scheduler's request/reply endpoints (libs/rpc.py; services/scheduler/workflow_admin.py):

* ``POST /api/workflows`` (YAML or JSON body), ``GET /api/workflows``,
  ``GET /api/workflows/{name}?format=yaml|json``: import, list, export;
* ``POST /api/workflows/{name}/test`` ``{"contact": {...}, "start": "<ISO>"}`` -> the
  timeline ``replyline workflows test`` prints (``timeline`` rows and the same ``text``);
* ``GET /api/workflows/{name}/enrollments?status=waiting&limit=200`` -> contacts enrolled,
  with status and current step, newest first;
* ``POST /api/workflows/{name}/deactivate`` / ``reactivate`` -> ``{"name", "active"}``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import structlog
from aiohttp import web

from libs import rpc
from services.ingest.api import ask, json_body
from services.ingest.http_common import DEPS_KEY, Unavailable, authenticate, json_error
from services.ingest.twilio_payload import PayloadError

log = structlog.get_logger("ingest")


async def test_workflow(request: web.Request) -> web.Response:
    await authenticate(request, "admin")
    name = request.match_info["name"]
    body = await json_body(request)
    contact = body.get("contact", {})
    start = body.get("start")
    if not isinstance(contact, dict):
        raise PayloadError("contact must be a JSON object")
    if start is not None and not isinstance(start, str):
        raise PayloadError("start must be an ISO time string")
    try:
        data = await ask_scheduler(
            request, rpc.WORKFLOW_TEST, rpc.TestWorkflow(name=name, contact=contact, start=start)
        )
    except rpc.Refused as refused:
        return refused_response(name, refused)
    return as_json(data)


async def list_enrollments(request: web.Request) -> web.Response:
    await authenticate(request, "admin")
    name = request.match_info["name"]
    try:
        limit = int(request.query.get("limit", "200"))
    except ValueError:
        raise PayloadError("limit must be a number") from None
    payload = rpc.ListEnrollments(name=name, status=request.query.get("status") or None, limit=limit)
    try:
        data = await ask_scheduler(request, rpc.WORKFLOW_ENROLLMENTS, payload)
    except rpc.Refused as refused:
        return refused_response(name, refused)
    return as_json(data)


def _switch(method: str, endpoint: rpc.Endpoint[rpc.SwitchWorkflow, rpc.Switched]) -> Any:
    async def handler(request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        name = request.match_info["name"]
        try:
            data = await ask_scheduler(request, endpoint, rpc.SwitchWorkflow(name=name, by=principal.name))
        except rpc.Refused as refused:
            return refused_response(name, refused)
        try:
            details = {"token": principal.name, "name": data.name}
            await request.app[DEPS_KEY].audit(f"workflow.{method}d", None, "HUMAN", details)
        except Exception:
            log.exception("api_audit_failed", action=f"workflow.{method}d")
        return as_json(data)

    return handler


_YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})


async def ask_scheduler(
    request: web.Request, endpoint: rpc.Endpoint[rpc.Req, rpc.Resp], payload: rpc.Req
) -> rpc.Resp:
    client = request.app[DEPS_KEY].scheduler
    if client is None:
        raise Unavailable("no scheduler API is configured")
    return await ask(client, endpoint, payload)


def refused_response(name: str, refused: rpc.Refused) -> web.Response:
    """A workflow endpoint's declared refusal as the API's 404 / 400 answer."""
    if refused.reason == rpc.NOT_FOUND:
        return json_error(404, f"no workflow named {name!r}")
    return json_error(400, "invalid", issues=refused.details.get("issues", []))


def as_json(answer: msgspec.Struct) -> web.Response:
    return web.json_response(msgspec.to_builtins(answer))


def _workflow_format(raw: str) -> Literal["yaml", "json"]:
    if raw not in ("yaml", "json"):
        raise PayloadError("format must be yaml or json")
    return "json" if raw == "json" else "yaml"


async def import_workflow(request: web.Request) -> web.Response:
    principal = await authenticate(request, "admin")
    fmt: rpc.Format
    if request.content_type == "application/json":
        fmt = "json"
    elif request.content_type in _YAML_TYPES:
        fmt = "yaml"
    else:
        raise PayloadError(
            f"Content-Type must be application/json or application/yaml, got {request.content_type or 'none'}"
        )
    try:
        text = (await request.read()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not UTF-8: {exc}") from None
    source = request.query.get("source") or f"api.{fmt}"
    try:
        data = await ask_scheduler(
            request, rpc.WORKFLOW_IMPORT, rpc.ImportWorkflow(text=text, source=source, format=fmt)
        )
    except rpc.Refused as refused:
        return refused_response(source, refused)
    details = {"token": principal.name, "name": data.name, "version": data.version}
    try:
        await request.app[DEPS_KEY].audit("workflow.imported", None, "HUMAN", details)
    except Exception:
        log.exception("api_audit_failed", action="workflow.imported")
    log.info("workflow_imported", workflow=data.name, version=data.version)
    return web.json_response({"name": data.name, "version": data.version}, status=201)


async def list_workflows(request: web.Request) -> web.Response:
    await authenticate(request, "admin")
    listed = await ask_scheduler(request, rpc.WORKFLOW_LIST, rpc.ListWorkflows())
    return as_json(listed)


async def export_workflow(request: web.Request) -> web.Response:
    await authenticate(request, "admin")
    fmt = _workflow_format(request.query.get("format", "yaml"))
    name = request.match_info["name"]
    try:
        data = await ask_scheduler(request, rpc.WORKFLOW_EXPORT, rpc.ExportWorkflow(name=name, format=fmt))
    except rpc.Refused as refused:
        return refused_response(name, refused)
    content_type = "application/json" if fmt == "json" else "application/yaml"
    return web.Response(text=data.text, content_type=content_type)


def add_workflow_admin_routes(app: web.Application) -> None:
    app.router.add_post("/api/workflows", import_workflow)
    app.router.add_get("/api/workflows", list_workflows)
    app.router.add_get("/api/workflows/{name}", export_workflow)
    app.router.add_post("/api/workflows/{name}/test", test_workflow)
    app.router.add_get("/api/workflows/{name}/enrollments", list_enrollments)
    app.router.add_post("/api/workflows/{name}/deactivate", _switch("deactivate", rpc.WORKFLOW_DEACTIVATE))
    app.router.add_post("/api/workflows/{name}/reactivate", _switch("reactivate", rpc.WORKFLOW_REACTIVATE))
