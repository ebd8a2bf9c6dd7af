"""Sends SMS through the real `twilio` client and its aiohttp-based async HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog
from twilio.base import values
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from services.sender.transport import (
    ProviderMessage,
    SendFailure,
    SendOutcome,
    SendResult,
    SendUnknown,
    classify,
)

log = structlog.get_logger("sender.twilio")


class TwilioTransport:
    """One Twilio client and one aiohttp session for the process lifetime.

    ``max_retries`` stays unset on :class:`AsyncTwilioHttpClient`, so the client never
    re-POSTs a create on its own: every retry is the outbox's decision, made after
    it knows whether the first attempt reached Twilio.
    """

    name = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str = "",
        messaging_service_sid: str = "",
        status_callback_url: str = "",
        api_base_url: str = "",
        timeout: float = 15.0,
    ) -> None:
        if not from_number and not messaging_service_sid:
            raise ValueError("a Twilio sender needs a from number or a Messaging Service SID")
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.status_callback_url = status_callback_url
        # AsyncTwilioHttpClient ignores its own ``timeout`` (twilio 9.x), so calls are
        # bounded with asyncio.timeout instead.
        self.timeout = timeout
        self.http = AsyncTwilioHttpClient()
        # environment={} so the client never reads TWILIO_* variables behind the settings' back.
        self.client = Client(account_sid, auth_token, http_client=self.http, environment={})
        if api_base_url:
            # The client builds every URL from its domain's base_url; tests and proxies set it.
            self.client.api.base_url = api_base_url.rstrip("/")

    async def close(self) -> None:
        await self.http.close()

    def _sender_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        if self.from_number:
            params["from_"] = self.from_number
        return params

    async def send(self, *, to: str, body: str, media_urls: Sequence[str] = ()) -> SendOutcome:
        params = self._sender_params()
        if self.status_callback_url:
            params["status_callback"] = self.status_callback_url
        if media_urls:
            params["media_url"] = list(media_urls)
        try:
            async with asyncio.timeout(self.timeout):
                message = await self.client.api.account.messages.create_async(
                    to=to, body=body, **params
                )
        except TwilioRestException as exc:
            return classify(exc.status, exc.code, exc.msg)
        except TwilioServiceException as exc:
            return classify(exc.status, exc.code, exc.detail or exc.title)
        except aiohttp.ClientConnectorError as exc:
            # The TCP connection never opened: Twilio cannot have seen the request.
            return SendFailure(transient=True, message=f"connect failed: {exc}")
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            # The request may have been processed; only a provider lookup can tell.
            return SendUnknown(message=f"{type(exc).__name__}: {exc}")
        if not message.sid:
            return SendUnknown(message="Twilio answered without a message sid")
        return SendResult(provider_sid=message.sid, status=str(message.status or "queued"))

    async def find_sent(self, *, to: str, since: datetime) -> list[ProviderMessage]:
        # DateSent filters are documented at day granularity: ask for the whole day,
        # then compare exact creation times here.
        day_start = since.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        async with asyncio.timeout(self.timeout * 4):
            found = await self.client.api.account.messages.list_async(
                to=to,
                from_=self.from_number or values.unset,
                date_sent_after=day_start,
                page_size=100,
                limit=1000,
            )
        result = []
        for m in found:
            if m.date_created is not None and m.date_created < since:
                continue
            if self.messaging_service_sid and not self.from_number:
                if m.messaging_service_sid != self.messaging_service_sid:
                    continue
            result.append(
                ProviderMessage(
                    sid=str(m.sid),
                    to=str(m.to),
                    from_=m.from_,
                    body=m.body or "",
                    status=str(m.status),
                    date_created=m.date_created,
                    messaging_service_sid=m.messaging_service_sid,
                )
            )
        return result
