"""HUMAN_TAKEOVER: the router's side (docs/router.md, "Human takeover").

A person's reply to a lead (``outbound.human``, from any channel) puts the thread in
HUMAN_TAKEOVER in ``thread_controls``: while it lasts, the routing rules forward the
lead's messages to the owners (decision ``forward``, rule ``human_takeover``) instead
of drafting. Every human reply pushes the end out to ``takeover_quiet_s`` after it
and re-arms one scheduler timer per thread (``takeover_quiet:<thread>``, replaced on
each reply); when it fires and no later reply moved the end, the AI takes over
again. A resume (RESUME <ref>, dashboard, API: ``contact.paused`` paused=false) ends
it at once. Every change is announced as ``contact.takeover`` (the scheduler pauses
workflow sends on it).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import structlog

from libs import metrics
from libs.db import audit, load_queries
from libs.event_outbox import EventOutbox, Unit
from libs.events import ContactPaused, ContactTakeover, HumanReply, TimerFired, TimerSet, thread_of
from services.router.settings import RouterSettings

Q = load_queries(Path(__file__).parent / "queries.sql")
log = structlog.get_logger(__name__)
NAME = "router"
TIMER_KIND: Final = "takeover_quiet"


def quiet_timer_id(thread: str) -> str:
    return f"takeover_quiet:{thread}"


def _id(*parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "replyline:router:takeover:" + ":".join(map(str, parts))))


class Takeover:
    def __init__(self, settings: RouterSettings, outbox: EventOutbox) -> None:
        self.settings = settings
        self.outbox = outbox

    async def human_replied(self, event: HumanReply) -> None:
        thread = thread_of(event.to_number)
        at = event.occurred_at
        until = at + timedelta(seconds=self.settings.takeover_quiet_s)
        async with self.outbox.unit() as u:
            conn = u.conn
            await conn.execute(Q.ensure_thread, thread, event.to_number)
            prior = await conn.fetchrow(Q.lock_thread, thread)
            started = prior is None or prior["takeover_since"] is None
            row = await conn.fetchrow(Q.start_takeover, thread, event.to_number, at, until, event.author)
            await audit(
                conn,
                service=NAME,
                actor="HUMAN",
                action="human_takeover_started" if started else "human_takeover_extended",
                thread=thread,
                details={"author": event.author, "channel": event.channel, "until": until.isoformat()},
            )
            # Published after the commit, with the thread's state (libs/event_outbox.py).
            u.emit(
                ContactTakeover(
                    id=_id("start", event.request_id),
                    thread=thread,
                    number=event.to_number,
                    active=True,
                    since=row["takeover_since"],
                    until=row["takeover_until"],
                    actor=event.author,
                    reason=event.channel,
                )
            )
            u.emit(
                TimerSet(
                    thread=thread,
                    timer_id=quiet_timer_id(thread),
                    kind=TIMER_KIND,
                    fire_at=row["takeover_until"],
                    payload={"thread": thread, "number": event.to_number},
                )
            )
        if started:
            metrics.TAKEOVERS.labels("started", event.channel).inc()
        log.info("human_takeover", thread=thread, started=started, until=until.isoformat())

    async def quiet_period_over(self, event: TimerFired) -> None:
        if event.kind != TIMER_KIND:
            return
        thread = str(event.payload.get("thread") or event.thread)
        async with self.outbox.unit() as u:
            await self.end(u, thread, None, reason="quiet_period", fire_at=event.fire_at)

    async def end(
        self,
        u: Unit,
        thread: str,
        cause: ContactPaused | None,
        *,
        reason: str,
        fire_at: Any = None,
    ) -> bool:
        """End the takeover inside the caller's unit (emitting its contact.takeover)."""
        row = await u.conn.fetchrow(Q.end_takeover, thread, fire_at)
        if row is None:
            return False  # not in takeover, or a later human reply moved the end
        actor = cause.actor if cause is not None else ""
        await audit(
            u.conn,
            service=NAME,
            actor="HUMAN" if actor else "SYSTEM",
            action="human_takeover_ended",
            thread=thread,
            details={"reason": reason, "by": actor},
        )
        metrics.TAKEOVERS.labels("ended", reason).inc()
        log.info("human_takeover_ended", thread=thread, reason=reason)
        u.emit(
            ContactTakeover(
                id=_id("end", thread, cause.id if cause is not None else fire_at),
                thread=thread,
                number=row["number"],
                active=False,
                since=row["takeover_since"],
                actor=actor,
                reason=reason,
            )
        )
        return True
