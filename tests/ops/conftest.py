"""Fixtures for the operations tests: ingest and the other services in-process, an admin token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from replyline.services import load_spec
from services.ingest.auth import create_token
from services.ingest.service import QUERIES
from services.ingest.settings import IngestSettings
from tests.harness import RunningService, start_service
from tests.ingest.running import PUBLIC, Ingest, start_ingest
from testsupport.webhooks import AUTH_TOKEN

REPO_ROOT = Path(__file__).resolve().parents[2]
OWNER = "+15550000001"
BUSINESS = "+15550000000"

StartFleet = Callable[..., Awaitable[dict[str, RunningService]]]


#: What a test run of a service needs beyond the shared settings (by service name).
TEST_VALUES: dict[str, dict[str, Any]] = {
    "drafter": {"profile_path": str(REPO_ROOT / "profiles" / "business.yaml")},
    "scheduler": {
        "workflows_dir": str(REPO_ROOT / "workflows"),
        "email_templates_dir": str(REPO_ROOT / "workflows" / "email_templates"),
    },
}


@pytest.fixture
async def start_fleet(make_settings: Callable[..., Any]) -> AsyncIterator[StartFleet]:
    """Start consumer services by name with their real build functions; stopped at teardown."""
    running: list[RunningService] = []

    async def start(*names: str, **overrides: Any) -> dict[str, RunningService]:
        started = {}
        for name in names:
            spec = load_spec(name)
            values = {
                "owner_numbers": [OWNER],
                "business_number": BUSINESS,
                **TEST_VALUES.get(name, {}),
                **overrides,
            }
            service = await start_service(make_settings(spec.settings, **values), spec)
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
