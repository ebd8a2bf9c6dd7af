"""What a step asks for (effect values built by steps.py) and how the runner performs them.

``Publish`` is not performed here: the runner emits its event into the step's unit
(libs/event_outbox.py), so it commits with the step's rows and is published after
the commit (msg id: its dedup id). ``SetTimer``, ``WriteTag`` and ``WriteField`` are
deduplicated by the timer name or the enrollment's transaction. ``CallWebhook``
and ``SendEmail`` reach outside: the runner commits their execution row first
(``claim``), so a redelivery never repeats them; they return the step's output
or raise :class:`EffectFailed` for a failure that retrying will not fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg

from libs.events import Event, TimerKind

from . import webhook
from .emailer import Emailer, EmailError
from .store import Q, set_field
from .timers import TimerStore


@dataclass(frozen=True)
class Publish:
    event: Event
    msg_id: str | None = None


@dataclass(frozen=True)
class SetTimer:
    timer_id: str
    kind: TimerKind
    fire_at: datetime
    thread: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class WriteTag:
    tag: str
    added: bool


@dataclass(frozen=True)
class WriteField:
    field: str
    value: Any


#: An http step's call: the request ``webhook.call`` sends.
CallWebhook = webhook.Request


@dataclass(frozen=True)
class SendEmail:
    to: str
    subject: str
    body: str
    key: str


Effect = Publish | SetTimer | WriteTag | WriteField | CallWebhook | SendEmail
#: Effects outside the bus and the database: claimed (committed) before they run.
OUTSIDE = (CallWebhook, SendEmail)


class EffectFailed(Exception):
    """The effect failed for good (a dead webhook, an address the server refuses)."""


@dataclass(frozen=True)
class Effects:
    """Performs effects; everything it touches is handed in (the service wires it)."""

    timers: TimerStore
    emailer: Emailer
    http: aiohttp.ClientSession
    destinations: webhook.Destinations

    async def perform(self, conn: asyncpg.Connection, thread: str, effect: Effect) -> dict[str, Any] | None:
        """Run one effect in the step's transaction; an outside one returns the step's output.

        A ``Publish`` is the runner's to emit (into the step's unit), never performed here."""
        if isinstance(effect, Publish):
            raise TypeError("Publish effects are emitted by the runner into the step's unit")
        if isinstance(effect, SetTimer):
            await self.timers.set(
                effect.timer_id, effect.kind, effect.fire_at, thread=effect.thread, payload=effect.payload
            )
        elif isinstance(effect, WriteTag):
            await conn.execute(Q.add_tag if effect.added else Q.remove_tag, thread, effect.tag)
        elif isinstance(effect, WriteField):
            await set_field(conn, thread, effect.field, effect.value)
        elif isinstance(effect, CallWebhook):
            return await self._call(effect)
        elif isinstance(effect, SendEmail):
            return await self._email(effect)
        return None

    async def _call(self, effect: CallWebhook) -> dict[str, Any]:
        try:
            return await webhook.call(self.http, effect, destinations=self.destinations)
        except webhook.WebhookError as err:
            # Recorded, and the step's failure path taken: a dead webhook must not stall the sequence.
            raise EffectFailed(str(err)) from err

    async def _email(self, effect: SendEmail) -> dict[str, Any]:
        try:
            return await self.emailer.send(
                to=effect.to, subject=effect.subject, body=effect.body, message_key=effect.key
            )
        except EmailError as err:
            raise EffectFailed(str(err)) from err
