"""The Twilio transport against the fake Messages API (the real `twilio` client on the wire)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from libs.settings import DEV_TWILIO_AUTH_TOKEN, load
from services.sender.console import CONSOLE_SID_PREFIX, ConsoleTransport
from services.sender.service import make_transport
from services.sender.settings import SenderSettings
from services.sender.transport import SendFailure, SendResult, SendUnknown
from services.sender.twilio_transport import TwilioTransport
from testsupport.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, TwilioError, error

FROM = "+15005550006"
LEAD = "+12125550123"
CALLBACK = "https://replyline.example.com/twilio/status"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as server:
        yield server


@pytest.fixture
async def transport(fake: FakeTwilio) -> AsyncIterator[TwilioTransport]:
    t = TwilioTransport(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        from_number=FROM,
        status_callback_url=CALLBACK,
        api_base_url=fake.base_url,
        timeout=5,
    )
    yield t
    await t.close()


async def test_send_reaches_fake_with_spec_conforming_request(
    fake: FakeTwilio, transport: TwilioTransport
) -> None:
    outcome = await transport.send(to=LEAD, body="Hi! We can come Tuesday.")
    assert isinstance(outcome, SendResult)
    assert outcome.status == "queued"
    assert fake.violations == []
    [message] = fake.messages
    assert message["sid"] == outcome.provider_sid
    assert (message["to"], message["from"], message["body"]) == (
        LEAD,
        FROM,
        "Hi! We can come Tuesday.",
    )
    [create] = fake.creates
    assert create["StatusCallback"] == [CALLBACK]


async def test_messaging_service_and_media(fake: FakeTwilio) -> None:
    service = "MG" + "a" * 32
    t = TwilioTransport(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        messaging_service_sid=service,
        api_base_url=fake.base_url,
    )
    try:
        outcome = await t.send(
            to=LEAD, body="", media_urls=["https://x.example/a.png", "https://x.example/b.png"]
        )
        assert isinstance(outcome, SendResult)
        assert outcome.provider_sid.startswith("MM")
        assert fake.violations == []
        [create] = fake.creates
        assert create["MessagingServiceSid"] == [service]
        assert "From" not in create and "StatusCallback" not in create
        assert create["MediaUrl"] == ["https://x.example/a.png", "https://x.example/b.png"]
        found = await t.find_sent(to=LEAD, since=datetime.now(UTC) - timedelta(minutes=1))
        assert [m.sid for m in found] == [outcome.provider_sid]
    finally:
        await t.close()


@pytest.mark.parametrize(
    ("err", "transient"),
    [
        (error(20429), True),
        (error(20500), True),
        (error(20503), True),
        (TwilioError(502, 20502, "Bad Gateway"), True),
        (error(21610), False),
        (error(21211), False),
        (error(21614), False),
        (error(21408), False),
        (error(30004), False),
        (error(30005), False),
        (error(30006), False),
        (error(30007), False),
        (error(30034), False),
        (TwilioError(401, 20003, "Authenticate"), False),
    ],
)
async def test_error_classification(
    fake: FakeTwilio, transport: TwilioTransport, err: TwilioError, transient: bool
) -> None:
    fake.fail_to(LEAD, err, times=1)
    outcome = await transport.send(to=LEAD, body="hello")
    assert isinstance(outcome, SendFailure)
    assert (outcome.transient, outcome.code, outcome.http_status) == (
        transient,
        err.code,
        err.http_status,
    )
    assert err.message in outcome.message
    # The client itself never re-posted: exactly one create reached the fake.
    assert len(fake.creates) == 1
    assert fake.messages == []
    again = await transport.send(to=LEAD, body="hello")
    assert isinstance(again, SendResult)
    assert fake.violations == []


async def test_connection_refused_is_transient_and_timeout_is_unknown(fake: FakeTwilio) -> None:
    # A port nothing listens on: the request never left, so a retry is safe.
    refused = TwilioTransport(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        from_number=FROM,
        api_base_url="http://127.0.0.1:9",
    )
    try:
        outcome = await refused.send(to=LEAD, body="x")
        assert isinstance(outcome, SendFailure) and outcome.transient
    finally:
        await refused.close()

    slow = TwilioTransport(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        from_number=FROM,
        api_base_url=fake.base_url,
        timeout=0.3,
    )

    async def stall(_resource: dict[str, object]) -> None:
        await asyncio.sleep(2)  # the provider hangs past the transport's timeout

    fake.on_create = stall
    try:
        outcome = await slow.send(to=LEAD, body="maybe sent")
        # Twilio accepted it but the answer never came: the transport must not claim either way.
        assert isinstance(outcome, SendUnknown)
        assert len(fake.messages) == 1
    finally:
        await slow.close()


async def test_find_sent_filters_and_pages(fake: FakeTwilio, transport: TwilioTransport) -> None:
    other = "+13125550199"
    before = datetime.now(UTC) - timedelta(seconds=1)
    sids = []
    for i in range(120):
        outcome = await transport.send(to=LEAD, body=f"msg {i}")
        assert isinstance(outcome, SendResult)
        sids.append(outcome.provider_sid)
    await transport.send(to=other, body="not for the lead")
    found = await transport.find_sent(to=LEAD, since=before)
    # Newest first, across pages of 100, only the lead's messages.
    assert [m.sid for m in found] == list(reversed(sids))
    assert {m.from_ for m in found} == {FROM}
    list_requests = [r for r in fake.requests if r.method == "GET"]
    assert len(list_requests) == 2
    assert ("To", LEAD) in list_requests[0].query and ("From", FROM) in list_requests[0].query
    assert any(k == "DateSent>" for k, _ in list_requests[0].query)
    assert await transport.find_sent(to=LEAD, since=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert fake.violations == []


async def test_fake_rejects_requests_that_break_the_spec(fake: FakeTwilio) -> None:
    url = f"{fake.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    auth = {"Authorization": aiohttp.encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN)}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data={"To": LEAD, "Body": "no sender"}, headers=auth) as resp:
            assert resp.status == 400
        async with session.post(
            url, data={"To": LEAD, "From": FROM, "Body": "x", "Bogus": "1"}, headers=auth
        ) as resp:
            assert resp.status == 400
        async with session.post(url, data={"To": LEAD, "From": FROM, "Body": "x"}) as resp:
            assert resp.status == 400
        async with session.post(
            url, json={"To": LEAD, "From": FROM, "Body": "x"}, headers=auth
        ) as resp:
            assert resp.status == 400
        async with session.get(url, params={"Status": "sent"}, headers=auth) as resp:
            assert resp.status == 400
        async with session.post(
            url, data={"To": LEAD, "From": FROM, "Body": "ok"}, headers=auth
        ) as resp:
            assert resp.status == 201
    assert [r.status for r in fake.requests] == [400, 400, 400, 400, 400, 201]
    assert all(r.violations for r in fake.requests[:5]) and not fake.requests[5].violations
    assert any("From / MessagingServiceSid" in v for v in fake.violations)
    assert any("'Bogus'" in v for v in fake.violations)
    assert any("Basic" in v for v in fake.violations)
    assert any("Content-Type" in v for v in fake.violations)
    assert any("'Status'" in v for v in fake.violations)
    assert len(fake.messages) == 1


async def test_console_transport_logs_and_returns_fake_sid() -> None:
    console = ConsoleTransport(from_number=FROM)
    outcome = await console.send(to=LEAD, body="hello from the console")
    assert isinstance(outcome, SendResult)
    assert outcome.provider_sid.startswith(CONSOLE_SID_PREFIX) and len(outcome.provider_sid) == 34
    found = await console.find_sent(to=LEAD, since=datetime.now(UTC) - timedelta(minutes=1))
    assert [m.sid for m in found] == [outcome.provider_sid]


async def test_fake_posts_signed_status_callbacks(fake: FakeTwilio) -> None:
    from aiohttp import web
    from twilio.request_validator import RequestValidator

    received: list[dict[str, str]] = []
    app = web.Application()

    async def status(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        valid = RequestValidator(AUTH_TOKEN).validate(
            str(request.url), form, request.headers["X-Twilio-Signature"]
        )
        received.append(form)
        return web.Response(status=204 if valid else 403)

    app.router.add_post("/twilio/status", status)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    t = TwilioTransport(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        from_number=FROM,
        status_callback_url=f"http://127.0.0.1:{port}/twilio/status",
        api_base_url=fake.base_url,
    )
    try:
        outcome = await t.send(to=LEAD, body="hello")
        assert isinstance(outcome, SendResult)
        assert await fake.send_status(outcome.provider_sid, "undelivered", 30007) == 204
        [form] = received
        assert (form["MessageSid"], form["MessageStatus"], form["ErrorCode"]) == (
            outcome.provider_sid,
            "undelivered",
            "30007",
        )
        assert fake.messages[0]["status"] == "undelivered"
    finally:
        await t.close()
        await runner.cleanup()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "console"),
        (
            {
                "REPLYLINE_TWILIO_AUTH_TOKEN": DEV_TWILIO_AUTH_TOKEN,
                "REPLYLINE_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            },
            "console",
        ),
        (
            {
                "REPLYLINE_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "REPLYLINE_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            },
            "twilio",
        ),
        (
            {
                "REPLYLINE_SENDER_TRANSPORT": "console",
                "REPLYLINE_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "REPLYLINE_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            },
            "console",
        ),
    ],
)
async def test_transport_choice(env: dict[str, str], expected: str) -> None:
    transport = make_transport(load(SenderSettings, env=env))
    try:
        assert transport.name == expected
    finally:
        await transport.close()
