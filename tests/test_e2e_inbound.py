"""Inbound path end to end: signed Twilio webhooks -> ingest -> router -> inbound.routed + rows.

Real ingest over HTTP (signatures computed with the twilio library), the real
router, the harness's nats-server and Postgres. One test per routing rule.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client import REGISTRY

from libs.events import ContactOptin, ContactOptout, DraftDecided, InboundReceived, InboundRouted
from services.ingest.service import MIGRATIONS as INGEST_MIGRATIONS
from services.ingest.settings import IngestSettings
from services.router.service import MIGRATIONS as ROUTER_MIGRATIONS
from services.router.settings import RouterSettings
from tests.harness import EventCollector, RunningService, start_service
from tests.specs import ingest_builder, router_build
from testsupport.webhooks import ACCOUNT_SID, AUTH_TOKEN, BUSINESS, inbound_form, signed

OWNER = "+15550000001"
PUBLIC = "https://sms.example.org"


class Inbound:
    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url = url
        self.http = http

    async def post(self, form: dict[str, str], *, token: str = AUTH_TOKEN) -> int:
        headers = signed(PUBLIC + "/twilio/sms", form, token)
        async with self.http.post(self.url + "/twilio/sms", data=form, headers=headers) as resp:
            return resp.status

    async def text(self, body: str, *, from_number: str = "+12125550111", **kw: Any) -> str:
        form = inbound_form(body, from_number=from_number, **kw)
        assert await self.post(form) == 200
        return form["MessageSid"]


@pytest.fixture
async def inbound(make_settings: Callable[..., Any]) -> AsyncIterator[Inbound]:
    common = {
        "owner_numbers": [OWNER],
        "business_number": BUSINESS,
        "public_base_url": PUBLIC,
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
    }
    listening: list[str] = []
    services: list[RunningService] = [
        await start_service(
            make_settings(RouterSettings, **common),
            name="router",
            build=router_build,
            migrations=ROUTER_MIGRATIONS,
        ),
        await start_service(
            make_settings(IngestSettings, **common, http_port=0),
            name="ingest",
            build=ingest_builder(listening.append),
            migrations=INGEST_MIGRATIONS,
        ),
    ]
    try:
        async with aiohttp.ClientSession() as http:
            yield Inbound(listening[0], http)
    finally:
        for service in reversed(services):
            await service.stop()


async def routed(collector: EventCollector, sid: str) -> InboundRouted:
    (event,) = await collector.wait_for(InboundRouted, lambda e: e.message_sid == sid, timeout=15)
    return event


async def decision_row(pool: asyncpg.Pool, sid: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM routing_decisions WHERE message_sid = $1", sid)
    assert row is not None
    return row


@pytest.mark.parametrize(
    ("body", "kw", "rule", "decision", "status"),
    [
        ("Hi! How much is a full detail for an SUV?", {}, "draft", "draft", "DRAFT_PENDING_APPROVAL"),
        ("Hola, ¿cuánto cuesta una limpieza dental?", {}, "draft", "draft", "DRAFT_PENDING_APPROVAL"),
        ("", {}, "empty_body", "needs_review", "NEEDS_REVIEW"),
        (
            "look at this",
            {"media": [("https://api.twilio.com/2010-04-01/Accounts/AC/Media/ME1", "image/jpeg")]},
            "media",
            "needs_review",
            "NEEDS_REVIEW",
        ),
        ("Wie viel kostet eine Zahnreinigung bei Ihnen?", {}, "language", "needs_review", "NEEDS_REVIEW"),
        (
            "This is terrible, worst service ever, you ruined my car and nobody cares",
            {},
            "complaint",
            "needs_review",
            "NEEDS_REVIEW",
        ),
        ("You people are rude and awful, what a joke", {}, "negative_sentiment", "needs_review", "NEEDS_REVIEW"),
        ("purple elephants dance quietly", {}, "unknown_intent", "needs_review", "NEEDS_REVIEW"),
    ],
    ids=["english-draft", "spanish-draft", "empty", "media", "german", "complaint", "negative", "unknown"],
)
async def test_each_rule_from_a_signed_webhook(
    inbound: Inbound,
    collector: EventCollector,
    pool: asyncpg.Pool,
    body: str,
    kw: dict[str, Any],
    rule: str,
    decision: str,
    status: str,
) -> None:
    counted = REGISTRY.get_sample_value("replyline_routing_decisions_total", {"rule": rule, "status": status})
    sid = await inbound.text(body, **kw)
    event = await routed(collector, sid)
    assert (event.rule, event.decision, event.status) == (rule, decision, status)
    after = REGISTRY.get_sample_value("replyline_routing_decisions_total", {"rule": rule, "status": status})
    assert (after or 0) == (counted or 0) + 1
    row = await decision_row(pool, sid)
    assert (row["rule"], row["decision"], row["status"]) == (rule, decision, status)
    stored = await pool.fetchval("SELECT count(*) FROM inbound_messages WHERE message_sid = $1", sid)
    assert stored == 1
    if "media" in kw:
        (received,) = collector.of_type(InboundReceived)
        assert received.num_media == 1 and received.media[0].content_type == "image/jpeg"


async def test_twilio_retry_is_stored_and_routed_once(
    inbound: Inbound, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    form = inbound_form("Are you open Saturday?", from_number="+12125550122")
    assert await inbound.post(form) == 200
    assert await inbound.post(form) == 200  # Twilio's retry
    await routed(collector, form["MessageSid"])
    with pytest.raises(TimeoutError):  # no second routed event turns up
        await collector.wait_for(InboundRouted, count=2, timeout=0.5)
    assert len(collector.of_type(InboundReceived)) == 1
    assert len(collector.of_type(InboundRouted)) == 1
    assert await pool.fetchval("SELECT count(*) FROM routing_decisions") == 1


async def test_bad_signature_is_refused_and_nothing_flows(
    inbound: Inbound, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    form = inbound_form("hello", from_number="+12125550133")
    assert await inbound.post(form, token="not-the-auth-token") == 403
    await collector.assert_none(InboundReceived, within=0.5)
    assert await pool.fetchval("SELECT count(*) FROM inbound_messages") == 0


async def test_stop_opts_out_and_later_messages_are_not_drafted(
    inbound: Inbound, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    lead = "+12125550144"
    stop_sid = await inbound.text("STOP", from_number=lead, OptOutType="STOP")
    assert (await routed(collector, stop_sid)).decision == "opt_out"
    (optout,) = await collector.wait_for(ContactOptout)
    assert (optout.number, optout.keyword) == (lead, "STOP")
    controls = await pool.fetchrow("SELECT opted_out FROM thread_controls WHERE number = $1", lead)
    assert controls["opted_out"] is True

    later = await inbound.text("How much for a haircut?", from_number=lead)
    assert (await routed(collector, later)).decision != "draft"

    back = await inbound.text("START", from_number=lead)
    assert (await routed(collector, back)).decision == "opt_in"
    await collector.wait_for(ContactOptin)


async def test_spanish_opt_out_keyword(inbound: Inbound, collector: EventCollector) -> None:
    sid = await inbound.text("BAJA", from_number="+12125550155")
    assert (await routed(collector, sid)).decision == "opt_out"
    await collector.wait_for(ContactOptout, lambda e: e.number == "+12125550155")


async def test_owner_reply_becomes_a_decision_not_a_draft(
    inbound: Inbound, collector: EventCollector
) -> None:
    sid = await inbound.text("YES 1042", from_number=OWNER)
    (decided,) = await collector.wait_for(DraftDecided)
    assert (decided.action, decided.ref, decided.reviewer, decided.source) == (
        "approve",
        "1042",
        OWNER,
        "sms",
    )
    assert (await routed(collector, sid)).decision == "owner_command"
