"""What a transport returns, and how provider errors are classified.

A send has three possible outcomes, and the outbox treats them differently:

- :class:`SendResult`: the provider accepted the message (we have its sid).
- :class:`SendFailure`: the provider refused it. ``transient`` failures (rate
  limits, provider 5xx, a connection that never reached the provider) are retried
  with backoff; permanent ones never are.
- :class:`SendUnknown`: the request may have reached the provider but no answer
  came back (timeout, dropped connection). Resending blindly could text the lead
  twice, so the outbox reconciles by listing the provider's messages first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import msgspec

#: Twilio error codes that no retry can fix (see docs/sender.md).
PERMANENT_CODES = frozenset({21610, 21211, 21614, 21408, 30004, 30005, 30006, 30007, 30034})
#: Codes meaning the recipient asked not to be texted: the consent projection learns from them.
UNSUBSCRIBED_CODES = frozenset({21610})
#: Codes meaning the number itself is unusable (bad, landline, unreachable).
BAD_NUMBER_CODES = frozenset({21211, 21614, 30005, 30006})


class SendResult(msgspec.Struct, frozen=True, kw_only=True):
    provider_sid: str
    status: str


class SendFailure(msgspec.Struct, frozen=True, kw_only=True):
    transient: bool
    code: int | None = None
    http_status: int | None = None
    message: str = ""


class SendUnknown(msgspec.Struct, frozen=True, kw_only=True):
    message: str


SendOutcome = SendResult | SendFailure | SendUnknown


class ProviderMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message as the provider's list API reports it (for reconciliation)."""

    sid: str
    to: str
    from_: str | None
    body: str
    status: str
    date_created: datetime | None
    messaging_service_sid: str | None = None


class Transport(Protocol):
    name: str

    async def send(self, *, to: str, body: str, media_urls: Sequence[str] = ()) -> SendOutcome: ...

    async def find_sent(self, *, to: str, since: datetime) -> list[ProviderMessage]:
        """Messages this transport's sender sent to ``to`` since ``since``, newest first."""
        ...

    async def close(self) -> None: ...


def classify(http_status: int | None, code: int | None, message: str = "") -> SendFailure:
    """Map a provider error to a typed failure: retry only what can succeed later."""
    if code in PERMANENT_CODES:
        return SendFailure(transient=False, code=code, http_status=http_status, message=message)
    transient = http_status is not None and (http_status == 429 or http_status >= 500)
    transient = transient or code == 20429
    # Any other 4xx is a request Twilio will refuse again (bad auth, bad sender): no blind retries.
    return SendFailure(transient=transient, code=code, http_status=http_status, message=message)
