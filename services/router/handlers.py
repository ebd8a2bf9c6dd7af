"""The router's event handlers: inbound.received -> rules -> stored decision + events.

Every handler writes its rows and emits the events they mean in one outbox unit
(libs/event_outbox.py): the routing decision and its events commit together and are
published after the commit, so an event is never on the bus before its row, and a
crash between the commit and the publish leaves the events to the outbox's sweeper.
A redelivered message whose decision exists therefore needs nothing published.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from nats.errors import Error as NatsError

from libs import metrics
from libs.consent_keywords import consent_event_id, optout_event
from libs.consumer import Delivery, Retry
from libs.db import audit, load_queries
from libs.event_outbox import EventOutbox
from libs.events import (
    ContactOptin,
    ContactPaused,
    DraftDecided,
    Event,
    HumanReply,
    InboundReceived,
    InboundRouted,
    TimerFired,
    thread_of,
)
from libs.owner_protocol import decision_of
from services.router.classification import Classification, LocalClassifier
from services.router.keywords import match_keyword
from services.router.llm import LlmClassifier
from services.router.rules import RouteInput, RouteResult, route
from services.router.settings import RouterSettings
from services.router.takeover import Takeover

Q = load_queries(Path(__file__).parent / "queries.sql")
log = structlog.get_logger(__name__)
NAME = "router"
_TRANSIENT = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, NatsError)


def derived_id(kind: str, message_sid: str) -> str:
    """Event ids derived from the MessageSid: a message routed twice (two replicas
    racing, a crash after the commit) emits the same events, which JetStream's
    duplicate window stores once."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"replyline:router:{kind}:{message_sid}"))


def _outcome(event: InboundReceived, result: RouteResult) -> dict[str, Any]:
    """What the audit row and the log line say about a message's routing."""
    return {
        "message_sid": event.message_sid,
        "decision": result.decision,
        "rule": result.rule,
        "status": result.status,
    }


def decision_events(event: InboundReceived, thread: str, result: RouteResult) -> list[Event]:
    """The events a decision means besides inbound.routed: an owner's command, a consent change."""
    sid = event.message_sid
    if result.command is not None:
        action, ref, text, notes = decision_of(result.command)
        decided = DraftDecided(
            id=derived_id("decided", sid),
            thread=thread,
            action=action,
            reviewer=event.from_number,
            source="sms",
            ref=ref,
            text=text,
            notes=notes,
            message_sid=sid,
            received_at=event.received_at,
        )
        return [decided]
    if result.decision == "opt_out":
        # Ingest published this very event (same id) when it accepted the STOP; this
        # copy covers messages ingest did not recognise (Twilio's OptOutType, older
        # ingest) and is dropped by JetStream's duplicate window otherwise.
        return [optout_event(event, result.keyword or "")]
    if result.decision == "opt_in":
        optin = ContactOptin(
            id=consent_event_id("optin", sid),
            thread=thread,
            number=event.from_number,
            keyword=result.keyword or "",
            message_sid=sid,
            received_at=event.received_at,
        )
        return [optin]
    return []


#: The fields inbound.routed copies by name; Event's own (id, thread, occurred_at) are
#: the routed event's, never copied.
_COPIED = frozenset(InboundRouted.__struct_fields__) - frozenset(Event.__struct_fields__)


def routed_event(
    event: InboundReceived, stream_seq: int, thread: str, result: RouteResult, c: Classification | None
) -> InboundRouted:
    """inbound.routed: the message, the routing result and the classification's scores, each
    copied under the field names InboundRouted shares with it (message_sid, from_number,
    to_number, body; decision, rule, status; language ... intent_score, none without ``c``)."""
    copied = {
        name: getattr(part, name)
        for part in (event, result, c)
        if part is not None
        for name in _COPIED.intersection(part.__struct_fields__)
    }
    return InboundRouted(
        id=derived_id("routed", event.message_sid), thread=thread, stream_seq=stream_seq, **copied
    )


class Router:
    def __init__(
        self,
        settings: RouterSettings,
        outbox: EventOutbox,
        local: LocalClassifier,
        llm: LlmClassifier | None = None,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.pool = outbox.pool
        self.local = local
        self.llm = llm
        self.owners = frozenset(settings.owner_numbers)
        # Classification is CPU work: it runs here, not on the event loop, so one
        # costly message cannot stall other threads' events (a STOP behind it).
        self.executor = ThreadPoolExecutor(settings.classify_workers, thread_name_prefix="classify")
        self.takeover = Takeover(settings, outbox)

    def _needs_classification(self, event: InboundReceived) -> bool:
        return (
            event.from_number.strip() not in self.owners
            and event.num_media == 0
            and bool(event.body.strip())
            and match_keyword(event.body, event.opt_out_type) is None
        )

    async def _classify(self, event: InboundReceived) -> Classification | None:
        # Done before the thread lock is taken: an LLM call must not hold it.
        if not self._needs_classification(event):
            return None
        loop = asyncio.get_running_loop()
        local = await loop.run_in_executor(self.executor, self.local.classify, event.body)
        if self.llm is not None:
            return await self.llm.classify(event.body, local)
        return local

    async def on_received(self, event: InboundReceived, d: Delivery) -> Retry | None:
        try:
            return await self._route(event, d)
        except _TRANSIENT as exc:
            return self._retry(d, exc)

    def _retry(self, d: Delivery, exc: BaseException) -> Retry:
        """A transient failure (database, NATS): try again after the configured backoff."""
        delays = self.settings.backoff_s
        delay = delays[min(d.num_delivered - 1, len(delays) - 1)] if delays else 1.0
        return Retry(delay, f"transient: {exc!r}"[:200])

    async def _retry_transient(self, d: Delivery, work: Awaitable[object]) -> Retry | None:
        try:
            await work
        except _TRANSIENT as exc:
            return self._retry(d, exc)
        return None

    async def _route(self, event: InboundReceived, d: Delivery) -> Retry | None:
        thread = thread_of(event.from_number)
        if await self._duplicate(event, d):
            return None
        classification = await self._classify(event)
        async with self.outbox.unit() as u:
            conn = u.conn
            await conn.execute(Q.ensure_thread, thread, event.from_number)
            state = await conn.fetchrow(Q.lock_thread, thread)
            # Re-checked under the thread lock: another replica may have just decided it.
            if await conn.fetchval(Q.decision_exists, event.message_sid):
                log.info("duplicate_message", message_sid=event.message_sid, rule="duplicate")
                return None
            inp = RouteInput(
                from_number=event.from_number,
                body=event.body,
                num_media=event.num_media,
                opt_out_type=event.opt_out_type,
                owner_numbers=self.settings.owner_numbers,
                paused=state["paused"],
                opted_out=state["opted_out"],
                stale=d.seq < state["last_seq"],
                takeover=state["takeover_since"] is not None,
            )
            result = route(inp, classification, language_threshold=self.settings.language_threshold)
            await self._store(conn, event, d, thread, result, classification)
            await self._apply_controls(conn, thread, result)
            if not inp.stale:
                await conn.execute(Q.advance_seq, thread, d.seq)
            for out in decision_events(event, thread, result):
                u.emit(out)
            u.emit(routed_event(event, d.seq, thread, result, classification))
            # Counted before the commit, so whoever sees the event finds it counted; a
            # commit that fails (rare) is retried and counted again.
            metrics.ROUTING_DECISIONS.labels(result.rule, result.status).inc()
        log.info("routed", **_outcome(event, result))
        return None

    async def _duplicate(self, event: InboundReceived, d: Delivery) -> bool:
        """Rule 1: a message already decided (a redelivery, or a new copy of a
        MessageSid) stops here. Its events were emitted with the decision, so the
        outbox has published them or will: nothing to republish."""
        async with self.pool.acquire() as conn:
            exists = await conn.fetchval(Q.decision_exists, event.message_sid)
        if not exists:
            return False
        log.info(
            "duplicate_message",
            message_sid=event.message_sid,
            rule="duplicate",
            redelivery=d.num_delivered > 1,
        )
        return True

    async def _store(
        self,
        conn: Any,
        event: InboundReceived,
        d: Delivery,
        thread: str,
        result: RouteResult,
        c: Classification | None,
    ) -> None:
        await conn.fetchval(
            Q.insert_decision,
            event.message_sid,
            thread,
            d.seq,
            event.from_number,
            event.body,
            event.num_media,
            result.decision,
            result.rule,
            result.status,
            result.keyword,
            c.language if c else None,
            c.language_confidence if c else None,
            c.sentiment if c else None,
            c.sentiment_score if c else None,
            c.intent if c else None,
            c.intent_score if c else None,
            c.source if c else None,
            event.received_at,
        )
        details = _outcome(event, result)
        if c is not None:
            details.update(language=c.language, sentiment=c.sentiment, intent=c.intent)
        await audit(conn, service=NAME, action="inbound_routed", thread=thread, details=details)

    async def _apply_controls(self, conn: Any, thread: str, result: RouteResult) -> None:
        if result.decision in ("opt_out", "opt_in"):
            opted_out = result.decision == "opt_out"
            await conn.execute(Q.set_opted_out, thread, opted_out, result.keyword or "")
            await audit(
                conn,
                service=NAME,
                action="contact_opted_out" if opted_out else "contact_opted_in",
                thread=thread,
                details={"keyword": result.keyword},
            )

    async def on_human(self, event: HumanReply, d: Delivery) -> Retry | None:
        return await self._retry_transient(d, self.takeover.human_replied(event))

    async def on_timer(self, event: TimerFired, d: Delivery) -> Retry | None:
        return await self._retry_transient(d, self.takeover.quiet_period_over(event))

    async def on_paused(self, event: ContactPaused, d: Delivery) -> Retry | None:
        thread = thread_of(event.number) if event.number else event.thread
        try:
            async with self.outbox.unit() as u:
                conn = u.conn
                await conn.execute(
                    Q.set_paused, thread, event.number, event.paused, event.actor, event.reason
                )
                if not event.paused:
                    # RESUME (SMS, dashboard, API) hands a HUMAN_TAKEOVER thread back at once.
                    await self.takeover.end(u, thread, event, reason="resume")
                await audit(
                    conn,
                    service=NAME,
                    actor="HUMAN" if event.actor else "SYSTEM",
                    action="thread_paused" if event.paused else "thread_resumed",
                    thread=thread,
                    details={"actor": event.actor, "reason": event.reason},
                )
        except _TRANSIENT as exc:
            return self._retry(d, exc)
        log.info("thread_pause_set", thread=thread, paused=event.paused)
        return None
