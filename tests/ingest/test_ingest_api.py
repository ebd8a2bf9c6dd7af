"""The lead webhook, the owner API and the CLIs against a running ingest (real NATS/Postgres)."""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from nats import micro

from libs import rpc
from libs.bus import Bus
from libs.events import ContactPaused, DraftDecided, InboundReceived, LeadCreated
from replyline.commands import sms
from services.ingest import tokens as tokens_cli
from services.ingest.auth import DbTokenVerifier, create_token
from services.ingest.service import QUERIES
from tests.harness import EventCollector
from tests.ingest.running import Ingest, audit_actions, count_on_subject
from testsupport.webhooks import AUTH_TOKEN

DRAFTS = [
    {
        "draft_id": "0b6c3f0e-1111-4c8e-9a55-000000000001",
        "ref": "4F2",
        "version": 1,
        "thread": "15551234567",
        "to_number": "+15551234567",
        "body": "Hi! Yes, we have 10:00 on Saturday.",
    },
    {
        "draft_id": "0b6c3f0e-2222-4c8e-9a55-000000000002",
        "ref": "7K9",
        "version": 2,
        "thread": "34612345678",
        "to_number": "+34612345678",
        "body": "¡Hola! El corte cuesta 25 €.",
    },
]
QUEUE = [{"thread": "15557654321", "reason": "rejected draft", "since": "2026-11-23T04:00:00Z"}]


class FakeDrafterRpc:
    """Serves the drafter's endpoints (libs/rpc.py) with canned drafts, as a micro service."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._svc: micro.Service | None = None

    async def start(self) -> FakeDrafterRpc:
        async def pending(request: rpc.Listing) -> rpc.PendingDrafts:
            self.requests.append(("pending", {"limit": request.limit}))
            return rpc.PendingDrafts(drafts=DRAFTS[: request.limit])

        async def queue(request: rpc.Listing) -> rpc.ManualQueue:
            self.requests.append(("queue", {"limit": request.limit}))
            return rpc.ManualQueue(items=QUEUE[: request.limit])

        self._svc = await micro.add_service(self.bus.nc, name="fake-drafter", version="0.0.1")
        served = [rpc.serve(rpc.DRAFTS_PENDING, pending), rpc.serve(rpc.MANUAL_QUEUE, queue)]
        await rpc.add_endpoints(self._svc, self.bus.prefix, served)
        await self.bus.nc.flush()
        return self

    async def stop(self) -> None:
        if self._svc is not None:
            await self._svc.stop()


@pytest.fixture
async def drafter(bus: Bus) -> AsyncIterator[FakeDrafterRpc]:
    fake = await FakeDrafterRpc(bus).start()
    yield fake
    await fake.stop()


@pytest.fixture
async def admin(ingest: Ingest, pool: asyncpg.Pool) -> str:
    return await create_token(pool, QUERIES, "owner-laptop", "admin")


async def test_api_refuses_missing_wrong_revoked_and_underscoped_tokens(
    ingest: Ingest, pool: asyncpg.Pool, admin: str
) -> None:
    status, body = await ingest.request("GET", "/api/drafts")
    assert status == 401 and body["error"] == "missing bearer token"
    assert (await ingest.request("GET", "/api/drafts", token="rl_wrong"))[0] == 401
    leads_only = await create_token(pool, QUERIES, "typeform", "leads")
    assert (await ingest.request("GET", "/api/drafts", token=leads_only))[0] == 403
    assert (await ingest.request("POST", "/api/threads/15551234567/pause", token=leads_only))[
        0
    ] == 403
    await pool.execute("UPDATE api_tokens SET revoked_at = now() WHERE name = 'owner-laptop'")
    assert (await ingest.request("GET", "/api/drafts", token=admin))[0] == 401
    # Only the hash is stored.
    stored = await pool.fetchval("SELECT token_hash FROM api_tokens WHERE name = 'typeform'")
    assert leads_only not in stored and len(stored) == 64


async def test_pending_and_queue_come_from_the_drafter(
    ingest: Ingest, admin: str, drafter: FakeDrafterRpc
) -> None:
    status, body = await ingest.request("GET", "/api/drafts?limit=1", token=admin)
    assert (status, body) == (200, {"drafts": DRAFTS[:1]})
    status, body = await ingest.request("GET", "/api/queue", token=admin)
    assert (status, body) == (200, {"items": QUEUE})
    assert drafter.requests == [("pending", {"limit": 1}), ("queue", {"limit": 100})]
    assert (await ingest.request("GET", "/api/drafts?limit=zero", token=admin))[0] == 400


async def test_without_a_drafter_reads_are_503_with_a_reason(
    ingest: Ingest, admin: str, collector: EventCollector
) -> None:
    status, body = await ingest.request("GET", "/api/drafts", token=admin)
    assert status == 503
    assert "drafter is not running" in body["error"]
    status, body = await ingest.request("POST", "/api/drafts/4F2/approve", token=admin)
    assert status == 503 and "thread" in body["error"]
    # With the thread given, the decision goes out; the drafter checks it when it consumes it.
    status, body = await ingest.request(
        "POST",
        f"/api/drafts/{DRAFTS[0]['draft_id']}/approve",
        token=admin,
        json={"thread": "+15551234567"},
    )
    assert status == 202 and body["thread"] == "15551234567"
    status, _ = await ingest.request(
        "POST", "/api/drafts/7K9/reject", token=admin, json={"thread": "34612345678"}
    )
    assert status == 202
    by_id, by_ref = await collector.wait_for(DraftDecided, count=2)
    assert (by_id.draft_id, by_id.ref, by_id.action) == (DRAFTS[0]["draft_id"], None, "approve")
    assert (by_ref.draft_id, by_ref.ref, by_ref.thread) == (None, "7K9", "34612345678")


async def test_decisions_publish_draft_decided(
    ingest: Ingest,
    admin: str,
    drafter: FakeDrafterRpc,
    collector: EventCollector,
    pool: asyncpg.Pool,
) -> None:
    status, approved = await ingest.request("POST", "/api/drafts/4F2/approve", token=admin)
    assert status == 202
    status, edited = await ingest.request(
        "POST",
        f"/api/drafts/{DRAFTS[1]['draft_id']}/edit",
        token=admin,
        json={"text": "¡Hola! Son 25 € y tenemos hueco el sábado."},
    )
    assert status == 202
    status, rejected = await ingest.request(
        "POST", "/api/drafts/4F2/reject", token=admin, json={"notes": "I'll call her"}
    )
    assert status == 202
    status, body = await ingest.request("POST", "/api/drafts/7K9/edit", token=admin, json={})
    assert status == 400 and "text" in body["error"]
    assert (await ingest.request("POST", "/api/drafts/NOPE/approve", token=admin))[0] == 404
    bad_json = await ingest.request("POST", "/api/drafts/4F2/reject", token=admin, data=b"{")
    assert bad_json[0] == 400

    events = await collector.wait_for(DraftDecided, count=3)
    by_id = {e.id: e for e in events}
    a, e, r = by_id[approved["event_id"]], by_id[edited["event_id"]], by_id[rejected["event_id"]]
    assert (a.action, a.thread, a.draft_id, a.ref) == (
        "approve",
        "15551234567",
        DRAFTS[0]["draft_id"],
        "4F2",
    )
    assert (a.source, a.reviewer) == ("api", "api:owner-laptop")
    assert (e.action, e.thread, e.ref, e.text) == (
        "edit",
        "34612345678",
        "7K9",
        "¡Hola! Son 25 € y tenemos hueco el sábado.",
    )
    assert (r.action, r.notes, r.text) == ("reject", "I'll call her", None)
    rows = await pool.fetch(
        "SELECT actor, details FROM audit_log WHERE action = 'draft.decided' ORDER BY id"
    )
    assert [(row["actor"], row["details"]["action"]) for row in rows] == [
        ("HUMAN", "approve"),
        ("HUMAN", "edit"),
        ("HUMAN", "reject"),
    ]


async def test_pause_and_resume_a_thread(
    ingest: Ingest, admin: str, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    status, _ = await ingest.request(
        "POST", "/api/threads/+15551234567/pause", token=admin, json={"reason": "calling her"}
    )
    assert status == 202
    assert (await ingest.request("POST", "/api/threads/15551234567/resume", token=admin))[0] == 202
    assert (await ingest.request("POST", "/api/threads/not-a-number/pause", token=admin))[0] == 400
    events = await collector.wait_for(ContactPaused, count=2)
    assert [(e.thread, e.number, e.paused, e.actor) for e in events] == [
        ("15551234567", "+15551234567", True, "api:owner-laptop"),
        ("15551234567", "+15551234567", False, "api:owner-laptop"),
    ]
    assert events[0].reason == "calling her"
    assert await audit_actions(pool) == ["contact.paused", "contact.resumed"]


async def test_lead_webhook_publishes_lead_created(
    ingest: Ingest, pool: asyncpg.Pool, bus: Bus, collector: EventCollector
) -> None:
    token = await create_token(pool, QUERIES, "website-form", "leads")
    lead = {
        "lead_id": "wf-1001",
        "phone": "(555) 123-4567",
        "first_name": "Ana",
        "last_name": "García",
        "email": "ana@example.com",
        "source": "facebook_ad",
        "tags": ["new-lead"],
        "fields": {"service": "color"},
        "budget": "150",
    }
    assert (await ingest.request("POST", "/leads", json=lead))[0] == 401
    status, body = await ingest.request("POST", "/leads", token=token, json=lead)
    assert status == 202 and body["phone"] == "+15551234567"
    # The form tool retries: same lead_id, one event.
    assert (await ingest.request("POST", "/leads", token=token, json=lead))[0] == 202
    form = {"phone": "+34 612 34 56 78", "first_name": "Luis", "tags": "vip, spring"}
    assert (await ingest.request("POST", "/leads", token=token, data=form))[0] == 202
    status, body = await ingest.request("POST", "/leads", token=token, json={"phone": "12"})
    assert status == 400

    first, second = await collector.wait_for(LeadCreated, count=2)
    assert (first.lead_id, first.phone, first.thread) == ("wf-1001", "+15551234567", "15551234567")
    assert (first.first_name, first.last_name, first.email, first.source) == (
        "Ana",
        "García",
        "ana@example.com",
        "facebook_ad",
    )
    assert first.tags == ("new-lead",)
    assert first.fields == {"service": "color", "budget": "150"}
    assert (second.phone, second.first_name, second.tags) == (
        "+34612345678",
        "Luis",
        ("vip", "spring"),
    )
    assert await count_on_subject(bus, bus.subject_for("lead.created", "15551234567")) == 1


async def test_settings_token_is_an_admin_token(
    ingest_settings: Any, drafter: FakeDrafterRpc
) -> None:
    import aiohttp

    from tests.ingest.running import start_ingest

    settings = ingest_settings(api_token="rl_from_settings_0123456789")
    service, url = await start_ingest(settings)
    try:
        async with aiohttp.ClientSession() as session:
            node = Ingest(url, settings.public_base_url, settings, session, service)
            assert (await node.request("GET", "/api/drafts", token=settings.api_token))[0] == 200
            assert (await node.request("GET", "/api/drafts", token="rl_from_settings"))[0] == 401
    finally:
        await service.stop()


async def test_tokens_cli_create_list_revoke(
    ingest: Ingest, pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = tokens_cli.parser()
    assert (
        await tokens_cli.run(
            parser.parse_args(["create", "cli", "--scope", "leads"]), ingest.settings
        )
        == 0
    )
    token = capsys.readouterr().out.strip().splitlines()[-1]
    verifier = DbTokenVerifier(pool, QUERIES)
    principal = await verifier.verify(token)
    assert principal is not None and (principal.name, principal.scope) == ("cli", "leads")
    assert await tokens_cli.run(parser.parse_args(["create", "cli"]), ingest.settings) == 1
    assert await tokens_cli.run(parser.parse_args(["list"]), ingest.settings) == 0
    listing = capsys.readouterr().out
    assert "cli\tleads\tactive" in listing and token not in listing
    assert await tokens_cli.run(parser.parse_args(["revoke", "cli"]), ingest.settings) == 0
    assert await verifier.verify(token) is None


async def test_replyline_sms_posts_a_signed_webhook(
    ingest: Ingest,
    collector: EventCollector,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("REPLYLINE_CONFIG", "REPLYLINE_BUSINESS_NUMBER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REPLYLINE_TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("REPLYLINE_PUBLIC_BASE_URL", ingest.public)
    parser = argparse.ArgumentParser()
    sms.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["sms", "--from", "+15551234567", "--url", ingest.url,
         "--media", "https://example.com/a.jpg", "--media", "https://example.com/b.png",
         "¿Tienen cita mañana?"]
    )  # fmt: skip
    assert await asyncio.to_thread(sms.run, args) == 0
    assert "accepted: HTTP 200" in capsys.readouterr().out
    (event,) = await collector.wait_for(InboundReceived)
    assert re.fullmatch(r"MM[0-9a-f]{32}", event.message_sid)
    assert event.body == "¿Tienen cita mañana?"
    assert event.to_number == "+15550000000"
    assert [(m.url, m.content_type) for m in event.media] == [
        ("https://example.com/a.jpg", "image/jpeg"),
        ("https://example.com/b.png", "image/png"),
    ]
    # The same command with another token is refused, and says why.
    monkeypatch.setenv("REPLYLINE_TWILIO_AUTH_TOKEN", "someone-elses-token")
    args = parser.parse_args(["sms", "--from", "+15551234567", "--url", ingest.url, "hi"])
    assert await asyncio.to_thread(sms.run, args) == 1
    assert "HTTP 403" in capsys.readouterr().err


async def test_contract_with_the_real_drafter_responder(
    ingest: Ingest, admin: str, bus: Bus, pool: asyncpg.Pool, collector: EventCollector
) -> None:
    """The drafter's own endpoint handlers over its own tables, not a stand-in."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from libs.db import migrate
    from services.drafter.endpoints import endpoints
    from services.drafter.service import MIGRATIONS as DRAFTER_MIGRATIONS
    from services.drafter.store import insert_draft

    await migrate(pool, "drafter", DRAFTER_MIGRATIONS)
    draft_id = str(uuid.uuid4())
    async with pool.acquire() as conn:
        await insert_draft(
            conn, draft_id=draft_id, version=1, ref="Q7", thread="15551234567",
            to_number="+15551234567", body="We have 10:00 free on Saturday.", source="template",
            in_reply_to="SM" + "0" * 32, inbound_body="Saturday?", intent="booking",
            language="en", created_by="drafter", expires_at=datetime.now(UTC) + timedelta(hours=24),
        )  # fmt: skip
    svc = await micro.add_service(bus.nc, name="replyline-drafter", version="0.0.1")
    await rpc.add_endpoints(svc, bus.prefix, endpoints(pool))
    await bus.nc.flush()  # the subscriptions are registered before ingest's first request
    try:
        status, body = await ingest.request("GET", "/api/drafts", token=admin)
        assert status == 200
        assert [(d["draft_id"], d["ref"], d["thread"]) for d in body["drafts"]] == [
            (draft_id, "Q7", "15551234567")
        ]
        assert (await ingest.request("GET", "/api/queue", token=admin)) == (200, {"items": []})
        status, _ = await ingest.request("POST", "/api/drafts/Q7/approve", token=admin)
        assert status == 202
    finally:
        await svc.stop()
    (decided,) = await collector.wait_for(DraftDecided)
    assert (decided.draft_id, decided.ref, decided.thread) == (draft_id, "Q7", "15551234567")
