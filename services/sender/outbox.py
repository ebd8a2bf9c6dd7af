"""The outbox: every outbound message goes through one state machine, at most once.

``drive(id)`` is the only path to the transport, whoever calls it (an event
handler, a fired timer, the sweep). It first takes the row's **lease**: a
fencing token (``lease_epoch``, incremented by each new holder) and an expiry
(``lease_until``) on the database clock, both stored in the row. Nothing depends
on the worker's database session staying alive (failover, network blips,
``idle_session_timeout`` and PgBouncer transaction pooling all break sessions):
every write the worker makes names its epoch, so a worker that lost the lease
changes nothing.

The row is marked SENDING with ``lease_until = now() + call timeout + margin``
and committed *before* the API call, and the call is cut off at the timeout. A
SENDING row can therefore be taken over only once its attempt has ended; the
new holder reconciles against the provider's message list before anything is
resent (see docs/sender.md, "The send lease"). Where the rest lives:
docs/sender.md, "Where things live".

The write that makes a row final (SENT, FAILED_SEND, REFUSED) commits in one unit
of the slice's event outbox (libs/event_outbox.py) with its audit row and its
outcome event (and a deferral with its timer.set), so a final row always has its
event, published right after the commit or by the outbox's sweeper. Only SENDING
is written on its own, before the call, as the at-most-once protocol requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
import msgspec
import structlog
from nats.errors import Error as NatsError

from libs import metrics
from libs.consumer import Decision, Retry
from libs.event_outbox import EventOutbox, Unit
from libs.events import ContactOptin, ContactOptout, OutboundStatus, TimerSet, thread_of, utcnow
from libs.resources import Resources, UsesResources
from services.sender import consent
from services.sender.delivery import apply_delivery
from services.sender.outcomes import count_outcome, emit_outcome
from services.sender.quiet_hours import Window, contact_zones, next_allowed
from services.sender.reconcile import LookupFailed, find_interrupted_attempt
from services.sender.rows import (
    CONNECTION_ERRORS,
    EARLY_TOLERANCE,
    FINAL,
    OWNER_KINDS,
    Lease,
    LeaseLost,
    NewMessage,
    OutboxRow,
    contact_key,
    quiet_hours_timer_id,
)
from services.sender.settings import SenderSettings
from services.sender.store import (
    Leased,
    Q,
    audit_row,
    insert_row,
    load_row,
)
from services.sender.transport import (
    UNSUBSCRIBED_CODES,
    SendFailure,
    SendOutcome,
    SendResult,
    SendUnknown,
    Transport,
)

__all__ = ["NewMessage", "Outbox", "contact_key", "quiet_hours_timer_id"]

log = structlog.get_logger("sender.outbox")


class Outbox(UsesResources[SenderSettings]):
    def __init__(
        self,
        resources: Resources[SenderSettings],
        *,
        transport: Transport,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        #: Its bus is read only (the consent catch-up); every event goes out through ``events``.
        self.resources = resources
        self.transport = transport
        self.clock = clock
        settings = resources.settings
        self.window = Window.parse(settings.quiet_hours_start, settings.quiet_hours_end)
        self.owners = frozenset(settings.owner_numbers)
        #: Names this worker in lease_owner (for operators; the epoch is what fences).
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    @property
    def events(self) -> EventOutbox:
        """The slice's event outbox (``outbox``): units that commit a row's writes with its
        events. Named apart from this outbox, the one of messages."""
        return self.resources.outbox

    # --- intake --------------------------------------------------------------

    def lead_facing(self, kind: str, to_number: str) -> bool:
        """Owner prompts and alerts skip the gates, but only when they really go to an owner."""
        return not (kind in OWNER_KINDS and to_number in self.owners)

    async def accept(self, msg: NewMessage) -> uuid.UUID:
        """Write the outbox row (once per dedup key) and return its id."""
        to_number = contact_key(msg.to_number)
        values = {
            **msgspec.structs.asdict(msg),
            "id": uuid.uuid4(),
            "to_number": to_number,
            "media_urls": list(msg.media_urls),
            "lead_facing": self.lead_facing(msg.kind, to_number),
        }
        inserted = await insert_row(self.pool, values)
        if inserted is not None:
            return inserted
        existing = await self.pool.fetchval(Q.outbox_id_by_key, msg.dedup_key)
        assert existing is not None
        return existing

    # --- the state machine -----------------------------------------------------

    async def drive(self, outbox_id: uuid.UUID) -> Decision:
        """Move one message forward as far as it can go now."""
        async with self.pool.acquire() as conn:
            record = await conn.fetchrow(Q.take_lease, outbox_id, self.worker, self.settings.send_lease_s)
            if record is None:
                remaining = await conn.fetchval(Q.lease_remaining, outbox_id)
                if remaining is None:
                    log.warning("outbox_row_missing", outbox_id=str(outbox_id))
                    return None
                # The holder finishes the row; look again once its lease could have expired.
                delay = min(max(remaining, 0.0) + 0.2, self.settings.send_lease_s)
                return Retry(delay, "another worker holds this message's lease")
            row = OutboxRow.from_record(record)
            leased = Leased(conn, Lease(outbox_id, row.lease_epoch))
            try:
                decision = await self._drive_leased(leased, row)
            except LeaseLost:
                # Someone took over after our lease expired (we stalled): it owns the row now.
                log.warning("lease_lost", outbox_id=str(outbox_id), epoch=row.lease_epoch)
                return None
            # Not in a finally: after an error the lease simply runs out.
            with contextlib.suppress(*CONNECTION_ERRORS):
                await conn.execute(Q.release_lease, outbox_id, row.lease_epoch)
            return decision

    async def _drive_leased(self, leased: Leased, row: OutboxRow) -> Decision:
        conn = leased.conn
        if row.status in FINAL:
            return None  # done; its outcome event committed with it
        if row.status in ("SENDING", "UNKNOWN"):
            # We hold the lease, and a SENDING row's lease outlives its call: the last
            # attempt has ended (its fate is unknown) and nobody else is acting on the row.
            row, decision = await self._reconcile(leased, row)
            if row.status in FINAL or decision is not None:
                return decision
        if row.lead_facing:
            try:
                await consent.catch_up_consent(conn, self.bus, row.to_number)
            except (NatsError, OSError, TimeoutError, msgspec.DecodeError) as exc:
                return Retry(self._backoff(2), f"consent check failed: {exc!r}"[:200])
        if row.lead_facing and await consent.is_opted_out(conn, row.to_number):
            async with self._final(leased) as u:
                await leased.write(Q.mark_refused)
                await audit_row(u.conn, row, "outbound.refused_opted_out", {})
            log.info("refused_opted_out", outbox_id=str(row.id), to=row.to_number)
            return None
        due = await self._due(conn, row)
        if due is not None:
            return await self._defer(leased, row, due)
        if row.attempts >= self.settings.max_send_attempts:
            return await self._fail(leased, row, None, "gave up after transient errors", "retries_exhausted")
        return await self._send(leased, row)

    async def _reconcile(self, leased: Leased, row: OutboxRow) -> tuple[OutboxRow, Decision]:
        """Reconcile an interrupted attempt (services/sender/reconcile.py); the row as it is after."""
        try:
            match = await find_interrupted_attempt(
                leased, row, self.transport, self.settings.reconcile_slack_s
            )
        except LookupFailed:
            return await leased.reload(), Retry(self._backoff(2), "reconcile failed")
        decision = None
        if match is not None:
            decision = await self._record_sent(leased, row, match.sid, match.status, "reconciled")
        return await leased.reload(), decision

    async def _due(self, conn: asyncpg.Connection, row: OutboxRow) -> datetime | None:
        """When the message may go, if not now (quiet hours, requested not_before)."""
        now = self.clock()
        earliest = max(row.not_before or now, now)
        if row.lead_facing and (row.kind != "human_reply" or self.settings.human_reply_quiet_hours):
            known = await conn.fetchval(Q.contact_time_zone, row.to_number)
            zones = contact_zones(row.to_number, known, self.settings.quiet_hours_default_tz)
            earliest = next_allowed(earliest, zones, self.window, self.settings.quiet_hours_default_tz)
        return earliest if earliest - now > EARLY_TOLERANCE else None

    async def _defer(self, leased: Leased, row: OutboxRow, due: datetime) -> Decision:
        async with self.events.unit(leased.conn) as u:
            await leased.write(Q.mark_deferred, not_before=due)
            if row.status != "DEFERRED" or row.not_before != due:
                await audit_row(u.conn, row, "outbound.deferred", {"until": due.isoformat()})
            # Same timer id and fire_at on a repeat, so a re-drive emits a duplicate NATS drops.
            u.emit(
                TimerSet(
                    thread=thread_of(row.to_number),
                    timer_id=quiet_hours_timer_id(row.id),
                    kind="quiet_hours",
                    fire_at=due,
                    payload={"outbox_id": str(row.id)},
                )
            )
        metrics.SENDS.labels("deferred", row.kind).inc()
        log.info("deferred", outbox_id=str(row.id), until=due.isoformat())
        return None

    async def _send(self, leased: Leased, row: OutboxRow) -> Decision:
        loop = asyncio.get_running_loop()
        # The deadline is taken before lease_until is written (DB clock, later), so the
        # call ends at least send_lease_margin_s before anyone may take the row over.
        deadline = loop.time() + self.settings.twilio_timeout_s
        attempts = await leased.mark_sending(self.settings.send_lease_s)
        outcome: SendOutcome
        if loop.time() >= deadline:
            # The database took the whole call budget to commit SENDING: do not call late.
            outcome = SendFailure(transient=True, message="no call budget left after marking SENDING")
        else:
            try:
                async with asyncio.timeout_at(deadline):  # whatever the transport's own bound
                    outcome = await self.transport.send(
                        to=row.to_number, body=row.body, media_urls=tuple(row.media_urls)
                    )
            except TimeoutError:
                outcome = SendUnknown(message="no answer within twilio_timeout_s")
        try:
            if isinstance(outcome, SendResult):
                return await self._record_sent(leased, row, outcome.provider_sid, outcome.status, "sent")
            if isinstance(outcome, SendUnknown):
                # The lease is kept (release_lease skips UNKNOWN): a request abandoned at the
                # timeout gets the margin to surface in Twilio's list before anyone reconciles.
                await leased.write(Q.mark_unknown, error_message=outcome.message)
                log.warning("send_outcome_unknown", outbox_id=str(row.id), error=outcome.message)
                return Retry(self._backoff(attempts), f"outcome unknown: {outcome.message}")
        except LeaseLost:
            # Only possible after our lease expired, i.e. after this call had ended: a
            # message it created is already in Twilio's list for the new holder's reconcile.
            log.warning(
                "send_result_not_recorded",
                outbox_id=str(row.id),
                outcome=type(outcome).__name__,
                provider_sid=getattr(outcome, "provider_sid", None),
            )
            raise
        return await self._failed_attempt(leased, row, outcome, attempts)

    async def _failed_attempt(
        self, leased: Leased, row: OutboxRow, failure: SendFailure, attempts: int
    ) -> Decision:
        if not failure.transient:
            unsubscribed = failure.code in UNSUBSCRIBED_CODES
            return await self._fail(
                leased, row, failure.code, failure.message, "provider_error", unsubscribed=unsubscribed
            )
        if attempts >= self.settings.max_send_attempts:
            return await self._fail(leased, row, failure.code, failure.message, "retries_exhausted")
        delay = self._backoff(attempts)
        await leased.write(
            Q.mark_retry, retry_in_s=delay, error_code=failure.code, error_message=failure.message
        )
        log.warning(
            "send_transient_failure",
            outbox_id=str(row.id),
            code=failure.code,
            http_status=failure.http_status,
            attempt=attempts,
            retry_in=delay,
        )
        return Retry(delay, f"transient {failure.http_status}/{failure.code}")

    def _backoff(self, attempts: int) -> float:
        steps = self.settings.send_backoff_s or (1.0,)
        return steps[min(max(attempts, 1) - 1, len(steps) - 1)]

    async def _record_sent(self, leased: Leased, row: OutboxRow, sid: str, status: str, how: str) -> Decision:
        async with self._final(leased) as u:
            # A status callback for this sid may be stored meanwhile (it can beat the API
            # answer): the lock makes whichever commits second see the other's row.
            await u.conn.execute(Q.lock_sid, sid)
            await leased.write(Q.mark_sent, provider_sid=sid, provider_status=status)
            await audit_row(u.conn, row, "outbound.sent", {"provider_sid": sid, "how": how})
            # One that came first is applied now (a failed one makes the outcome
            # outbound.failed, reason undelivered).
            await apply_delivery(u.conn, await leased.reload())
        log.info("sent", outbox_id=str(row.id), sid=sid, how=how, transport=self.transport.name)
        return None

    async def _fail(
        self,
        leased: Leased,
        row: OutboxRow,
        code: int | None,
        message: str,
        reason: str,
        *,
        unsubscribed: bool = False,
    ) -> Decision:
        async with self._final(leased) as u:
            if unsubscribed and code is not None:
                await consent.provider_unsubscribed(u.conn, row.to_number, code, utcnow())
            await leased.write(Q.mark_failed, error_code=code, error_message=message, failure_reason=reason)
            await audit_row(
                u.conn, row, "outbound.failed", {"error_code": code, "error": message, "reason": reason}
            )
        log.warning("send_failed", outbox_id=str(row.id), code=code, reason=reason)
        return None

    @asynccontextmanager
    async def _final(self, leased: Leased) -> AsyncIterator[Unit]:
        """A unit whose writes make the leased row final: the row's outcome event (as the
        row stands at the end of the unit) commits with them. A fenced write that raises
        LeaseLost rolls the whole unit back, event included."""
        async with self.events.unit(leased.conn) as u:
            yield u
            final = await leased.reload()
            emit_outcome(u, self.owners, final)
        count_outcome(final)

    # --- projections -------------------------------------------------------------

    async def record_status(self, event: OutboundStatus) -> Decision:
        """Store a status callback and apply it to the outbox row, if we know the sid.

        A failed / undelivered status makes a SENT row FAILED_SEND; its outbound.failed
        (and the owner alert) commit in the same unit."""
        failed: OutboxRow | None = None
        async with self.events.unit() as u:
            conn = u.conn
            await conn.execute(Q.lock_sid, event.provider_sid)
            inserted = await conn.fetchval(
                Q.insert_delivery_event,
                event.provider_sid,
                event.status,
                event.error_code,
                event.id,
                event.occurred_at,
            )
            if inserted is not None:  # a repeated callback is not a new status
                metrics.DELIVERY_STATUS.labels(event.status).inc()
            record = await conn.fetchrow(Q.outbox_by_sid, event.provider_sid)
            if record is None:
                # Not recorded yet (the callback raced the API answer): applied when it is.
                return None
            if await apply_delivery(conn, OutboxRow.from_record(record)):
                failed = await load_row(conn, record["id"])
                emit_outcome(u, self.owners, failed)
        if failed is not None:
            count_outcome(failed)
        return None

    async def record_consent(self, event: ContactOptout | ContactOptin) -> Decision:
        async with self.pool.acquire() as conn:
            await consent.apply_consent_event(conn, event)
        return None

    async def record_time_zone(self, number: str, zone: str, at: datetime) -> None:
        await consent.record_time_zone(self.pool, number, zone, at)
