"""The transport used when no Twilio credentials are configured: it logs instead of sending."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

from services.sender.transport import ProviderMessage, SendOutcome, SendResult

log = structlog.get_logger("sender.console")

CONSOLE_SID_PREFIX = "SMconsole"


class ConsoleTransport:
    """Logs each message and returns a fake sid shaped like Twilio's (34 characters).

    It remembers what it "sent" in memory only, so reconciliation after a crash finds
    nothing and the message is logged again: harmless, nothing left the machine.
    """

    name = "console"

    def __init__(self, from_number: str = "") -> None:
        self.from_number = from_number
        self.sent: list[ProviderMessage] = []

    async def send(self, *, to: str, body: str, media_urls: Sequence[str] = ()) -> SendOutcome:
        sid = CONSOLE_SID_PREFIX + secrets.token_hex(16)[: 34 - len(CONSOLE_SID_PREFIX)]
        log.info(
            "console_send",
            to=to,
            from_=self.from_number,
            body=body,
            media=list(media_urls),
            sid=sid,
        )
        self.sent.append(
            ProviderMessage(
                sid=sid,
                to=to,
                from_=self.from_number or None,
                body=body,
                status="sent",
                date_created=datetime.now(UTC),
            )
        )
        return SendResult(provider_sid=sid, status="sent")

    async def find_sent(self, *, to: str, since: datetime) -> list[ProviderMessage]:
        return [
            m
            for m in reversed(self.sent)
            if m.to == to and m.date_created is not None and m.date_created >= since
        ]

    async def close(self) -> None:
        return None
