"""GET /health/system on a real ingest with the real services running in-process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from libs.embedded import EmbeddedNats
from services import SERVICES
from tests.harness import eventually
from tests.ops.conftest import StartFleet, StartIngest
from testsupport.fakes.openai_server import FakeOpenAI


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


async def _system(ingest: Any) -> tuple[int, dict[str, Any]]:
    # The internal health port: on the public port it needs an admin token.
    status, body = await ingest.internal("/health/system")
    assert isinstance(body, dict), body
    return status, body


async def test_all_five_services_ready_then_a_stopped_one_blocks(
    start_ops_ingest: StartIngest, start_fleet: StartFleet, llm: FakeOpenAI
) -> None:
    ingest = await start_ops_ingest()  # ingest has no LLM settings: the drafter reports its own
    fleet = await start_fleet("router", "sender", "scheduler")
    fleet.update(await start_fleet("drafter", drafter_llm_base_url=llm.base_url))

    async def ready() -> dict[str, Any] | None:
        status, body = await _system(ingest)
        return body if status == 200 else None

    body = await eventually(ready, timeout=20, interval=0.3)
    assert body["ready"] is True and body["blockers"] == []
    assert set(body["services"]) == set(SERVICES)
    for name in SERVICES:
        entry = body["services"][name]
        assert entry["ready"] and entry["instances"] == 1, (name, entry)
        assert entry["schema_compatible"] and entry["schema_version"] >= 1, (name, entry)
        assert entry["last_heartbeat_age_s"] < 20
        # Consumers report lag; ingest consumes nothing.
        assert (entry["consumer_lag"] is None) == (name == "ingest"), (name, entry)
        # Every slice has an event outbox; nothing waits in it while NATS is up.
        assert entry["outbox_pending"] == 0, (name, entry)
    assert body["dlq_depth"] == 0
    # The drafter, which calls the LLM, reports its reachability through its heartbeat.
    llm_probe = body["probes"]["llm"]
    assert llm_probe["source"] == "drafter"
    assert llm_probe["configured"] is True and llm_probe["ok"] is True
    assert llm_probe["providers"]["primary"]["base_url"] == llm.base_url

    await fleet["sender"].stop()
    status, body = await _system(ingest)
    assert status == 503 and body["ready"] is False
    assert body["blockers"] == ["sender: no heartbeat (not running?)"]
    assert body["services"]["router"]["ready"] is True


async def test_llm_probe_reports_unreachable_and_not_configured(
    start_ops_ingest: StartIngest, start_fleet: StartFleet
) -> None:
    ingest = await start_ops_ingest()

    async def ingest_beating() -> tuple[int, dict[str, Any]] | None:
        status, body = await _system(ingest)
        return (status, body) if body["services"]["ingest"]["instances"] else None

    # No drafter heartbeat: the LLM's state is unknown (the missing drafter is the blocker).
    status, body = await eventually(ingest_beating, timeout=10)
    assert status == 503  # router, drafter, sender and scheduler are not running
    assert sorted(body["blockers"]) == sorted(
        f"{name}: no heartbeat (not running?)" for name in SERVICES if name != "ingest"
    )
    assert body["probes"]["llm"]["ok"] is None and body["probes"]["llm"]["configured"] is None
    assert not any(w.startswith("llm:") for w in body["warnings"])

    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    down = await start_fleet("drafter", drafter_llm_base_url="http://127.0.0.1:9/v1")

    async def drafter_probe() -> dict[str, Any] | None:
        _, body = await _system(ingest)
        return body if body["probes"]["llm"]["ok"] is not None else None

    body = await eventually(drafter_probe, timeout=15, interval=0.3)
    assert body["probes"]["llm"]["source"] == "drafter"
    assert body["probes"]["llm"]["ok"] is False
    assert body["probes"]["llm"]["providers"]["primary"]["error"]
    assert any(w.startswith("llm: no provider reachable") for w in body["warnings"])
    await down["drafter"].stop()

    # A drafter without an LLM (templates): configured false, nothing to warn about.
    await start_fleet("drafter")

    async def templates_probe() -> dict[str, Any] | None:
        _, body = await _system(ingest)
        return body if body["probes"]["llm"]["configured"] is False else None

    body = await eventually(templates_probe, timeout=15, interval=0.3)
    assert not any(w.startswith("llm:") for w in body["warnings"])


async def test_nats_down_answers_503_at_once_and_readiness_recovers(
    start_ops_ingest: StartIngest, nats_server: EmbeddedNats | None
) -> None:
    if nats_server is None:
        pytest.skip("needs the session's own nats-server to stop it")
    ingest = await start_ops_ingest()
    bus = ingest.service.ctx.bus
    await eventually(lambda: _reported(ingest), timeout=10)  # the heartbeat task is running
    await asyncio.to_thread(nats_server.stop)
    try:
        await eventually(lambda: not bus.nc.is_connected, timeout=10)
        started = time.monotonic()
        status, body = await _system(ingest)
        assert time.monotonic() - started < 2  # no waiting for a reconnect
        assert status == 503 and body["blockers"][0].startswith("nats: cannot read heartbeats")
        status, ready = await ingest.request("GET", "/health/ready")
        assert status == 503 and ready["checks"]["nats"] is False
    finally:
        await asyncio.to_thread(nats_server.start)

    async def ready_again() -> bool:
        status, _ = await ingest.request("GET", "/health/ready")
        return status == 200

    await eventually(ready_again, timeout=20, interval=0.5)


async def test_heartbeats_come_back_after_a_nats_restart(
    start_ops_ingest: StartIngest, nats_server: EmbeddedNats | None
) -> None:
    if nats_server is None:
        pytest.skip("needs the session's own nats-server to restart it")
    ingest = await start_ops_ingest()
    bus = ingest.service.ctx.bus

    await eventually(lambda: _reported(ingest), timeout=10)
    await asyncio.to_thread(nats_server.restart)
    await eventually(lambda: bus.nc.is_connected, timeout=20)
    # The bucket's entries were in memory: until the next beat ingest is missing.
    await eventually(lambda: _reported(ingest), timeout=15, interval=0.5)


async def _reported(ingest: Any) -> bool:
    """Ingest's own heartbeat is in the aggregate."""
    _, body = await _system(ingest)
    return bool(body["services"].get("ingest", {}).get("ready"))
