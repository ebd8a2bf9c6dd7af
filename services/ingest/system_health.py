"""GET /health/system: the whole fleet's health, plus whether the drafter's LLM answers.

Served without a token on the internal health port (``REPLYLINE_HEALTH_PORT``) and,
behind an admin API token, on the public port (as is /metrics there): the report names
services, schema versions, consumer lag, the DLQ depth and the LLM base URLs.

The aggregate itself is :func:`libs.health.system_health` (heartbeats, schema versions,
consumer lag, DLQ depth, blockers). LLM reachability is informational: without it the
drafter drafts from templates or sends messages to the manual-intervention queue, so
it is a warning, never a blocker. The drafter probes its own providers and reports the
result in its heartbeat (``probes.llm``, services/drafter/service.py); ingest only
passes it on, so it needs no LLM settings. Without a drafter heartbeat the LLM's
state is unknown (``ok`` null) and the missing drafter is already a blocker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from aiohttp import web

from libs import metrics
from libs.bus import Bus
from libs.health import SERVICES, system_health
from libs.service import prometheus
from services.ingest.http_common import authenticate

log = structlog.get_logger("ingest")

#: The whole aggregate must answer well within a load balancer's probe timeout.
AGGREGATE_TIMEOUT_S = 8.0
#: probes.llm while no drafter reports one.
LLM_UNKNOWN = {
    "configured": None,
    "ok": None,
    "source": "drafter",
    "detail": "no drafter heartbeat: the LLM's reachability is unknown",
}


class SystemHealth:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def report(self) -> dict[str, Any]:
        try:
            if not self._bus.nc.is_connected:
                # Requests would wait for a reconnect; a probe needs its answer now.
                raise ConnectionError("ingest is not connected to NATS")
            async with asyncio.timeout(AGGREGATE_TIMEOUT_S):
                report = await system_health(self._bus, services=SERVICES)
        except Exception as exc:  # NATS unreachable: the fleet's state is unknown, so not ready
            log.warning("system_health_failed", error=repr(exc))
            report = {
                "ready": False,
                "blockers": [f"nats: cannot read heartbeats ({type(exc).__name__}: {exc})"],
                "warnings": [],
                "dlq_depth": None,
                "services": {},
                "probes": {},
                "nats_connected": self._bus.nc.is_connected,
                "checked_at": time.time(),
            }
        drafter_llm = report["services"].get("drafter", {}).get("probes", {}).get("llm")
        llm = {"source": "drafter", **drafter_llm} if drafter_llm is not None else dict(LLM_UNKNOWN)
        report["probes"]["llm"] = llm
        if llm.get("ok") is False:
            report["warnings"].append(
                "llm: no provider reachable; new messages go to the manual-intervention queue"
            )
        metrics.SYSTEM_READY.set(1 if report["ready"] else 0)
        if report["dlq_depth"] is not None:
            metrics.DLQ_DEPTH.set(report["dlq_depth"])
        return report


SYSTEM_HEALTH_KEY = web.AppKey("system_health", SystemHealth)


async def _answer(health: SystemHealth) -> web.Response:
    report = await health.report()
    return web.json_response(report, status=200 if report["ready"] else 503)


async def get_system_health(request: web.Request) -> web.Response:
    """The public port's GET /health/system: it names services, schema versions, lag, the
    DLQ depth and the LLM endpoints, so only an admin token may read it there."""
    await authenticate(request, "admin")
    return await _answer(request.app[SYSTEM_HEALTH_KEY])


async def get_metrics(request: web.Request) -> web.Response:
    """The public port's GET /metrics, behind an admin token for the same reason
    (Prometheus can send one: ``authorization: {credentials: ...}``)."""
    await authenticate(request, "admin")
    return await prometheus(request)


def add_system_health_route(app: web.Application, health: SystemHealth) -> None:
    """/health/system and /metrics on the public app, admin token required (the dashboard's
    health page reads the same report through its session)."""
    app[SYSTEM_HEALTH_KEY] = health
    app.router.add_get("/health/system", get_system_health)
    app.router.add_get("/metrics", get_metrics)


def internal_system_health_route(health: SystemHealth) -> web.RouteDef:
    """GET /health/system without a token, for the internal health port (REPLYLINE_HEALTH_PORT)."""

    async def handler(_: web.Request) -> web.Response:
        return await _answer(health)

    return web.get("/health/system", handler)
