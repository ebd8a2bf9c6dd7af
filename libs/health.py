"""Service heartbeats, NATS micro registration, and the system-wide health aggregate.

Each running service instance writes a heartbeat to the KV bucket
``heartbeats`` (entries expire after ``HEARTBEAT_TTL_S``) and registers a NATS
micro service ``replyline-<service>`` with a ``ready`` endpoint and the service's
request/reply endpoints (libs/rpc.py), so
``nats micro ls`` lists the fleet. :func:`system_health` (served by ingest at
GET /health/system) combines heartbeats, consumer lag and DLQ depth into one
answer with a ``blockers`` list and a global ``ready`` flag.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog
from nats import micro
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NoKeysError, NotFoundError
from nats.js.kv import KeyValue

from libs.bus import Bus
from libs.rpc import Served, add_endpoints

log = structlog.get_logger("health")

HEARTBEAT_BUCKET = "heartbeats"
HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_TTL_S = 60.0
STALE_AFTER_S = 20.0
LAG_BLOCKER = 10_000
VERSION = "0.1.0"


def instance_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())
    return f"{host}-{os.getpid()}"


async def heartbeat_bucket(bus: Bus) -> KeyValue:
    name = bus.kv_name(HEARTBEAT_BUCKET)
    try:
        return await bus.js.key_value(name)
    except BucketNotFoundError:
        return await bus.js.create_key_value(
            KeyValueConfig(
                bucket=name,
                ttl=HEARTBEAT_TTL_S,
                storage=StorageType.MEMORY,
                replicas=bus.settings.nats_replicas,
            )
        )


async def beat_forever(
    bus: Bus,
    service: str,
    report: Callable[[], Awaitable[dict[str, Any]]],
    stop: asyncio.Event,
) -> None:
    """Write this instance's heartbeat every few seconds until ``stop``.

    The bucket is in memory, so a NATS restart loses it: after any failed write
    the bucket is looked up (or created) again on the next beat.
    """
    kv: KeyValue | None = None
    key = f"{service}.{instance_id()}"
    while not stop.is_set():
        try:
            kv = kv or await heartbeat_bucket(bus)
            body = {"service": service, "instance": key, "at": time.time(), **await report()}
            await kv.put(key, json.dumps(body).encode())
        except Exception as exc:  # NATS down or restarted: the next beat retries
            kv = None
            log.warning("heartbeat_failed", error=repr(exc))
        try:
            await asyncio.wait_for(stop.wait(), timeout=HEARTBEAT_INTERVAL_S)
        except TimeoutError:
            pass
    if kv is not None:
        try:
            await kv.delete(key)  # a clean stop is not a missing service
        except Exception as exc:
            log.info("heartbeat_not_removed", error=repr(exc))


async def register_micro(
    bus: Bus,
    service: str,
    report: Callable[[], Awaitable[dict[str, Any]]],
    endpoints: Iterable[Served[Any, Any]] = (),
) -> micro.Service:
    """The ``replyline-<service>`` micro service: ``ready`` plus the service's request/reply
    endpoints (libs/rpc.py)."""
    svc = await micro.add_service(
        bus.nc,
        name=f"replyline-{service}",
        version=VERSION,
        description=f"Replyline {service} service",
        metadata={"namespace": bus.settings.namespace or "-"},
    )

    async def ready(request: micro.Request) -> None:
        await request.respond(json.dumps(await report()).encode())

    await svc.add_endpoint(name="ready", subject=f"{bus.prefix}svc.{service}.ready", handler=ready)
    await add_endpoints(svc, bus.prefix, endpoints)
    # A request sent right after start must find the interest registered on the server.
    await bus.nc.flush()
    return svc


async def read_heartbeats(bus: Bus) -> list[dict[str, Any]]:
    try:
        kv = await bus.js.key_value(bus.kv_name(HEARTBEAT_BUCKET))
        keys = await kv.keys()
    except (BucketNotFoundError, NoKeysError, NotFoundError):
        return []
    beats = []
    for key in keys:
        try:
            entry = await kv.get(key)
        except Exception:
            continue
        if entry.value:
            beats.append(json.loads(entry.value))
    return beats


async def dlq_depth(bus: Bus) -> int:
    try:
        info = await bus.js.stream_info(bus.dlq_stream, subjects_filter=f"{bus.prefix}dlq.>")
    except NotFoundError:
        return 0
    return sum((info.state.subjects or {}).values())


async def consumer_lag(bus: Bus, durable: str) -> dict[str, int] | None:
    try:
        info = await bus.js.consumer_info(bus.stream, durable)
    except NotFoundError:
        return None
    return {
        "pending": info.num_pending or 0,
        "ack_pending": info.num_ack_pending or 0,
        "redelivered": info.num_redelivered or 0,
    }


def _service_entry(mine: list[dict[str, Any]], lag: dict[str, int] | None, now: float) -> dict[str, Any]:
    """One service's part of the report, from its instances' heartbeats."""
    entry: dict[str, Any] = {
        "instances": len(mine),
        "last_heartbeat_age_s": round(now - max(b["at"] for b in mine), 1) if mine else None,
        "ready": bool(mine) and all(b.get("ready") for b in mine),
        "schema_version": max((b.get("schema_version", 0) for b in mine), default=None),
        "expected_schema_version": max((b.get("expected_schema_version", 0) for b in mine), default=None),
        "consumer_lag": lag,
        # Committed events not yet on the bus (libs/event_outbox.py), per the heartbeats.
        "outbox_pending": max(
            (b["outbox_pending"] for b in mine if b.get("outbox_pending") is not None), default=None
        ),
        "checks": {k: v for b in mine for k, v in (b.get("checks") or {}).items()},
        "probes": {k: v for b in mine for k, v in (b.get("probes") or {}).items()},
    }
    entry["schema_compatible"] = entry["schema_version"] == entry["expected_schema_version"]
    return entry


def _judge(name: str, entry: dict[str, Any], blockers: list[str], warnings: list[str]) -> None:
    """Add what keeps service ``name`` from being healthy to ``blockers``, what merely
    deserves a look to ``warnings``."""
    if not entry["instances"]:
        blockers.append(f"{name}: no heartbeat (not running?)")
        return
    if entry["last_heartbeat_age_s"] > STALE_AFTER_S:
        blockers.append(f"{name}: last heartbeat {entry['last_heartbeat_age_s']}s ago")
    if not entry["schema_compatible"]:
        blockers.append(
            f"{name}: schema at version {entry['schema_version']}, "
            f"code expects {entry['expected_schema_version']}"
        )
    failing = sorted(k for k, ok in entry["checks"].items() if not ok)
    if failing:
        blockers.append(f"{name}: not ready ({', '.join(failing)})")
    if entry["outbox_pending"]:
        warnings.append(f"{name}: {entry['outbox_pending']} committed event(s) wait in its outbox")
    lag = entry["consumer_lag"]
    if lag and lag["pending"] > LAG_BLOCKER:
        blockers.append(f"{name}: consumer lag {lag['pending']}")
    elif lag and lag["pending"] > 0:
        warnings.append(f"{name}: consumer lag {lag['pending']}")


async def system_health(
    bus: Bus,
    *,
    services: Iterable[str],
    extra_probes: dict[str, Callable[[], Awaitable[dict[str, Any]]]] | None = None,
) -> dict[str, Any]:
    """The whole system's health, as served by GET /health/system.

    ``services`` is the fleet (the caller's registry, services.SERVICES): libs/ does
    not know the list. A service without a durable consumer reports no lag."""
    now = time.time()
    beats = await read_heartbeats(bus)
    blockers: list[str] = []
    warnings: list[str] = []
    report: dict[str, Any] = {}
    for name in services:
        mine = [b for b in beats if b.get("service") == name]
        report[name] = _service_entry(mine, await consumer_lag(bus, name), now)
        _judge(name, report[name], blockers, warnings)
    depth = await dlq_depth(bus)
    if depth:
        warnings.append(f"DLQ holds {depth} event(s): replyline replay --dlq")
    probes: dict[str, Any] = {}
    for probe_name, probe in (extra_probes or {}).items():
        try:
            probes[probe_name] = await probe()
        except Exception as exc:
            probes[probe_name] = {"ok": False, "error": repr(exc)}
    return {
        "ready": not blockers,
        "blockers": blockers,
        "warnings": warnings,
        "dlq_depth": depth,
        "services": report,
        "probes": probes,
        "nats_connected": bus.nc.is_connected,
        "checked_at": now,
    }
