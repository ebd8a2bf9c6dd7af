"""Fixtures for the operations tests: ingest and the other services in-process, an admin token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from libs.service import Build
from libs.settings import CommonSettings
from services.ingest.auth import create_token
from services.ingest.service import QUERIES
from services.ingest.settings import IngestSettings
from tests.harness import RunningService, start_service
from tests.ingest.running import PUBLIC, Ingest, start_ingest
from tests.ingest.webhooks import AUTH_TOKEN

REPO_ROOT = Path(__file__).resolve().parents[2]
OWNER = "+15550000001"
BUSINESS = "+15550000000"

StartFleet = Callable[..., Awaitable[dict[str, RunningService]]]


def _service_spec(name: str) -> tuple[type[CommonSettings], Build[Any], Path, dict[str, Any]]:
    """Each service's real build function and the settings a test run needs."""
    if name == "router":
        from services.router.service import MIGRATIONS, build
        from services.router.settings import RouterSettings

        return RouterSettings, build, MIGRATIONS, {}
    if name == "drafter":
        from services.drafter.service import MIGRATIONS as D_MIGRATIONS
        from services.drafter.service import build as d_build
        from services.drafter.settings import DrafterSettings

        profile = str(REPO_ROOT / "profiles" / "business.yaml")
        return DrafterSettings, d_build, D_MIGRATIONS, {"profile_path": profile}
    if name == "sender":
        from services.sender.service import MIGRATIONS as S_MIGRATIONS
        from services.sender.service import build as s_build
        from services.sender.settings import SenderSettings

        return SenderSettings, s_build, S_MIGRATIONS, {}
    if name == "scheduler":
        from services.scheduler.service import MIGRATIONS as T_MIGRATIONS
        from services.scheduler.service import build as t_build
        from services.scheduler.settings import SchedulerSettings

        workflows = {
            "workflows_dir": str(REPO_ROOT / "workflows"),
            "email_templates_dir": str(REPO_ROOT / "workflows" / "email_templates"),
        }
        return SchedulerSettings, t_build, T_MIGRATIONS, workflows
    raise ValueError(name)


@pytest.fixture
async def start_fleet(make_settings: Callable[..., Any]) -> AsyncIterator[StartFleet]:
    """Start consumer services by name with their real build functions; stopped at teardown."""
    running: list[RunningService] = []

    async def start(*names: str, **overrides: Any) -> dict[str, RunningService]:
        started = {}
        for name in names:
            cls, build, migrations, values = _service_spec(name)
            values = {"owner_numbers": [OWNER], "business_number": BUSINESS, **values, **overrides}
            service = await start_service(
                make_settings(cls, **values), name=name, build=build, migrations=migrations
            )
            running.append(service)
            started[name] = service
        return started

    yield start
    for service in reversed(running):
        if not service.task.done():
            await service.stop()


@pytest.fixture
def ops_ingest_settings(make_settings: Callable[..., Any]) -> Callable[..., IngestSettings]:
    def make(**overrides: Any) -> IngestSettings:
        base = {
            "http_port": 0,
            "twilio_auth_token": AUTH_TOKEN,
            "public_base_url": PUBLIC,
            "publish_timeout_s": 2.0,
            "drafter_rpc_timeout_s": 2.0,
            "health_port": 0,
        }
        base.update(overrides)
        settings: IngestSettings = make_settings(IngestSettings, **base)
        return settings

    return make


StartIngest = Callable[..., Awaitable[Ingest]]


@pytest.fixture
async def start_ops_ingest(ops_ingest_settings: Callable[..., IngestSettings]) -> AsyncIterator[StartIngest]:
    running: list[tuple[RunningService, aiohttp.ClientSession]] = []

    async def start(**overrides: Any) -> Ingest:
        settings = ops_ingest_settings(**overrides)
        service, url = await start_ingest(settings)
        session = aiohttp.ClientSession()
        running.append((service, session))
        return Ingest(url, PUBLIC, settings, session, service)

    yield start
    for service, session in running:
        await session.close()
        await service.stop()


@pytest.fixture
async def admin_token(start_ops_ingest: StartIngest, database_url: str) -> Callable[[], Awaitable[str]]:
    """Creates an admin token in ingest's api_tokens (call after ingest migrated)."""

    async def make(name: str = "owner-laptop") -> str:
        conn = await asyncpg.connect(database_url)
        try:
            return await create_token(conn, QUERIES, name, "admin")
        finally:
            await conn.close()

    return make
