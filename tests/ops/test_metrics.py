"""Prometheus /metrics: the documented names on every service, real samples where they move."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from libs.bus import Bus
from libs.consumer import Delivery
from libs.events import InboundReceived
from libs.service import ServiceContext
from tests.harness import eventually, start_service
from tests.ops.conftest import StartFleet, StartIngest
from testsupport.webhooks import inbound_form

#: The names docs/operations.md promises (counters without their _total suffix,
#: as the parser reports the family name).
DOCUMENTED = {
    "replyline_events_handled": "counter",
    "replyline_service_ready": "gauge",
    "replyline_webhooks_received": "counter",
    "replyline_routing_decisions": "counter",
    "replyline_drafts_created": "counter",
    "replyline_draft_decisions": "counter",
    "replyline_drafts_expired": "counter",
    "replyline_takeovers": "counter",
    "replyline_human_replies": "counter",
    "replyline_time_to_first_human_reply_seconds": "histogram",
    "replyline_llm_requests": "counter",
    "replyline_llm_tokens": "counter",
    "replyline_llm_cost_usd": "counter",
    "replyline_sends": "counter",
    "replyline_delivery_status": "counter",
    "replyline_timers": "counter",
    "replyline_timers_pending": "gauge",
    "replyline_consumer_pending": "gauge",
    "replyline_consumer_ack_pending": "gauge",
    "replyline_consumer_redelivered": "gauge",
    "replyline_dlq_depth": "gauge",
    "replyline_system_ready": "gauge",
    "replyline_ingest_requests": "counter",
    "replyline_ingest_request_seconds": "histogram",
}


async def scrape(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], family: str, name: str, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return 0.0


async def test_every_service_exposes_the_documented_metrics(
    start_ops_ingest: StartIngest, start_fleet: StartFleet
) -> None:
    ingest = await start_ops_ingest()
    fleet = await start_fleet("router", "sender", health_port=0)
    # The internal health port (the public port wants an admin token for /metrics).
    urls = [ingest.internal_url + "/metrics"] + [
        f"http://127.0.0.1:{svc.ctx.health_port}/metrics" for svc in fleet.values()
    ]
    for url in urls:
        families = await scrape(url)
        missing = {n for n in DOCUMENTED if n not in families}
        assert not missing, (url, missing)
        assert {n: families[n].type for n in DOCUMENTED} == DOCUMENTED

    families = await scrape(ingest.internal_url + "/metrics")
    metric = "replyline_webhooks_received_total"
    before = sample(families, "replyline_webhooks_received", metric, kind="sms", result="recorded")
    dup_before = sample(families, "replyline_webhooks_received", metric, kind="sms", result="duplicate")
    form = inbound_form("Do you fix water heaters?")
    assert (await ingest.post_twilio("/twilio/sms", form))[0] == 200
    assert (await ingest.post_twilio("/twilio/sms", form))[0] == 200  # Twilio's retry
    families = await scrape(ingest.internal_url + "/metrics")
    assert (
        sample(families, "replyline_webhooks_received", metric, kind="sms", result="recorded") == before + 1
    )
    assert (
        sample(families, "replyline_webhooks_received", metric, kind="sms", result="duplicate")
        == dup_before + 1
    )


async def test_consumer_lag_gauge_follows_the_backlog(
    make_settings: Callable[..., Any], bus: Bus, tmp_path: Path
) -> None:
    release = asyncio.Event()

    async def build(ctx: ServiceContext[Any]) -> dict[type, Any]:
        async def handle(event: InboundReceived, d: Delivery) -> None:
            await release.wait()  # a stuck dependency: the backlog grows

        return {InboundReceived: handle}

    service = await start_service(make_settings(health_port=0), name="laggard", build=build, migrations=None)
    url = f"http://127.0.0.1:{service.ctx.health_port}/metrics"
    for n in range(5):
        await bus.publish(
            InboundReceived(
                thread=f"1555000{n:04d}",
                message_sid=f"SMlag{n}",
                from_number="+15550001111",
                to_number="+1555",
            )
        )

    async def backlog() -> float:
        families = await scrape(url)
        pending = sample(
            families, "replyline_consumer_pending", "replyline_consumer_pending", service="laggard"
        )
        in_flight = sample(
            families, "replyline_consumer_ack_pending", "replyline_consumer_ack_pending", service="laggard"
        )
        return pending + in_flight

    # The heartbeat (every 5 s) refreshes the gauges.
    assert await eventually(lambda: _at_least(backlog, 5), timeout=15, interval=0.5)
    release.set()
    await eventually(lambda: _equals(backlog, 0), timeout=15, interval=0.5)
    await service.stop()


async def _at_least(value: Callable[[], Any], n: float) -> bool:
    return bool(await value() >= n)


async def _equals(value: Callable[[], Any], n: float) -> bool:
    return bool(await value() == n)
