"""Issue 11 regressions in ingest, on a running ingest with real NATS and Postgres.

- 3: a signed webhook re-split under a new MessageSid (the signature covers names and
  values concatenated without separators) is refused, and so is another account's.
- 14: a non-ASCII or undecodable bearer token is a 401, never a 503 with Retry-After.
- 15: /metrics and /health/system need an admin token on the public port.
- 1 (ingest's part): the public dev webhook token is refused on a non-loopback listener.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import aiohttp
import asyncpg
import pytest
from twilio.request_validator import RequestValidator

from libs.bus import Bus
from libs.events import InboundReceived, OutboundStatus
from libs.settings import DEV_TWILIO_AUTH_TOKEN, SettingsError, load
from services.ingest import twilio_payload
from services.ingest.app import EMPTY_TWIML
from services.ingest.settings import IngestSettings
from tests.harness import EventCollector
from tests.ingest.running import PUBLIC, Ingest, audit_actions, count_on_subject, start_ingest
from testsupport.webhooks import ACCOUNT_SID, AUTH_TOKEN, inbound_form, message_sid, status_form

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "testsupport" / "fakes" / "reference" / "twilio_api_v2010.json"
OWNER = "+15550000001"
OTHER_ACCOUNT = "AC" + "f" * 32


def resplit(form: dict[str, str], moved: tuple[str, ...]) -> dict[str, str]:
    """The attack: fold the fields that sort right after MessageSid into its value.

    ``MessageSid=SMx&NumMedia=0`` signs as ``MessageSidSMxNumMedia0``, exactly like
    ``MessageSid=SMxNumMedia0``: same signature, "new" MessageSid.
    """
    forged = dict(form)
    for name in moved:
        forged["MessageSid"] += name + forged.pop(name)
    return forged


def signature_of(path: str, form: dict[str, str]) -> str:
    return str(RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC + path, form))


async def post_with_signature(
    ingest: Ingest, path: str, form: dict[str, str], signature: str
) -> tuple[int, str]:
    headers = {"X-Twilio-Signature": signature}
    async with ingest.session.post(ingest.url + path, data=form, headers=headers) as resp:
        return resp.status, await resp.text()


# -- 3. re-split webhooks and SID formats ------------------------------------------------


@pytest.mark.parametrize("aliases", [True, False], ids=["with-SmsSid", "MessageSid-only"])
@pytest.mark.parametrize(
    "moved", [("NumMedia",), ("NumMedia", "NumSegments")], ids=["NumMedia", "NumMedia+NumSegments"]
)
async def test_resplit_inbound_webhook_is_refused_and_not_stored(
    ingest: Ingest,
    pool: asyncpg.Pool,
    bus: Bus,
    collector: EventCollector,
    aliases: bool,
    moved: tuple[str, ...],
) -> None:
    # A captured owner "YES" as Twilio posts it without a Messaging Service, so
    # NumMedia and NumSegments sort right after MessageSid.
    original = inbound_form("YES", from_number=OWNER)
    del original["MessagingServiceSid"]
    if not aliases:
        del original["SmsMessageSid"], original["SmsSid"]
    signature = signature_of("/twilio/sms", original)
    assert await post_with_signature(ingest, "/twilio/sms", original, signature) == (
        200,
        EMPTY_TWIML,
    )
    await collector.wait_for(InboundReceived, lambda e: e.message_sid == original["MessageSid"])

    forged = resplit(original, moved)
    # The attack is real: Twilio's own validator accepts the captured signature for it.
    assert RequestValidator(AUTH_TOKEN).validate(PUBLIC + "/twilio/sms", forged, signature)
    status, text = await post_with_signature(ingest, "/twilio/sms", forged, signature)
    assert status == 400, text
    assert "MessageSid" in json.loads(text)["error"] or "SmsMessageSid" in text

    assert await pool.fetchval("SELECT count(*) FROM inbound_messages") == 1
    assert await pool.fetchval(
        "SELECT count(*) FROM inbound_messages WHERE message_sid = $1", forged["MessageSid"]
    ) == 0
    subject = bus.subject_for("inbound.received", OWNER.lstrip("+"))
    assert await count_on_subject(bus, subject) == 1
    assert await audit_actions(pool) == ["inbound.received"]


@pytest.mark.parametrize("aliases", [True, False], ids=["with-SmsSid", "MessageSid-only"])
async def test_resplit_status_callback_is_refused_and_not_published(
    ingest: Ingest, bus: Bus, collector: EventCollector, aliases: bool
) -> None:
    sid = message_sid()
    original = status_form(sid, "delivered")
    if not aliases:
        del original["SmsSid"]
    signature = signature_of("/twilio/status", original)
    assert (await post_with_signature(ingest, "/twilio/status", original, signature))[0] == 204
    await collector.wait_for(OutboundStatus, lambda e: e.provider_sid == sid)

    # MessageSid=SMx + MessageStatus=delivered -> MessageSid=SMxMessageStatusdelivered
    # (the status then comes from the legacy SmsStatus field).
    forged = resplit(original, ("MessageStatus",))
    assert RequestValidator(AUTH_TOKEN).validate(PUBLIC + "/twilio/status", forged, signature)
    status, text = await post_with_signature(ingest, "/twilio/status", forged, signature)
    assert status == 400, text
    await collector.assert_none(
        OutboundStatus, lambda e: e.provider_sid == forged["MessageSid"], within=0.5
    )
    assert await count_on_subject(bus, bus.subject_for("outbound.status", "15551234567")) == 1


async def test_webhooks_for_another_account_are_403_and_not_stored(
    ingest_settings: Callable[..., IngestSettings],
    pool: asyncpg.Pool,
    bus: Bus,
    collector: EventCollector,
) -> None:
    settings = ingest_settings(twilio_account_sid=ACCOUNT_SID)
    service, url = await start_ingest(settings)
    try:
        async with aiohttp.ClientSession() as session:
            ingest = Ingest(url, PUBLIC, settings, session, service)
            # Signed with the right auth token, but for another (e.g. sub-) account.
            other = inbound_form("START", AccountSid=OTHER_ACCOUNT)
            assert (await ingest.post_twilio("/twilio/sms", other))[0] == 403
            missing = inbound_form("START")
            del missing["AccountSid"]
            assert (await ingest.post_twilio("/twilio/sms", missing))[0] == 403
            sid = message_sid()
            status = status_form(sid, "delivered", AccountSid=OTHER_ACCOUNT)
            assert (await ingest.post_twilio("/twilio/status", status))[0] == 403

            assert await pool.fetchval("SELECT count(*) FROM inbound_messages") == 0
            await collector.assert_none(OutboundStatus, within=0.3)
            assert await count_on_subject(bus, bus.subject_for("inbound.received", "15551234567")) == 0

            # The configured account is accepted (the check is not refusing everything).
            ours = inbound_form("START")
            assert (await ingest.post_twilio("/twilio/sms", ours))[0] == 200
            assert (await ingest.post_twilio("/twilio/status", status_form(sid, "sent")))[0] == 204
    finally:
        await service.stop()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"MessageSid": "SM" + "a" * 31}, "MessageSid"),
        ({"MessageSid": "SM" + "a" * 33}, "MessageSid"),
        ({"MessageSid": "XX" + "a" * 32}, "MessageSid"),
        ({"MessageSid": "SM" + "g" * 32}, "MessageSid"),
        ({"SmsSid": "SM" + "b" * 32}, "SmsSid"),
        ({"SmsMessageSid": "SM" + "b" * 32}, "SmsMessageSid"),
        ({"AccountSid": "AC123"}, "AccountSid"),
        ({"AccountSid": ""}, "AccountSid"),
        ({"MessagingServiceSid": "MG" + "0" * 31 + "NumMedia0"}, "MessagingServiceSid"),
    ],
)
async def test_malformed_sids_are_400_and_not_stored(
    ingest: Ingest, pool: asyncpg.Pool, change: dict[str, str], field: str
) -> None:
    form = {**inbound_form(), **change}
    status, text = await ingest.post_twilio("/twilio/sms", form)
    assert status == 400, text
    assert field in json.loads(text)["error"]
    assert await pool.fetchval("SELECT count(*) FROM inbound_messages") == 0


async def test_status_callback_status_must_be_twilios(ingest: Ingest, bus: Bus) -> None:
    sid = message_sid()
    for bad in ({"MessageStatus": "delivered!", "SmsStatus": "delivered!"}, {"SmsSid": message_sid()}):
        status, text = await ingest.post_twilio("/twilio/status", status_form(sid, "sent", **bad))
        assert status == 400, text
    assert await count_on_subject(bus, bus.subject_for("outbound.status", "15551234567")) == 0


def test_sid_patterns_and_statuses_are_twilios_own() -> None:
    """The formats ingest enforces are the ones Twilio's OpenAPI description states."""
    spec = json.loads(SPEC.read_text())
    message = spec["components"]["schemas"]["api.v2010.account.message"]["properties"]
    assert twilio_payload.MESSAGE_SID_PATTERN == message["sid"]["pattern"]
    assert twilio_payload.ACCOUNT_SID_PATTERN == message["account_sid"]["pattern"]
    assert twilio_payload.MESSAGING_SERVICE_SID_PATTERN == message["messaging_service_sid"]["pattern"]
    statuses = spec["components"]["schemas"]["message_enum_status"]["enum"]
    assert set(get_args(twilio_payload.MessageStatus)) == set(statuses)


# -- 14. non-ASCII bearer tokens ----------------------------------------------------------


async def raw_get(url: str, path: str, headers: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 GET with header bytes exactly as given (clients refuse to send some)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n".encode()
            + headers
            + b"\r\n"
        )
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest


@pytest.mark.parametrize("bootstrap", ["", "rl_settings_token_0123456789"], ids=["db-only", "bootstrap"])
async def test_non_ascii_bearer_token_is_401_not_503(
    ingest_settings: Callable[..., IngestSettings], bootstrap: str
) -> None:
    settings = ingest_settings(api_token=bootstrap)
    service, url = await start_ingest(settings)
    try:
        for header in (
            "Authorization: Bearer tökén-ünïcode\r\n".encode(),  # valid UTF-8, not ASCII
            b"Authorization: Bearer \xff\xfe\xfd\r\n",  # not UTF-8 at all
            "Authorization: Bearer rl_😸\r\n".encode(),
        ):
            for path in ("/api/drafts", "/api/queue"):
                status, rest = await raw_get(url, path, header)
                assert status == 401, (header, rest[:300])
                assert b"Retry-After" not in rest
    finally:
        await service.stop()


# -- 15. /metrics and /health/system off the public port ---------------------------------


async def test_metrics_and_system_health_need_a_token_on_the_public_port(
    ingest_settings: Callable[..., IngestSettings],
) -> None:
    token = "rl_settings_token_for_monitoring"
    settings = ingest_settings(api_token=token, health_port=0)
    service, url = await start_ingest(settings)
    try:
        async with aiohttp.ClientSession() as session:
            ingest = Ingest(url, PUBLIC, settings, session, service)
            for path in ("/metrics", "/health/system"):
                status, body = await ingest.request("GET", path)
                assert status == 401, (path, body)
                assert "replyline_" not in str(body) and "services" not in str(body)
                assert (await ingest.request("GET", path, token="wrong"))[0] == 401
            # Load balancers keep their probes on the public port.
            assert (await ingest.request("GET", "/health/live"))[0] == 200
            assert (await ingest.request("GET", "/health/ready"))[0] == 200
            # An admin token may read them there.
            status, text = await ingest.request("GET", "/metrics", token=token)
            assert status == 200 and "replyline_ingest_requests_total" in text
            status, body = await ingest.request("GET", "/health/system", token=token)
            assert status in (200, 503) and "services" in body

            # Without a token on the internal health port.
            internal = f"http://127.0.0.1:{service.ctx.health_port}"
            async with session.get(internal + "/metrics") as resp:
                assert resp.status == 200 and "replyline_ingest_requests_total" in await resp.text()
            async with session.get(internal + "/health/system") as resp:
                assert resp.status in (200, 503)
                assert "ingest" in (await resp.json())["services"]
    finally:
        await service.stop()


# -- 1. no public dev token on a reachable listener ------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.10", "replyline.example.com"])
@pytest.mark.parametrize("token", ["", DEV_TWILIO_AUTH_TOKEN], ids=["unset", "dev-token"])
def test_dev_webhook_token_is_refused_on_a_non_loopback_listener(host: str, token: str) -> None:
    with pytest.raises(ValueError, match="REPLYLINE_TWILIO_AUTH_TOKEN"):
        IngestSettings(http_host=host, twilio_auth_token=token)
    with pytest.raises(SettingsError, match="REPLYLINE_TWILIO_AUTH_TOKEN"):
        load(IngestSettings, env={"REPLYLINE_HTTP_HOST": host, "REPLYLINE_TWILIO_AUTH_TOKEN": token})
    # A real token is fine anywhere.
    assert IngestSettings(http_host=host, twilio_auth_token="a-real-twilio-token").http_host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_dev_webhook_token_is_fine_on_loopback(host: str) -> None:
    assert IngestSettings(http_host=host).webhook_auth_token == DEV_TWILIO_AUTH_TOKEN


def test_ingest_process_refuses_to_start_on_0000_with_the_dev_token() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLYLINE_")}
    env.update({"REPLYLINE_HTTP_HOST": "0.0.0.0", "REPLYLINE_NATS_URL": "nats://127.0.0.1:1"})
    proc = subprocess.run(
        [sys.executable, "-m", "services.ingest"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "REPLYLINE_TWILIO_AUTH_TOKEN" in proc.stderr


async def test_ingest_starts_on_loopback_with_the_dev_token(
    ingest_settings: Callable[..., IngestSettings], collector: EventCollector
) -> None:
    settings = ingest_settings(
        http_host="127.0.0.1", twilio_auth_token="", public_base_url="http://127.0.0.1:8080"
    )
    service, url = await start_ingest(settings)
    try:
        form = inbound_form("hello from the dev stack")
        sig = str(
            RequestValidator(DEV_TWILIO_AUTH_TOKEN).compute_signature(
                "http://127.0.0.1:8080/twilio/sms", form
            )
        )
        async with aiohttp.ClientSession() as session:
            async with session.post(
                url + "/twilio/sms", data=form, headers={"X-Twilio-Signature": sig}
            ) as resp:
                assert resp.status == 200
        await collector.wait_for(InboundReceived, lambda e: e.message_sid == form["MessageSid"])
    finally:
        await service.stop()


def test_every_webhook_generator_makes_valid_sids() -> None:
    """Fixtures, the bench, the fakes and `replyline sms` must post what Twilio posts, or
    the suites that drive ingest through them would be refused with 400."""
    import re

    from libs.settings import DEV_TWILIO_ACCOUNT_SID
    from replyline.commands import sms as sms_command
    from testsupport import stack as bench_stack
    from testsupport import stack_webhooks as bench_webhooks
    from testsupport.fakes import twilio_server

    sids = [message_sid(), bench_webhooks.new_sid(), sms_command.new_message_sid(False),
            sms_command.new_message_sid(True), inbound_form()["MessageSid"]]  # fmt: skip
    assert all(re.fullmatch(twilio_payload.MESSAGE_SID_PATTERN, s) for s in sids), sids
    accounts = [ACCOUNT_SID, bench_stack.ACCOUNT_SID, twilio_server.ACCOUNT_SID, DEV_TWILIO_ACCOUNT_SID]
    assert all(re.fullmatch(twilio_payload.ACCOUNT_SID_PATTERN, a) for a in accounts), accounts
    service = inbound_form()["MessagingServiceSid"]
    assert re.fullmatch(twilio_payload.MESSAGING_SERVICE_SID_PATTERN, service)
