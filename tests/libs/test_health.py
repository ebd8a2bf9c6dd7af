import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from libs.bus import Bus
from libs.consumer import Delivery
from libs.embedded import EmbeddedPostgres
from libs.events import InboundReceived
from libs.health import system_health
from libs.service import ServiceContext
from tests.harness import eventually, start_service


async def idle_build(ctx: ServiceContext[Any]) -> dict[type, Any]:
    async def handle(event: InboundReceived, d: Delivery) -> None:
        return None

    return {InboundReceived: handle}


def migrations(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir(exist_ok=True)
    (folder / "0001_init.sql").write_text("CREATE TABLE demo (id INT);")
    return folder


async def test_system_health_reports_services_lag_dlq_and_blockers(
    make_settings: Callable[..., Any], bus: Bus, tmp_path: Path
) -> None:
    svc = await start_service(
        make_settings(), name="router", build=idle_build, migrations=migrations(tmp_path)
    )
    await eventually(lambda: _service(bus, "router"), timeout=10)
    health = await system_health(bus, services=("router", "drafter"))
    router = health["services"]["router"]
    assert router["ready"] and router["instances"] == 1
    assert router["schema_version"] == router["expected_schema_version"] == 1
    assert router["consumer_lag"] == {"pending": 0, "ack_pending": 0, "redelivered": 0}
    assert health["blockers"] == ["drafter: no heartbeat (not running?)"]
    assert health["ready"] is False

    # NATS micro lists the service and its ready endpoint answers.
    reply = await bus.nc.request(f"{bus.prefix}svc.router.ready", b"", timeout=2)
    assert json.loads(reply.data)["ready"] is True
    ping = await bus.nc.request("$SRV.PING.replyline-router", b"", timeout=2)
    assert json.loads(ping.data)["name"] == "replyline-router"

    await svc.stop()
    # A clean stop removes the heartbeat: the service is reported missing at once.
    health = await system_health(bus, services=("router",))
    assert health["blockers"] == ["router: no heartbeat (not running?)"]


async def _service(bus: Bus, name: str) -> bool:
    health = await system_health(bus, services=(name,))
    return bool(health["services"][name]["ready"])


async def test_readiness_follows_postgres(
    make_settings: Callable[..., Any], pg_server: EmbeddedPostgres | None, tmp_path: Path
) -> None:
    if pg_server is None:
        pytest.skip("needs the harness's own Postgres to stop it")
    settings = make_settings(health_port=0)
    svc = await start_service(settings, name="router", build=idle_build, migrations=migrations(tmp_path))
    ctx_port = svc.ctx.health_port
    url = f"http://127.0.0.1:{ctx_port}/health/ready"
    async with aiohttp.ClientSession() as http:

        async def status() -> tuple[int, dict[str, Any]]:
            async with http.get(url) as r:
                return r.status, await r.json()

        assert (await status())[0] == 200
        pg_server.pause()
        try:
            code, body = await status()
            assert code == 503 and body["checks"]["database"] is False
        finally:
            pg_server.resume()
        await eventually(lambda: _ok(status), timeout=15)
        async with http.get(f"http://127.0.0.1:{ctx_port}/metrics") as r:
            text = await r.text()
        assert "replyline_service_ready" in text
    await svc.stop()


async def _ok(status: Any) -> bool:
    code, _ = await status()
    return bool(code == 200)
