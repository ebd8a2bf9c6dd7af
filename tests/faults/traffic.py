"""Traffic for the fault-injection tests: Twilio-like webhook posting and a bus follower.

``Twilio.post`` behaves like a Twilio webhook with connection overrides: it resends
the same signed request (same MessageSid) until ingest answers 200, through
refused connections (ingest killed) and 503s (NATS or Postgres away).
``Follower`` reads events from the stream with an ordered JetStream consumer, which
survives a nats-server restart without gaps (a plain subscription would miss what
was published while it reconnected).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp
import nats
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from libs.events import Event, decode
from libs.settings import nats_servers
from testsupport.stack_webhooks import SMS_PATH, inbound_form, new_sid, sign


async def _quiet(exc: Exception) -> None:
    """Connection errors while a server restarts are expected; nats-py would log each."""


@dataclass
class PostLog:
    accepted: dict[str, str] = field(default_factory=dict)  # MessageSid -> sender
    attempts: int = 0
    transient: dict[str, int] = field(default_factory=dict)  # reason -> count
    refused: list[tuple[str, int, str]] = field(default_factory=list)  # non-retryable answers
    server_errors: list[tuple[str, int]] = field(default_factory=list)  # 5xx other than 503


class Twilio:
    def __init__(self, ingest_url: str, session: aiohttp.ClientSession) -> None:
        self.url = ingest_url
        self.http = session
        self.log = PostLog()

    async def post(self, sender: str, body: str, *, give_up_after: float = 90.0) -> str:
        sid = new_sid()
        form = inbound_form(sid, sender, body)
        data = urlencode(form).encode()
        headers = {"X-Twilio-Signature": sign(form),
                   "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + give_up_after
        while True:
            self.log.attempts += 1
            try:
                async with self.http.post(self.url + SMS_PATH, data=data, headers=headers) as resp:
                    text = await resp.text()
                    if resp.status == 200:
                        self.log.accepted[sid] = sender
                        return sid
                    if resp.status == 503:
                        reason = "503"
                    elif resp.status >= 500:
                        self.log.server_errors.append((sid, resp.status))
                        reason = str(resp.status)
                    else:
                        self.log.refused.append((sid, resp.status, text[:200]))
                        return sid
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = type(exc).__name__
            self.log.transient[reason] = self.log.transient.get(reason, 0) + 1
            if loop.time() > deadline:
                raise TimeoutError(f"webhook {sid} not accepted within {give_up_after}s")
            await asyncio.sleep(0.3)  # Twilio's retry pace, as a webhook sender would


class Follower:
    """Every event on ``subject`` in ``stream``, from the first, across server restarts."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.changed = asyncio.Event()
        self.on_event: Callable[[Event], None] | None = None
        self._nc: nats.NATS | None = None

    async def start(self, url: str, stream: str, subject: str) -> Follower:
        self._nc = await nats.connect(
            nats_servers(url), max_reconnect_attempts=-1, reconnect_time_wait=0.25, error_cb=_quiet
        )
        js = self._nc.jetstream()

        async def on_msg(msg: Msg) -> None:
            with contextlib.suppress(Exception):  # poisoned test events are not ours to decode
                event = decode(msg.data)
                self.events.append(event)
                if self.on_event is not None:
                    self.on_event(event)
                self.changed.set()

        await js.subscribe(subject, stream=stream, cb=on_msg, ordered_consumer=True,
                           config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))  # fmt: skip
        return self

    def of_type(self, cls: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, cls)]

    async def wait_for(self, check: Callable[[], bool], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not check():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.5))
        return True

    async def stop(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
