"""Fixtures for the router: the service in-process on the test's NATS and Postgres."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from libs.bus import Bus
from libs.events import InboundReceived, thread_of
from services.router.service import SPEC
from services.router.settings import RouterSettings
from tests.harness import EventCollector, RunningService, start_service

OWNER = "+15550000001"
BUSINESS = "+15550000000"

StartRouter = Callable[..., Awaitable[RunningService]]
_sids = itertools.count(1)


def new_sid() -> str:
    return f"SM{next(_sids):032x}"


def received(body: str, *, lead: str, sid: str | None = None, num_media: int = 0) -> InboundReceived:
    return InboundReceived(
        thread=thread_of(lead),
        message_sid=sid or new_sid(),
        from_number=lead,
        to_number=BUSINESS,
        body=body,
        num_media=num_media,
    )


@pytest.fixture
def router_settings(make_settings: Callable[..., Any]) -> Callable[..., RouterSettings]:
    def make(**overrides: Any) -> RouterSettings:
        values: dict[str, Any] = {"owner_numbers": [OWNER], "business_number": BUSINESS}
        values.update(overrides)
        settings: RouterSettings = make_settings(RouterSettings, **values)
        return settings

    return make


@pytest.fixture
async def start_router(
    router_settings: Callable[..., RouterSettings],
) -> AsyncIterator[StartRouter]:
    running: list[RunningService] = []

    async def start(**overrides: Any) -> RunningService:
        service = await start_service(
            router_settings(**overrides), SPEC
        )
        running.append(service)
        return service

    yield start
    for service in running:
        if not service.task.done():
            await service.stop()


class Pipeline:
    """Publish inbound.received like ingest does and read what the router made of it."""

    def __init__(self, bus: Bus, collector: EventCollector, pool: asyncpg.Pool) -> None:
        self.bus = bus
        self.collector = collector
        self.pool = pool

    async def send(self, event: InboundReceived, *, msg_id: str | None = None) -> None:
        await self.bus.publish(event, msg_id=msg_id)

    async def routed(self, sid: str, wait_s: float = 15.0) -> Any:
        from libs.events import InboundRouted

        (event,) = await self.collector.wait_for(
            InboundRouted, lambda e: e.message_sid == sid, timeout=wait_s
        )
        return event

    async def row(self, sid: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow("SELECT * FROM routing_decisions WHERE message_sid = $1", sid)

    async def controls(self, lead: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow("SELECT * FROM thread_controls WHERE thread = $1", thread_of(lead))


@pytest.fixture
def pipeline(bus: Bus, collector: EventCollector, pool: asyncpg.Pool) -> Pipeline:
    return Pipeline(bus, collector, pool)
