"""Owner API for stored workflows beyond import/export: dry run, enrollments, on/off.

All answered by the scheduler over NATS request/reply (services/scheduler/workflow_admin.py):

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

from services.ingest.api import _ask_scheduler, json_body
from services.ingest.http_common import DEPS_KEY, authenticate, json_error
from services.ingest.twilio_payload import PayloadError

log = structlog.get_logger("ingest")

TEST = "test"
ENROLLMENTS = "enrollments"
DEACTIVATE = "deactivate"
REACTIVATE = "reactivate"


def _answer(name: str, data: dict[str, Any]) -> web.Response | None:
    if data.get("error") == "not_found":
        return json_error(404, f"no workflow named {name!r}")
    if data.get("error") == "invalid":
        return json_error(400, "invalid", issues=data.get("issues", []))
    return None


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
    data = await _ask_scheduler(request, TEST, {"name": name, "contact": contact, "start": start})
    return _answer(name, data) or web.json_response(data)


async def list_enrollments(request: web.Request) -> web.Response:
    await authenticate(request, "admin")
    name = request.match_info["name"]
    try:
        limit = int(request.query.get("limit", "200"))
    except ValueError:
        raise PayloadError("limit must be a number") from None
    payload = {"name": name, "status": request.query.get("status") or None, "limit": limit}
    data = await _ask_scheduler(request, ENROLLMENTS, payload)
    return _answer(name, data) or web.json_response(data)


def _switch(method: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        name = request.match_info["name"]
        data = await _ask_scheduler(request, method, {"name": name, "by": principal.name})
        refused = _answer(name, data)
        if refused is not None:
            return refused
        try:
            details = {"token": principal.name, "name": data.get("name")}
            await request.app[DEPS_KEY].audit(f"workflow.{method}d", None, "HUMAN", details)
        except Exception:
            log.exception("api_audit_failed", action=f"workflow.{method}d")
        return web.json_response(data)

    return handler


def add_workflow_admin_routes(app: web.Application) -> None:
    app.router.add_post("/api/workflows/{name}/test", test_workflow)
    app.router.add_get("/api/workflows/{name}/enrollments", list_enrollments)
    app.router.add_post("/api/workflows/{name}/deactivate", _switch(DEACTIVATE))
    app.router.add_post("/api/workflows/{name}/reactivate", _switch(REACTIVATE))
