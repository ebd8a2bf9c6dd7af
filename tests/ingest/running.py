"""A running ingest (real HTTP on a random port, real NATS and Postgres) and probes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg

from libs.bus import Bus
from services.ingest.service import SPEC
from services.ingest.settings import IngestSettings
from tests.harness import RunningService, start_service
from tests.specs import ingest_builder
from testsupport.webhooks import AUTH_TOKEN, signed

#: What Twilio is configured to call: a TLS tunnel in front of the plain-HTTP listener.
PUBLIC = "https://replyline-test.ngrok.app"


@dataclass
class Ingest:
    url: str  # where it listens, e.g. http://127.0.0.1:41234
    public: str  # what Twilio calls and signs
    settings: IngestSettings
    session: aiohttp.ClientSession
    service: RunningService

    @property
    def internal_url(self) -> str:
        """The health port (REPLYLINE_HEALTH_PORT): /metrics and /health/system without a token."""
        port = self.service.ctx.health_port
        assert port is not None, "start ingest with health_port=0 to get a health port"
        return f"http://127.0.0.1:{port}"

    async def internal(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.internal_url + path) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()

    async def post_twilio(
        self,
        path: str,
        form: dict[str, str],
        *,
        sign_url: str | None = None,
        token: str = AUTH_TOKEN,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        all_headers = signed(sign_url or self.public + path, form, token)
        all_headers.update(headers or {})
        async with self.session.post(self.url + path, data=form, headers=all_headers) as resp:
            return resp.status, await resp.text()

    async def request(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(method, self.url + path, headers=headers, **kwargs) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()


async def start_ingest(settings: IngestSettings) -> tuple[RunningService, str]:
    urls: list[str] = []
    service = await start_service(
        settings, name="ingest", build=ingest_builder(urls.append), migrations=SPEC.migrations
    )
    return service, urls[0]


async def count_on_subject(bus: Bus, subject: str) -> int:
    """Messages stored in the stream on one subject (the stream itself, not a subscriber)."""
    info = await bus.js.stream_info(bus.stream, subjects_filter=subject)
    return int((info.state.subjects or {}).get(subject, 0))


async def audit_actions(pool: asyncpg.Pool, service: str = "ingest") -> list[str]:
    rows = await pool.fetch("SELECT action FROM audit_log WHERE service = $1 ORDER BY id", service)
    return [r["action"] for r in rows]
