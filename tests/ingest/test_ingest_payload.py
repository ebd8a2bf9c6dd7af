"""Parsing Twilio's inbound and status webhooks, and lead payloads (pure)."""

from __future__ import annotations

import random
from urllib.parse import parse_qsl, urlencode

import pytest

from services.ingest.leads import parse_lead
from services.ingest.twilio_payload import (
    PayloadError,
    parse_form,
    parse_inbound,
    parse_status,
    raw_form,
)
from testsupport.webhooks import inbound_form, status_form


def form_of(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


def test_inbound_fields_media_and_unknown_fields_are_kept() -> None:
    fields = inbound_form(
        "look",
        media=[("https://api.twilio.com/m/ME1", "image/jpeg"), ("https://x/2", "video/mp4")],
        BrandNewTwilioField="surprise",
    )
    form = parse_form(form_of(fields))
    sms = parse_inbound(form)
    assert sms.message_sid == fields["MessageSid"]
    assert (sms.from_number, sms.to_number, sms.body) == ("+15551234567", "+15550000000", "look")
    assert sms.num_media == 2
    assert [(m.url, m.content_type) for m in sms.media] == [
        ("https://api.twilio.com/m/ME1", "image/jpeg"),
        ("https://x/2", "video/mp4"),
    ]
    assert sms.messaging_service_sid.startswith("MG")
    assert raw_form(form)["BrandNewTwilioField"] == "surprise"
    assert raw_form(form) == fields


def test_spanish_and_emoji_survive_decoding() -> None:
    text = "¿Tienen cita el sábado? Gracias 😊 — ñandú"
    sms = parse_inbound(parse_form(form_of(inbound_form(text))))
    assert sms.body == text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"MessageSid": None}, "MessageSid"),
        ({"From": None}, "From"),
        ({"From": ""}, "From"),
        ({"NumMedia": "two"}, "NumMedia"),
        ({"NumMedia": "-1"}, "NumMedia"),
        ({"NumMedia": "1"}, "MediaUrl0"),
        ({"MessageSid": "SM../../etc"}, "MessageSid"),
        ({"NumSegments": "x"}, "NumSegments"),
    ],
)
def test_malformed_inbound_is_a_payload_error(change: dict[str, str | None], message: str) -> None:
    fields = inbound_form()
    for key, value in change.items():
        if value is None:
            del fields[key]
        else:
            fields[key] = value
    with pytest.raises(PayloadError, match=message):
        parse_inbound(parse_form(form_of(fields)))


@pytest.mark.parametrize(
    "body",
    [b"Body=caf\xe9&From=%2B1555", b"Body=%FF%FE&From=%2B1555", b"Body=a%00b&From=x"],
)
def test_invalid_utf8_or_nul_is_a_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_form(body)


def test_status_callback_with_and_without_error_code() -> None:
    ok = parse_status(parse_form(form_of(status_form("SM" + "1" * 32, "delivered"))))
    assert (ok.message_status, ok.error_code) == ("delivered", None)
    failed = parse_status(
        parse_form(form_of(status_form("SM" + "1" * 32, "undelivered", ErrorCode=30007)))
    )
    assert (failed.message_status, failed.error_code) == ("undelivered", 30007)
    legacy = {"SmsSid": "SM" + "2" * 32, "SmsStatus": "sent", "To": "+1555", "ErrorCode": ""}
    assert parse_status(parse_form(form_of(legacy))).message_status == "sent"
    with pytest.raises(PayloadError):
        parse_status(parse_form(form_of({"MessageSid": "SM" + "1" * 32})))


def test_lead_normalizes_phone_and_keeps_custom_fields() -> None:
    lead = parse_lead(
        {
            "phone": "(555) 123-4567",
            "first_name": "Ana",
            "email": "ana@example.com",
            "source": "facebook_ad",
            "tags": ["new", "new", "spring"],
            "budget": "2000",
            "fields": {"service": "haircut"},
        },
        default_region="US",
    )
    assert (lead.phone, lead.thread) == ("+15551234567", "15551234567")
    assert lead.first_name == "Ana" and lead.source == "facebook_ad"
    assert lead.tags == ("new", "spring")
    assert lead.fields == {"budget": "2000", "service": "haircut"}
    spanish = parse_lead({"phone": "612 34 56 78"}, default_region="ES")
    assert spanish.phone == "+34612345678"


def test_lead_id_makes_retries_one_lead() -> None:
    a = parse_lead({"phone": "+15551234567", "lead_id": "form-42"}, default_region="US")
    b = parse_lead({"phone": "+15551234567"}, default_region="US", idempotency_key="form-42")
    assert a.dedup_id() == b.dedup_id()
    c = parse_lead({"phone": "+15551234567"}, default_region="US")
    assert c.dedup_id() != a.dedup_id()


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"phone": "hello"},
        {"phone": "+1 555"},
        {"phone": "+15551234567", "tags": [1]},
        {"phone": "+15551234567", "fields": []},
        {"phone": "+15551234567", "lead_id": "a\nb"},
    ],
)
def test_bad_leads_are_payload_errors(data: dict[str, object]) -> None:
    with pytest.raises(PayloadError):
        parse_lead(data, default_region="US")


def test_form_parsing_answers_what_parse_qsl_answers() -> None:
    # parse_form's own loop replaced parse_qsl on the webhook path: same pairs, same refusals.
    rng = random.Random(15)
    pieces = ["a", "B", "=", "&", "+", "%", "%2B", "%20", "%C3%A9", "%C3", "%zz", "%00", "é", "😀", "\x00", ""]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        try:
            expected: object = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            expected = PayloadError
        try:
            form = parse_form(text.encode("utf-8"))
            got: object = list(form.items())
        except PayloadError:
            got = PayloadError
        if expected is not PayloadError and any("\x00" in k + v for k, v in expected):  # type: ignore[attr-defined]
            expected = PayloadError  # parse_form's own rule: Postgres text holds no NUL
        assert got == expected, text
