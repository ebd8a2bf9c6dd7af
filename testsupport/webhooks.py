"""Twilio-shaped webhook payloads for the tests and benchmarks, signed with the twilio library."""

from __future__ import annotations

import secrets
from typing import Any

from twilio.request_validator import RequestValidator

AUTH_TOKEN = "test-auth-token-5f1c2a"
ACCOUNT_SID = "AC" + "a1b2c3d4" * 4
BUSINESS = "+15550000000"


def message_sid() -> str:
    return "SM" + secrets.token_hex(16)


def inbound_form(
    body: str = "Hi, are you open on Saturday?",
    *,
    from_number: str = "+15551234567",
    to_number: str = BUSINESS,
    sid: str | None = None,
    media: list[tuple[str, str]] | None = None,
    **extra: str,
) -> dict[str, str]:
    """Every field of a real inbound-message webhook as Twilio posts it (2010-04-01 API)."""
    sid = sid or message_sid()
    media = media or []
    form = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": str(len(media)),
        "ToCity": "SAN FRANCISCO",
        "FromZip": "94105",
        "SmsSid": sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO",
        "Body": body,
        "FromCountry": "US",
        "To": to_number,
        "MessagingServiceSid": "MG" + "0f" * 16,
        "ToZip": "94105",
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": from_number,
        "ApiVersion": "2010-04-01",
    }
    for index, (url, content_type) in enumerate(media):
        form[f"MediaUrl{index}"] = url
        form[f"MediaContentType{index}"] = content_type
    form.update(extra)
    return form


def status_form(sid: str, status: str, *, to: str = "+15551234567", **extra: Any) -> dict[str, str]:
    form = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "From": BUSINESS,
        "To": to,
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
    }
    form.update({k: str(v) for k, v in extra.items()})
    return form


def signature(url: str, form: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, form))


def signed(url: str, form: dict[str, str], token: str = AUTH_TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": signature(url, form, token)}
