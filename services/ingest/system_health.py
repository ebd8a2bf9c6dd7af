"""GET /health/system: the whole fleet's health, plus whether the LLM provider answers.

Served without a token on the internal health port (``REPLYLINE_HEALTH_PORT``) and,
behind an admin API token, on the public port (as is /metrics there): the report names
services, schema versions, consumer lag, the DLQ depth and the LLM base URLs.

The aggregate itself is :func:`libs.health.system_health` (heartbeats, schema versions,
consumer lag, DLQ depth, blockers). LLM reachability is informational: without it the
drafter drafts from templates or sends messages to the manual-intervention queue, so
it is a warning, never a blocker. The drafter's own ``llm`` probe (from its heartbeat)
wins when it reports one; otherwise ingest probes the endpoints named by the same
``REPLYLINE_LLM_*`` variables the drafter reads.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from aiohttp import web
from openai import AsyncOpenAI

from libs import metrics
from libs.bus import Bus
from libs.health import SERVICES, system_health
from libs.service import prometheus
from services.ingest.http_common import authenticate
from services.ingest.settings import IngestSettings

log = structlog.get_logger("ingest")

#: Probe results are reused this long, so a monitor polling /health/system every few
#: seconds does not turn into a stream of requests to a paid API.
PROBE_CACHE_S = 30.0
#: The whole aggregate must answer well within a load balancer's probe timeout.
AGGREGATE_TIMEOUT_S = 8.0


class LlmProbe:
    """Lists models on each configured OpenAI-compatible endpoint (cheap, no tokens spent)."""

    def __init__(self, settings: IngestSettings) -> None:
        self._endpoints = [
            (name, url, key)
            for name, url, key in (
                ("primary", settings.llm_base_url, settings.llm_api_key),
                ("fallback", settings.llm_fallback_base_url, settings.llm_fallback_api_key),
            )
            if url
        ]
        self._timeout = settings.llm_probe_timeout_s
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> dict[str, Any]:
        if not self._endpoints:
            return {
                "configured": False,
                "ok": None,
                "source": "ingest",
                "detail": "no LLM endpoint configured (REPLYLINE_LLM_BASE_URL): drafts use templates",
            }
        async with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < PROBE_CACHE_S:
                return self._cached[1]
            providers = {name: await self._probe(url, key) for name, url, key in self._endpoints}
            result = {
                "configured": True,
                # Drafting works while any provider answers (the fallback takes over).
                "ok": any(p["ok"] for p in providers.values()),
                "source": "ingest",
                "providers": providers,
            }
            self._cached = (time.monotonic(), result)
            return result

    async def _probe(self, base_url: str, api_key: str) -> dict[str, Any]:
        # A provider without auth (a local server) still needs a non-empty key for the client.
        client = AsyncOpenAI(
            base_url=base_url, api_key=api_key or "not-needed", max_retries=0, timeout=self._timeout
        )
        started = time.perf_counter()
        try:
            await client.models.list()
        except Exception as exc:
            return {
                "ok": False,
                "base_url": base_url,
                "error": f"{type(exc).__name__}: {exc}"[:300],
                "latency_ms": round((time.perf_counter() - started) * 1000),
            }
        finally:
            await client.close()
        return {"ok": True, "base_url": base_url, "latency_ms": round((time.perf_counter() - started) * 1000)}


class SystemHealth:
    def __init__(self, bus: Bus, llm_probe: LlmProbe) -> None:
        self._bus = bus
        self._llm_probe = llm_probe

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
        llm = {"source": "drafter", **drafter_llm} if drafter_llm is not None else await self._llm_probe()
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
