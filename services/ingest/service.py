"""Wiring ingest to Postgres, NATS and an HTTP listener inside the service runner."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from libs import consent_state
from libs.consumer import Handler
from libs.db import audit, load_queries
from libs.events import Event
from libs.service import Build, ServiceContext, probe_routes
from services.ingest.app import create_app
from services.ingest.auth import DbTokenVerifier
from services.ingest.contacts_api import SchedulerContactsApi
from services.ingest.dashboard.sessions import SessionStore
from services.ingest.dashboard.views import DashboardDeps, add_dashboard_routes
from services.ingest.drafter_rpc import NatsDrafterApi
from services.ingest.export_api import add_export_routes
from services.ingest.http_common import IngestDeps
from services.ingest.recorder import SERVICE, PgInboundRecorder
from services.ingest.scheduler_rpc import NatsSchedulerApi
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


def builder(on_listening: Callable[[str], None] | None = None) -> Build[IngestSettings]:
    """The service's build function; ``on_listening`` gets the bound base URL (tests use port 0)."""

    async def build(ctx: ServiceContext[IngestSettings]) -> Mapping[type[Event], Handler]:
        settings = ctx.settings

        async def publish(event: Event) -> int:
            if not ctx.bus.nc.is_connected:
                # Fail fast: nats-py would buffer the message and flush it on reconnect,
                # after the webhook already answered 503 and rolled its row back.
                raise ConnectionError("NATS is not connected")
            ack = await ctx.bus.publish(event, timeout=settings.publish_timeout_s)
            return int(ack.seq)

        async def audit_row(
            action: str, thread: str | None, actor: str, details: dict[str, Any]
        ) -> None:
            await audit(
                ctx.pool,
                service=SERVICE,
                action=action,
                thread=thread,
                actor=actor,
                details=details,
            )

        deps = IngestDeps(
            recorder=PgInboundRecorder(
                ctx.pool,
                QUERIES,
                publish,
                concurrency=settings.record_concurrency,
                owner_numbers=frozenset(settings.owner_numbers),
            ),
            publish=publish,
            tokens=DbTokenVerifier(ctx.pool, QUERIES, settings.api_token),
            drafter=NatsDrafterApi(ctx.bus.nc, ctx.bus.prefix, settings.drafter_rpc_timeout_s),
            audit=audit_row,
            opted_out=functools.partial(consent_state.opted_out, ctx.bus),
            scheduler=NatsSchedulerApi(
                ctx.bus.nc, ctx.bus.prefix, settings.scheduler_rpc_timeout_s
            ),
            contacts=SchedulerContactsApi(
                ctx.bus.nc, ctx.bus.prefix, settings.contact_import_timeout_s
            ),
        )
        app = create_app(settings, deps)
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
        base = f"http://{host}:{port}"
        ctx.log.info(
            "ingest_listening",
            url=base,
            public_base_url=settings.public_base_url,
            dev_auth_token=not settings.twilio_auth_token,
        )
        if on_listening is not None:
            on_listening(base)
        # Ingest consumes no events: it only publishes what arrives over HTTP.
        return {}

    return build
