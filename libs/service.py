"""The service runner: settings in, resources in an AsyncExitStack, drain on exit.

Every service exports one :class:`ServiceSpec` (``SPEC`` in
``services/<name>/service.py``): its name, settings class, migrations folder,
default clock and ``build(ctx, clock)``, which sets up its own resources on
``ctx.stack`` and returns a :class:`Built` (its handlers, ``{EventClass:
handler}``, possibly empty, plus the named parts it made, which tests read from
``ctx.parts``). ``python -m services.<name>`` is ``run_service(SPEC, ...)``.
The runner owns everything else: logging, signals, the pool and
migrations, the bus and its streams, the consumer, the DLQ forwarder, the
health/metrics endpoint and the ordered shutdown:

1. stop fetching, 2. finish in-flight work within the grace period,
3. ``nc.drain()``, 4. close the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from libs import metrics
from libs.bus import Bus
from libs.consumer import Consumer, Handler
from libs.db import create_pool, expected_version, migrate, slice_version
from libs.dlq import forward_advisories
from libs.event_loop import loop_factory, running_loop_name
from libs.event_outbox import EventOutbox
from libs.events import Event, utcnow
from libs.health import beat_forever, consumer_lag, register_micro
from libs.logging import configure
from libs.resources import Resources
from libs.rpc import Served
from libs.settings import CommonSettings, SettingsError, load

S = TypeVar("S", bound=CommonSettings)
Check = Callable[[], Awaitable[bool]]
#: The one clock style: "what time is it now" (UTC-aware). Tests pass their own.
Clock = Callable[[], datetime]


@dataclass
class ServiceContext(Generic[S]):
    """One running service: made by the runner, then :meth:`open` connects it."""

    name: str
    settings: S
    stack: AsyncExitStack
    stop: asyncio.Event
    migrations: Path | None
    #: Set by :meth:`open` (on ``stack``), before any build sees the context.
    pool: asyncpg.Pool = field(init=False)
    bus: Bus = field(init=False)
    log: Any = field(default_factory=lambda: structlog.get_logger("service"))
    checks: dict[str, Check] = field(default_factory=dict)
    #: Informational probes (e.g. LLM reachability): reported, never block readiness.
    probes: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = field(default_factory=dict)
    consumer: Consumer | None = None
    #: The slice's transactional outbox (libs/event_outbox.py); its sweeper runs with the service.
    outbox: EventOutbox | None = None
    health_port: int | None = None
    #: Routes a service adds to its health port (set in build, before that port starts):
    #: internal-only endpoints such as ingest's GET /health/system.
    internal_routes: list[web.RouteDef] = field(default_factory=list)
    #: Request/reply endpoints this service answers (libs/rpc.py ``serve``), added in build;
    #: the runner registers them on the service's micro service.
    endpoints: list[Served[Any, Any]] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    #: What build made, by name (the scheduler's engine, ingest's base URL): for tests
    #: and tools that drive a running instance; the runner itself never reads it.
    parts: Mapping[str, Any] = field(default_factory=dict)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    failure: BaseException | None = None

    async def open(self) -> int:
        """Connect the pool (and migrate the slice), the bus (and its streams) and, for a
        slice with migrations, its event outbox; returns the slice's schema version."""
        settings = self.settings
        # Closed last: the pool outlives the bus so the drain can still write.
        self.pool = await create_pool(
            settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
        self.stack.push_async_callback(self.pool.close)
        version = await migrate(self.pool, self.name, self.migrations)
        self.bus = await Bus.connect(settings, self.name)
        self.stack.push_async_callback(self.bus.close)
        await self.bus.ensure_streams()
        if self.migrations is not None:
            self.outbox = EventOutbox(self.bus, self.pool, self.name)
            self.spawn(self.outbox.run(self.stop), "event-outbox")
        return version

    @property
    def resources(self) -> Resources[S]:
        """What the slice's own objects take; only a service with migrations has an outbox."""
        if self.outbox is None:
            raise RuntimeError(f"{self.name} has no event outbox: the runner makes one only with migrations")
        return Resources(settings=self.settings, pool=self.pool, bus=self.bus, outbox=self.outbox)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a tracked background task; if it fails, the service stops with an error."""
        task = asyncio.create_task(coro, name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.log.error("background_task_failed", task=task.get_name(), error=repr(exc))
            self.failure = self.failure or exc
            self.stop.set()

    async def wait_tasks(self, timeout: float) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def readiness(self) -> dict[str, bool]:
        """Each check's result; the service is ready when all are true."""
        results = {"nats": self.bus.nc.is_connected}
        try:
            async with asyncio.timeout(2):
                want = expected_version(self.migrations) if self.migrations else 0
                results["database"] = await slice_version(self.pool, self.name) >= want
        except Exception:  # any failure to answer means not ready; the reason is in the logs
            results["database"] = False
        if self.consumer is not None:
            results["consumer"] = time.monotonic() - self.consumer.last_fetch_ok < 10
        for name, check in self.checks.items():
            try:
                async with asyncio.timeout(2):
                    results[name] = await check()
            except Exception:
                results[name] = False
        return results

    async def _schema_version(self) -> int | None:
        if not self.migrations:
            return 0
        try:
            async with asyncio.timeout(2):
                return await slice_version(self.pool, self.name)
        except Exception:
            return None

    async def _consumer_lag(self) -> dict[str, int] | None:
        """The durable consumer's lag, also published as gauges (every heartbeat refreshes them)."""
        if self.consumer is None:
            return None
        try:
            async with asyncio.timeout(2):
                lag = await consumer_lag(self.bus, self.name)
        except Exception:  # NATS down: the readiness checks already say so
            return None
        if lag is not None:
            metrics.CONSUMER_PENDING.labels(self.name).set(lag["pending"])
            metrics.CONSUMER_ACK_PENDING.labels(self.name).set(lag["ack_pending"])
            metrics.CONSUMER_REDELIVERED.labels(self.name).set(lag["redelivered"])
        return lag

    async def _outbox_pending(self) -> int | None:
        """Committed events still waiting in the outbox (also the gauge)."""
        if self.outbox is None:
            return None
        try:
            async with asyncio.timeout(2):
                pending = await self.outbox.pending()
        except Exception:  # Postgres down: the readiness checks already say so
            return None
        metrics.OUTBOX_PENDING.labels(self.name).set(pending)
        return pending

    async def report(self) -> dict[str, Any]:
        """What heartbeats and the micro `ready` endpoint say about this instance."""
        checks = await self.readiness()
        probes: dict[str, Any] = {}
        for name, probe in self.probes.items():
            try:
                async with asyncio.timeout(3):
                    probes[name] = await probe()
            except Exception as exc:
                probes[name] = {"ok": False, "error": repr(exc)}
        metrics.SERVICE_READY.labels(self.name).set(1 if all(checks.values()) else 0)
        return {
            "ready": all(checks.values()),
            "checks": checks,
            "probes": probes,
            "consumer_lag": await self._consumer_lag(),
            "outbox_pending": await self._outbox_pending(),
            "schema_version": await self._schema_version(),
            "expected_schema_version": expected_version(self.migrations) if self.migrations else 0,
            "uptime_s": round(time.time() - self.started_at, 1),
        }


Handlers = Mapping[type[Event], Handler]
#: What the runner calls: a build with its clock already chosen.
Build = Callable[[ServiceContext[S]], Awaitable[Handlers]]


@dataclass(frozen=True)
class Built:
    """What a service's build returns: its handlers and the named parts it made."""

    handlers: Handlers
    parts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceSpec(Generic[S]):
    """One service's shape: everything `__main__`, the CLI, the dev launcher, system
    health and the tests need to run it. Each service exports one as ``SPEC``."""

    name: str
    settings: type[S]
    build: Callable[[ServiceContext[S], Clock], Awaitable[Built]]
    migrations: Path | None
    clock: Clock = utcnow

    def bind(self, clock: Clock | None = None) -> Build[S]:
        """The runner's build: ``self.build`` with ``clock`` (the spec's default if None)."""
        chosen = clock or self.clock

        async def build(ctx: ServiceContext[S]) -> Handlers:
            built = await self.build(ctx, chosen)
            ctx.parts = built.parts
            return built.handlers

        return build


async def prometheus(_: web.Request) -> web.Response:
    """GET /metrics: every metric of the default registry, in Prometheus text format."""
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def probe_routes(ctx: ServiceContext[Any]) -> list[web.RouteDef]:
    """GET /health/live and /health/ready: what a load balancer may see on a public port."""

    async def live(_: web.Request) -> web.Response:
        return web.json_response({"service": ctx.name, "live": True})

    async def ready(_: web.Request) -> web.Response:
        checks = await ctx.readiness()
        ok = all(checks.values())
        metrics.SERVICE_READY.labels(ctx.name).set(1 if ok else 0)
        body = {"service": ctx.name, "ready": ok, "checks": checks}
        return web.json_response(body, status=200 if ok else 503)

    return [web.get("/health/live", live), web.get("/health/ready", ready)]


def health_routes(ctx: ServiceContext[Any]) -> list[web.RouteDef]:
    """The health port's routes: the probes and /metrics (which names internals, so it
    belongs on the internal network only)."""
    return [*probe_routes(ctx), web.get("/metrics", prometheus)]


async def _start_health_server(ctx: ServiceContext[Any], port: int) -> None:
    app = web.Application()
    app.add_routes(health_routes(ctx))
    app.add_routes(ctx.internal_routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ctx.stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1" if port == 0 else "0.0.0.0", port)
    await site.start()
    ctx.health_port = int(runner.addresses[0][1])
    ctx.log.info("health_listening", port=ctx.health_port)


async def _start(ctx: ServiceContext[Any], handlers: Handlers) -> None:
    """Start what runs around a built service: its consumer and DLQ forwarder (when it
    handles events), its health port, its micro service and its heartbeat."""
    name, bus, stop = ctx.name, ctx.bus, ctx.stop
    if handlers:
        ctx.consumer = Consumer(
            bus,
            name,
            handlers,
            on_settled=lambda subject, outcome: metrics.EVENTS_HANDLED.labels(
                name, metrics.event_type_of(subject), outcome
            ).inc(),
            outbox=ctx.outbox,
        )
        await ctx.consumer.ensure()
        ctx.spawn(ctx.consumer.run(stop), "consumer")
        ctx.spawn(forward_advisories(bus, name, stop), "dlq-forwarder")
    if ctx.settings.health_port >= 0:
        await _start_health_server(ctx, ctx.settings.health_port)
    micro_service = await register_micro(bus, name, ctx.report, ctx.endpoints)
    ctx.stack.push_async_callback(micro_service.stop)
    ctx.spawn(beat_forever(bus, name, ctx.report, stop), "heartbeat")


async def serve(
    settings: S,
    *,
    name: str,
    build: Build[S],
    migrations: Path | None,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    on_ready: Callable[[ServiceContext[S]], None] | None = None,
) -> None:
    """Run one service until ``stop`` is set (or a signal arrives when run by :func:`run_service`)."""
    stop = stop or asyncio.Event()
    structlog.contextvars.bind_contextvars(service=name)
    log = structlog.get_logger("service")
    async with AsyncExitStack() as stack:
        ctx = ServiceContext(name=name, settings=settings, stack=stack, stop=stop, migrations=migrations)
        version = await ctx.open()
        handlers = await build(ctx)
        await _start(ctx, handlers)
        log.info(
            "service_ready",
            schema_version=version,
            handlers=len(handlers),
            event_loop=running_loop_name(),
        )
        if on_ready is not None:
            on_ready(ctx)
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("service_stopping", grace_s=settings.drain_grace_s)
        await ctx.wait_tasks(settings.drain_grace_s + 1)
    log.info("service_stopped")
    if ctx.failure is not None:
        raise RuntimeError(f"{name}: a background task failed") from ctx.failure


def run_service(spec: ServiceSpec[S], *, fleet: Iterable[str]) -> None:
    """Entry point for ``python -m services.<name>``: load settings, run until SIGINT/SIGTERM.

    ``fleet`` names every service (the registry, services.SERVICES): the config file's
    other services' sections are not this one's settings."""
    name = spec.name
    try:
        settings = load(spec.settings, section=name, sections=fleet)
    except SettingsError as exc:
        print(f"{name}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure(name, level=settings.log_level, fmt=settings.log_format)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, name=name, build=spec.bind(), migrations=spec.migrations, stop=stop)

    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner,
    ):
        runner.run(main())
