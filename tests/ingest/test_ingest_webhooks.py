"""Signed Twilio webhooks against a running ingest with real NATS and Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from libs.bus import Bus
from libs.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from libs.events import InboundReceived, OutboundStatus
from services.ingest.app import EMPTY_TWIML
from services.ingest.auth import create_token
from services.ingest.service import QUERIES
from services.ingest.settings import IngestSettings
from tests.harness import EventCollector, eventually
from tests.ingest.running import (
    Ingest,
    audit_actions,
    count_on_subject,
    start_ingest,
)
from testsupport.webhooks import inbound_form, message_sid, status_form


async def accepted(node: Ingest, form: dict[str, str]) -> bool:
    """One Twilio retry of ``form``: True once ingest answers 200."""
    status, _ = await node.post_twilio("/twilio/sms", form)
    return status == 200


async def test_inbound_is_stored_published_once_and_audited(
    ingest: Ingest, pool: asyncpg.Pool, bus: Bus, collector: EventCollector
) -> None:
    form = inbound_form("Hi! Do you do haircuts on Saturday?", BrandNewField="kept")
    status, text = await ingest.post_twilio("/twilio/sms", form)
    assert (status, text) == (200, EMPTY_TWIML)

    (event,) = await collector.wait_for(
        InboundReceived, lambda e: e.message_sid == form["MessageSid"]
    )
    assert event.subject() == "inbound.received.15551234567"
    assert (event.from_number, event.to_number) == ("+15551234567", "+15550000000")
    assert event.body == form["Body"]
    assert event.account_sid == form["AccountSid"]
    assert event.messaging_service_sid == form["MessagingServiceSid"]
    headers = collector.headers[collector.events.index(event)]
    assert headers["Nats-Msg-Id"] == f"inbound.received:{form['MessageSid']}"
    assert "traceparent" in headers

    row = await pool.fetchrow(
        "SELECT * FROM inbound_messages WHERE message_sid = $1", form["MessageSid"]
    )
    assert row is not None
    assert row["raw"] == form  # every field, including ones Replyline does not know
    assert row["thread"] == "15551234567"
    assert row["event_id"] == event.id
    assert await audit_actions(pool) == ["inbound.received"]


async def test_duplicate_message_sid_is_200_without_a_second_event(
    ingest: Ingest, pool: asyncpg.Pool, bus: Bus
) -> None:
    form = inbound_form("same message, retried by Twilio")
    first = await ingest.post_twilio("/twilio/sms", form)
    # A sequential retry and two concurrent ones (the unique index serializes them).
    again = await ingest.post_twilio("/twilio/sms", form)
    racing = await asyncio.gather(*(ingest.post_twilio("/twilio/sms", form) for _ in range(2)))
    assert {first, again, *racing} == {(200, EMPTY_TWIML)}

    rows = await pool.fetchval(
        "SELECT count(*) FROM inbound_messages WHERE message_sid = $1", form["MessageSid"]
    )
    assert rows == 1
    assert await count_on_subject(bus, bus.subject_for("inbound.received", "15551234567")) == 1
    actions = await audit_actions(pool)
    assert actions.count("inbound.received") == 1
    assert actions.count("inbound.duplicate") == 3


async def test_bad_or_missing_signature_is_403_and_nothing_recorded(
    ingest: Ingest, pool: asyncpg.Pool, bus: Bus
) -> None:
    form = inbound_form("forged")
    assert (await ingest.post_twilio("/twilio/sms", form, token="guessed-token"))[0] == 403
    async with ingest.session.post(ingest.url + "/twilio/sms", data=form) as resp:
        assert resp.status == 403
    # Signed for the listener's own URL: what goes wrong behind a tunnel.
    local = ingest.url + "/twilio/sms"
    assert (await ingest.post_twilio("/twilio/sms", form, sign_url=local))[0] == 403
    assert await pool.fetchval("SELECT count(*) FROM inbound_messages") == 0
    assert await count_on_subject(bus, bus.subject_for("inbound.received", "15551234567")) == 0


async def test_malformed_and_huge_requests(ingest: Ingest, pool: asyncpg.Pool) -> None:
    no_sid = inbound_form()
    del no_sid["MessageSid"]
    no_from = inbound_form()
    del no_from["From"]
    for form in (no_sid, no_from, inbound_form(NumMedia="three")):
        status, text = await ingest.post_twilio("/twilio/sms", form)
        assert status == 400, text
    async with ingest.session.post(
        ingest.url + "/twilio/sms",
        data=b"Body=caf\xe9&From=%2B15551234567&MessageSid=SMx",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as resp:
        assert resp.status == 400
    async with ingest.session.post(
        ingest.url + "/twilio/sms",
        data=b"x" * 200_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as resp:
        assert resp.status == 413
    huge = inbound_form("y" * 100_000)
    assert (await ingest.post_twilio("/twilio/sms", huge))[0] == 413
    assert await pool.fetchval("SELECT count(*) FROM inbound_messages") == 0


async def test_media_and_spanish_text_pass_through(
    ingest: Ingest, pool: asyncpg.Pool, collector: EventCollector
) -> None:
    media = [
        ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1", "image/jpeg"),
        ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2", "image/png"),
    ]
    photo = inbound_form("Mira la foto", from_number="+34612345678", media=media)
    spanish = inbound_form("¿Tienen cita el sábado por la mañana? ¡Gracias! 😊")
    for form in (photo, spanish):
        assert (await ingest.post_twilio("/twilio/sms", form))[0] == 200

    (with_media,) = await collector.wait_for(
        InboundReceived, lambda e: e.message_sid == photo["MessageSid"]
    )
    assert with_media.thread == "34612345678"
    assert with_media.num_media == 2
    assert [(m.url, m.content_type) for m in with_media.media] == media
    (es,) = await collector.wait_for(
        InboundReceived, lambda e: e.message_sid == spanish["MessageSid"]
    )
    assert es.body == spanish["Body"]
    stored = await pool.fetchval(
        "SELECT body FROM inbound_messages WHERE message_sid = $1", spanish["MessageSid"]
    )
    assert stored == spanish["Body"]
    media_rows = await pool.fetchval(
        "SELECT media FROM inbound_messages WHERE message_sid = $1", photo["MessageSid"]
    )
    assert media_rows == [{"url": u, "content_type": t} for u, t in media]


async def test_public_url_that_is_the_listener_itself(
    ingest_settings: Callable[..., IngestSettings], collector: EventCollector
) -> None:
    """Without a proxy the public URL is the listener's; a port in it is part of the URL."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    settings = ingest_settings(http_port=port, public_base_url=public)
    service, url = await start_ingest(settings)
    try:
        async with aiohttp.ClientSession() as session:
            form = inbound_form()
            node = Ingest(url, public, settings, session, service)
            assert (await node.post_twilio("/twilio/sms", form))[0] == 200
            wrong = f"http://localhost:{port}/twilio/sms"
            assert (await node.post_twilio("/twilio/sms", inbound_form(), sign_url=wrong))[0] == 403
        await collector.wait_for(InboundReceived, lambda e: e.message_sid == form["MessageSid"])
    finally:
        await service.stop()


@asynccontextmanager
async def ingest_on_its_own_nats(
    ingest_settings: Callable[..., IngestSettings], tmp_path: Path
) -> AsyncIterator[tuple[EmbeddedNats, Ingest, Bus]]:
    """An ingest on a nats-server of its own (the test stops and restarts it), a client
    for it and a probe connection to that server; all stopped at the end."""
    nats = EmbeddedNats(tmp_path / "nats")
    nats.start()
    service = None
    try:
        settings = ingest_settings(nats_url=nats.url, publish_timeout_s=1.0)
        service, url = await start_ingest(settings)
        bus = await Bus.connect(settings, "probe")
        try:
            async with aiohttp.ClientSession() as session:
                yield nats, Ingest(url, settings.public_base_url, settings, session, service), bus
        finally:
            await bus.close()
    finally:
        if service is not None:
            await service.stop()
        nats.stop()


async def test_nats_down_answers_503_then_the_retry_publishes_once(
    ingest_settings: Callable[..., IngestSettings], pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with ingest_on_its_own_nats(ingest_settings, tmp_path) as (nats, node, bus):
        form = inbound_form("sent while NATS is down")
        nats.stop()
        status, _ = await node.post_twilio("/twilio/sms", form)
        assert status == 503
        # Committed with its event in the outbox; not answered 200, so Twilio retries.
        assert await pool.fetchval("SELECT count(*) FROM inbound_messages") == 1
        assert await outbox_rows(pool) == 1

        nats.start()  # same port and store: the stream is still there
        # Twilio retries the same request; the bus reconnects within a second or so.
        await eventually(lambda: accepted(node, form), timeout=10, interval=0.25)
        assert await pool.fetchval("SELECT count(*) FROM inbound_messages") == 1
        subject = bus.subject_for("inbound.received", "15551234567")
        await eventually(lambda: bus.nc.is_connected, timeout=10, interval=0.25)
        # Exactly once, whichever published it: the retry (before its 200) or the sweeper.
        assert await count_on_subject(bus, subject) == 1
        # The published row goes in the sweeper's next batched delete.
        await eventually(lambda: _outbox_empty(pool))


async def test_nats_down_leads_and_owner_actions_are_accepted_and_published_later(
    ingest_settings: Callable[..., IngestSettings], pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A lead or a pause is committed with its audit row (one outbox unit): 202 even
    while NATS is away, and the sweeper publishes it once NATS is back."""
    async with ingest_on_its_own_nats(ingest_settings, tmp_path) as (nats, node, bus):
        leads = await create_token(pool, QUERIES, "website-form", "leads")
        admin = await create_token(pool, QUERIES, "owner", "admin")
        nats.stop()
        lead = {"lead_id": "wf-2001", "phone": "+15551234567"}
        assert (await node.request("POST", "/leads", token=leads, json=lead))[0] == 202
        pause = {"reason": "calling her"}
        status, _ = await node.request("POST", "/api/threads/+15551234567/pause", token=admin, json=pause)
        assert status == 202
        assert await outbox_rows(pool) == 2
        assert sorted(await audit_actions(pool)) == ["contact.paused", "lead.created"]
        nats.start()
        await eventually(lambda: _outbox_empty(pool), timeout=20)
        for kind in ("lead.created", "contact.paused"):
            assert await count_on_subject(bus, bus.subject_for(kind, "15551234567")) == 1


async def outbox_rows(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM ingest_event_outbox"))


async def _outbox_empty(pool: asyncpg.Pool) -> bool:
    return await outbox_rows(pool) == 0


async def test_status_callback_publishes_outbound_status(
    ingest: Ingest, bus: Bus, collector: EventCollector
) -> None:
    sid = message_sid()
    assert (await ingest.post_twilio("/twilio/status", status_form(sid, "sent")))[0] == 204
    failed = status_form(sid, "undelivered", ErrorCode=30007)
    assert (await ingest.post_twilio("/twilio/status", failed))[0] == 204
    # A retried callback is the same event (Nats-Msg-Id = sid + status).
    assert (await ingest.post_twilio("/twilio/status", failed))[0] == 204
    events = await collector.wait_for(OutboundStatus, lambda e: e.provider_sid == sid, count=2)
    assert [(e.status, e.error_code, e.thread) for e in events] == [
        ("sent", None, "15551234567"),
        ("undelivered", 30007, "15551234567"),
    ]
    assert await count_on_subject(bus, bus.subject_for("outbound.status", "15551234567")) == 2
    assert (await ingest.post_twilio("/twilio/status", status_form(sid, "sent"), token="x"))[
        0
    ] == 403
    no_status = status_form(sid, "sent")
    del no_status["MessageStatus"], no_status["SmsStatus"]
    assert (await ingest.post_twilio("/twilio/status", no_status))[0] == 400


async def test_postgres_down_answers_503_and_publishes_nothing(
    ingest: Ingest, pg_server: EmbeddedPostgres | None, pool: asyncpg.Pool, bus: Bus
) -> None:
    if pg_server is None:
        pytest.skip("needs the harness's own Postgres to pause")
    form = inbound_form("sent while Postgres is down")
    subject = bus.subject_for("inbound.received", "15551234567")
    pg_server.pause()
    try:
        status, _ = await ingest.post_twilio("/twilio/sms", form)
        assert status == 503
        assert await count_on_subject(bus, subject) == 0
    finally:
        pg_server.resume()
    # Twilio's retry: the pool replaces its dead connections and the message is recorded.
    await eventually(lambda: accepted(ingest, form), timeout=10, interval=0.25)
    assert await count_on_subject(bus, subject) == 1

    async def stored() -> list[int]:
        # The test's own pool also lost its connections: retry until it has new ones.
        try:
            return [await pool.fetchval("SELECT count(*) FROM inbound_messages")]
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
            return []

    [rows] = await eventually(stored, timeout=10, interval=0.25)
    assert rows == 1


async def test_health_on_the_public_port_and_metrics_behind_a_token(
    ingest: Ingest, pool: asyncpg.Pool
) -> None:
    assert (await ingest.post_twilio("/twilio/sms", inbound_form(), token="wrong"))[0] == 403
    status, body = await ingest.request("GET", "/health/ready")
    assert status == 200 and body["ready"] is True
    assert (await ingest.request("GET", "/metrics"))[0] == 401
    token = await create_token(pool, QUERIES, "prometheus", "admin")
    status, text = await ingest.request("GET", "/metrics", token=token)
    assert status == 200
    assert 'replyline_ingest_requests_total{route="/twilio/sms",status="403"}' in text
