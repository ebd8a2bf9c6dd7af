"""The webhook HTTP layer with in-memory ports: signatures, status codes, limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer

from libs.events import Event
from services.ingest.app import EMPTY_TWIML, create_app
from services.ingest.auth import Principal
from services.ingest.http_common import IngestDeps
from services.ingest.recorder import Recorded
from services.ingest.settings import IngestSettings
from services.ingest.twilio_payload import InboundSms, RawForm
from testsupport.webhooks import AUTH_TOKEN, inbound_form, signed

PUBLIC = "https://example.ngrok.app"


@dataclass
class FakeRecorder:
    records: list[tuple[InboundSms, RawForm]] = field(default_factory=list)
    fail: Exception | None = None

    async def record(self, sms: InboundSms, raw: RawForm) -> Recorded:
        if self.fail is not None:
            raise self.fail
        duplicate = any(s.message_sid == sms.message_sid for s, _ in self.records)
        if not duplicate:
            self.records.append((sms, raw))
        return Recorded(duplicate, "t")


class NoTokens:
    async def verify(self, token: str) -> Principal | None:
        return None


class NoDrafter:
    async def call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("not used")


@pytest.fixture
def recorder() -> FakeRecorder:
    return FakeRecorder()


@pytest.fixture
async def client(recorder: FakeRecorder) -> AsyncIterator[TestClient[Any, Any]]:
    published: list[Event] = []

    async def publish(event: Event) -> int:
        published.append(event)
        return len(published)

    async def audit(*_: Any) -> None:
        return None

    settings = IngestSettings(
        twilio_auth_token=AUTH_TOKEN, public_base_url=PUBLIC, max_body_bytes=8 * 1024
    )
    deps = IngestDeps(
        recorder=recorder,
        publish=publish,
        tokens=NoTokens(),
        drafter=NoDrafter(),
        audit=audit,
        audited=audit,
    )
    async with TestClient(TestServer(create_app(settings, deps))) as c:
        yield c


async def test_signed_webhook_gets_empty_twiml(
    client: TestClient[Any, Any], recorder: FakeRecorder
) -> None:
    form = inbound_form("hello")
    resp = await client.post("/twilio/sms", data=form, headers=signed(PUBLIC + "/twilio/sms", form))
    assert resp.status == 200
    assert resp.content_type == "text/xml"
    assert await resp.text() == EMPTY_TWIML
    assert [s.body for s, _ in recorder.records] == ["hello"]


async def test_signature_of_the_local_url_is_refused_behind_a_proxy(
    client: TestClient[Any, Any], recorder: FakeRecorder
) -> None:
    """The classic failure: signing what the app sees instead of what Twilio called."""
    form = inbound_form()
    local = str(client.make_url("/twilio/sms"))
    for url in (local, "http://example.ngrok.app/twilio/sms", PUBLIC + ":8443/twilio/sms"):
        resp = await client.post("/twilio/sms", data=form, headers=signed(url, form))
        assert resp.status == 403, url
    # The default port is the same URL: Twilio sometimes signs it explicitly.
    resp = await client.post(
        "/twilio/sms", data=form, headers=signed(PUBLIC + ":443/twilio/sms", form)
    )
    assert resp.status == 200
    assert len(recorder.records) == 1


async def test_query_string_is_part_of_the_signed_url(client: TestClient[Any, Any]) -> None:
    form = inbound_form()
    headers = signed(PUBLIC + "/twilio/sms?site=main", form)
    assert (await client.post("/twilio/sms?site=main", data=form, headers=headers)).status == 200
    assert (await client.post("/twilio/sms?site=other", data=form, headers=headers)).status == 403


@pytest.mark.parametrize("case", ["missing", "wrong_token", "tampered", "garbage"])
async def test_bad_signatures_are_403(
    client: TestClient[Any, Any], recorder: FakeRecorder, case: str
) -> None:
    form = inbound_form("pay me")
    url = PUBLIC + "/twilio/sms"
    headers = {
        "missing": {},
        "wrong_token": signed(url, form, token="not-the-token"),
        "tampered": signed(url, {**form, "Body": "original"}),
        "garbage": {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
    }[case]
    resp = await client.post("/twilio/sms", data=form, headers=headers)
    assert resp.status == 403
    assert recorder.records == []


@pytest.mark.parametrize(
    "change",
    [{"NumMedia": "lots"}, {"MessageSid": None}, {"From": None}, {"NumMedia": "2"}],
)
async def test_signed_but_malformed_is_400(
    client: TestClient[Any, Any], recorder: FakeRecorder, change: dict[str, str | None]
) -> None:
    form = inbound_form()
    for key, value in change.items():
        if value is None:
            del form[key]
        else:
            form[key] = value
    resp = await client.post("/twilio/sms", data=form, headers=signed(PUBLIC + "/twilio/sms", form))
    assert resp.status == 400
    assert "error" in await resp.json()
    assert recorder.records == []


async def test_wrong_content_type_and_bad_utf8_are_400(client: TestClient[Any, Any]) -> None:
    form = inbound_form()
    headers = signed(PUBLIC + "/twilio/sms", form)
    resp = await client.post("/twilio/sms", json=form, headers=headers)
    assert resp.status == 400
    body = urlencode(form).encode() + b"&Extra=caf\xe9"
    resp = await client.post(
        "/twilio/sms",
        data=body,
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 400
    assert "UTF-8" in (await resp.json())["error"]


async def test_oversized_body_is_413(client: TestClient[Any, Any], recorder: FakeRecorder) -> None:
    form = inbound_form("x" * 20_000)
    resp = await client.post("/twilio/sms", data=form, headers=signed(PUBLIC + "/twilio/sms", form))
    assert resp.status == 413
    assert recorder.records == []


async def test_storage_failure_is_503_so_twilio_retries(
    client: TestClient[Any, Any], recorder: FakeRecorder
) -> None:
    recorder.fail = ConnectionRefusedError("postgres down")
    form = inbound_form()
    headers = signed(PUBLIC + "/twilio/sms", form)
    resp = await client.post("/twilio/sms", data=form, headers=headers)
    assert resp.status == 503
    recorder.fail = None
    resp = await client.post("/twilio/sms", data=form, headers=headers)
    assert resp.status == 200
    assert len(recorder.records) == 1


async def test_sha256_signature_settings_header(client: TestClient[Any, Any]) -> None:
    from twilio.request_validator import RequestValidator

    form = inbound_form()
    sig = RequestValidator(AUTH_TOKEN).compute_signature(
        PUBLIC + "/twilio/sms", form, "HMAC_SHA256"
    )
    settings_header = "key=webhooks_sharedkey_x,algorithm=HMAC_SHA256"
    headers = {"X-Twilio-Signature": sig, "X-Twilio-Webhooks-Signature-Settings": settings_header}
    assert (await client.post("/twilio/sms", data=form, headers=headers)).status == 200
    sha1_headers = {**signed(PUBLIC + "/twilio/sms", form), **headers}
    sha1_headers["X-Twilio-Signature"] = signed(PUBLIC + "/twilio/sms", form)["X-Twilio-Signature"]
    assert (await client.post("/twilio/sms", data=form, headers=sha1_headers)).status == 403


def test_a_public_deployment_needs_a_real_auth_token() -> None:
    with pytest.raises(ValueError, match="twilio_auth_token"):
        IngestSettings(public_base_url="https://example.ngrok.app")
    assert IngestSettings().webhook_auth_token  # local dev stack: the shared dev token
