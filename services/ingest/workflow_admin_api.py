"""Owner API for stored workflows beyond import/export: dry run, enrollments, on/off.

All answered by the scheduler's request/reply endpoints (libs/rpc.py; services/scheduler/workflow_admin.py):

* ``POST /api/workflows/{name}/test`` ``{"contact": {...}, "start": "<ISO>"}`` -> the
  timeline ``replyline workflows test`` prints (``timeline`` rows and the same ``text``);
* ``GET /api/workflows/{name}/enrollments?status=waiting&limit=200`` -> contacts enrolled,
  with status and current step, newest first;
* ``POST /api/workflows/{name}/deactivate`` / ``reactivate`` -> ``{"name", "active"}``.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from libs import rpc
from services.ingest.api import as_json, ask_scheduler, json_body, refused_response
from services.ingest.http_common import DEPS_KEY, authenticate
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


def add_workflow_admin_routes(app: web.Application) -> None:
    app.router.add_post("/api/workflows/{name}/test", test_workflow)
    app.router.add_get("/api/workflows/{name}/enrollments", list_enrollments)
    app.router.add_post("/api/workflows/{name}/deactivate", _switch("deactivate", rpc.WORKFLOW_DEACTIVATE))
    app.router.add_post("/api/workflows/{name}/reactivate", _switch("reactivate", rpc.WORKFLOW_REACTIVATE))
