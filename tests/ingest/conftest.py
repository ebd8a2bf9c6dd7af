"""Fixtures: a running ingest with real HTTP on a random port, real NATS and Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from libs.bus import Bus
from services.ingest.settings import IngestSettings
from tests.ingest.running import PUBLIC, Ingest, start_ingest
from testsupport.webhooks import AUTH_TOKEN


@pytest.fixture
def ingest_settings(make_settings: Callable[..., Any]) -> Callable[..., IngestSettings]:
    def make(**overrides: Any) -> IngestSettings:
        base = {
            "http_port": 0,
            "twilio_auth_token": AUTH_TOKEN,
            "public_base_url": PUBLIC,
            "publish_timeout_s": 2.0,
            "drafter_rpc_timeout_s": 1.0,
        }
        base.update(overrides)
        settings: IngestSettings = make_settings(IngestSettings, **base)
        return settings

    return make


@pytest.fixture
async def ingest(ingest_settings: Callable[..., IngestSettings], bus: Bus) -> AsyncIterator[Ingest]:
    settings = ingest_settings()
    service, url = await start_ingest(settings)
    async with aiohttp.ClientSession() as session:
        yield Ingest(url, PUBLIC, settings, session, service)
    await service.stop()
