"""Twilio-signed inbound webhooks, pre-generated so every request is a new real message.

The form has every field Twilio posts for an inbound SMS (2010-04-01 API) and is
signed with the twilio library's own ``RequestValidator`` for the public URL, as
Twilio signs what is configured in its console.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from testsupport.stack import ACCOUNT_SID, AUTH_TOKEN, BUSINESS, PUBLIC_BASE_URL
from testsupport.webhooks import inbound_form as twilio_inbound_form

SMS_PATH = "/twilio/sms"
#: A question the router drafts for (English, neutral, a known intent).
LEAD_TEXT = "Hi, how much does drain cleaning cost for a kitchen sink?"


def new_sid() -> str:
    return "SM" + secrets.token_hex(16)


def inbound_form(sid: str, from_number: str, body: str, to_number: str = BUSINESS) -> dict[str, str]:
    """Every field Twilio posts for an inbound SMS (one definition, shared with the tests)."""
    return twilio_inbound_form(
        body, from_number=from_number, to_number=to_number, sid=sid, AccountSid=ACCOUNT_SID
    )


_validator = RequestValidator(AUTH_TOKEN)


def sign(form: dict[str, str], path: str = SMS_PATH, token: str = AUTH_TOKEN) -> str:
    validator = _validator if token == AUTH_TOKEN else RequestValidator(token)
    return str(validator.compute_signature(PUBLIC_BASE_URL + path, form))


@dataclass(frozen=True, slots=True)
class SignedRequest:
    sid: str
    from_number: str
    body: bytes  # application/x-www-form-urlencoded
    signature: str

    def raw_http(self, host: str, path: str = SMS_PATH) -> bytes:
        """The whole HTTP/1.1 request, for the open-loop generator."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: {self.signature}\r\nContent-Length: {len(self.body)}\r\n\r\n"
        )
        return head.encode() + self.body


def lead_numbers(start: int = 0) -> Iterator[str]:
    """Distinct valid US mobile-looking numbers (+1 212 55x xxxx)."""
    for n in itertools.count(start):
        yield f"+1212{5500000 + n % 4_500_000:07d}"


def signed_inbound(
    count: int, *, body: str = LEAD_TEXT, distinct_senders: bool = True, start: int = 0
) -> list[SignedRequest]:
    numbers = lead_numbers(start)
    fixed = next(lead_numbers(start))
    out: list[SignedRequest] = []
    for _ in range(count):
        sid = new_sid()
        sender = next(numbers) if distinct_senders else fixed
        form = inbound_form(sid, sender, body)
        out.append(SignedRequest(sid, sender, urlencode(form).encode(), sign(form)))
    return out


def write_wrk_file(requests: list[SignedRequest], path: Path) -> None:
    """One request a line: ``signature<TAB>body`` (urlencoded bodies hold no tab or newline)."""
    with path.open("wb") as f:
        for r in requests:
            f.write(r.signature.encode() + b"\t" + r.body + b"\n")
