"""Wiring ingest to Postgres, NATS and an HTTP listener inside the service runner."""

from __future__ import annotations

import errno
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from libs import consent_state
from libs.db import audit, load_queries
from libs.events import Event
from libs.rpc import RpcClient
from libs.service import Built, Clock, ServiceContext, ServiceSpec, probe_routes
from services.ingest.app import create_app
from services.ingest.auth import DbTokenVerifier
from services.ingest.dashboard.sessions import SessionStore
from services.ingest.dashboard.views import DashboardDeps, add_dashboard_routes
from services.ingest.export_api import add_export_routes
from services.ingest.http_common import IngestDeps
from services.ingest.recorder import SERVICE, PgInboundRecorder
from services.ingest.settings import IngestSettings
from services.ingest.system_health import (
    SystemHealth,
    add_system_health_route,
    internal_system_health_route,
)

HERE = Path(__file__).parent
MIGRATIONS = HERE / "migrations"
QUERIES = load_queries(HERE / "queries.sql")


class PortInUse(RuntimeError):
    """The HTTP port is taken and port sharing was not asked for."""


def _deps(ctx: ServiceContext[IngestSettings]) -> IngestDeps:
    """What the HTTP handlers call: the recorder, publishing, audit rows and the RPC clients."""
    settings, outbox = ctx.settings, ctx.resources.outbox
    # A webhook waits for its events' publish: the same bound as a direct publish.
    outbox.publish_timeout_s = settings.publish_timeout_s

    async def publish(event: Event) -> int:
        # Only for events that describe no row of ingest (status callbacks): rows and
        # the events they mean go through the outbox (the recorder, ``audited``).
        if not ctx.bus.nc.is_connected:
            # Fail fast: nats-py would buffer the message and flush it on reconnect,
            # after the webhook already answered 503 and rolled its row back.
            raise ConnectionError("NATS is not connected")
        ack = await ctx.bus.publish(event, timeout=settings.publish_timeout_s)
        return int(ack.seq)

    async def audit_row(
        action: str, thread: str | None, actor: str, details: dict[str, Any]
    ) -> None:
        await audit(ctx.pool, service=SERVICE, action=action, thread=thread, actor=actor, details=details)

    async def audited(
        events: Sequence[Event], action: str, thread: str | None, actor: str, details: dict[str, Any]
    ) -> None:
        async with outbox.unit() as u:
            await audit(u.conn, service=SERVICE, action=action, thread=thread, actor=actor, details=details)
            for event in events:
                u.emit(event)

    def rpc(timeout_s: float) -> RpcClient:
        return RpcClient(ctx.bus.nc, ctx.bus.prefix, timeout_s)

    return IngestDeps(
        recorder=PgInboundRecorder(
            outbox,
            QUERIES,
            concurrency=settings.record_concurrency,
            owner_numbers=frozenset(settings.owner_numbers),
        ),
        publish=publish,
        tokens=DbTokenVerifier(ctx.pool, QUERIES, settings.api_token),
        drafter=rpc(settings.drafter_rpc_timeout_s),
        audit=audit_row,
        audited=audited,
        opted_out=functools.partial(consent_state.opted_out, ctx.bus),
        scheduler=rpc(settings.scheduler_rpc_timeout_s),
        contacts=rpc(settings.contact_import_timeout_s),
    )


async def _listen(ctx: ServiceContext[IngestSettings], app: web.Application) -> str:
    """Serve ``app`` on the configured address; returns its base URL (the bound port)."""
    settings = ctx.settings
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # Pushed after the bus: on shutdown the listener closes before the bus drains.
    ctx.stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(
        runner, settings.http_host, settings.http_port, reuse_port=settings.http_reuse_port
    )
    try:
        await site.start()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise PortInUse(
            f"ingest cannot listen on {settings.http_host}:{settings.http_port}: the port is "
            "already in use (another ingest, or a `replyline dev` still running?). To run "
            "several ingest processes on one port on purpose, set REPLYLINE_HTTP_REUSE_PORT=true "
            "in every one of them."
        ) from None
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


async def build(ctx: ServiceContext[IngestSettings], clock: Clock) -> Built:
    """Ingest stamps times in its SQL and its request handlers: ``clock`` is unused."""
    settings = ctx.settings
    app = create_app(settings, _deps(ctx))
    # Liveness and readiness on the public port too: a load balancer needs only one
    # port. /metrics and /health/system name internals: without a token only on the
    # internal health port, on the public one only for an admin token.
    app.add_routes(probe_routes(ctx))
    system = SystemHealth(ctx.bus)
    add_system_health_route(app, system)
    ctx.internal_routes.append(internal_system_health_route(system))
    sessions = SessionStore(
        ctx.pool, QUERIES, settings.dashboard_session_ttl_s, bootstrap_token=settings.api_token
    )
    await sessions.purge_expired()
    add_dashboard_routes(app, DashboardDeps(pool=ctx.pool, queries=QUERIES, sessions=sessions))
    add_export_routes(app, ctx.pool)
    base = await _listen(ctx, app)
    ctx.log.info(
        "ingest_listening",
        url=base,
        public_base_url=settings.public_base_url,
        dev_auth_token=not settings.twilio_auth_token,
    )
    # Ingest consumes no events: it only publishes what arrives over HTTP. Tests read
    # the bound base URL (they listen on port 0) from ctx.parts.
    return Built({}, {"base_url": base})


SPEC = ServiceSpec("ingest", IngestSettings, build, MIGRATIONS)
