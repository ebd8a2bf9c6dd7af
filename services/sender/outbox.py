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
resent (see docs/sender.md, "The send lease").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import structlog
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from libs import metrics
from libs.bus import Bus
from libs.consumer import Decision, Retry
from libs.db import audit, load_queries
from libs.events import (
    ContactOptin,
    ContactOptout,
    OutboundFailed,
    OutboundRequested,
    OutboundSent,
    OutboundStatus,
    TimerSet,
    decode,
    thread_of,
    utcnow,
)
from libs.twilio_errors import describe
from services.sender.quiet_hours import Window, contact_zones, next_allowed
from services.sender.settings import SenderSettings
from services.sender.transport import (
    UNSUBSCRIBED_CODES,
    SendFailure,
    SendOutcome,
    SendResult,
    SendUnknown,
    Transport,
)

log = structlog.get_logger("sender.outbox")
Q = load_queries(Path(__file__).parent / "queries.sql")

SERVICE = "sender"
OWNER_KINDS = frozenset({"owner_prompt", "owner_alert"})
#: Lead-facing kinds whose failure the owner is told about by SMS.
ALERT_KINDS = frozenset({"approved_draft", "reply", "workflow"})
FINAL = frozenset({"SENT", "FAILED_SEND", "REFUSED"})
DELIVERY_FAILED = frozenset({"failed", "undelivered"})
#: Order of Twilio delivery statuses, so a late "sent" callback never hides "delivered".
STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "partially_delivered": 4,
    "read": 5,
}
#: A timer that fires this early still counts as due (scheduler clock skew).
EARLY_TOLERANCE = timedelta(seconds=1)


def contact_key(number: str) -> str:
    """One spelling per phone number ("+15551234567"), so projections and rows always match."""
    text = number.strip()
    digits = text.lstrip("+")
    return f"+{digits}" if digits.isdigit() else text


class LeaseLost(Exception):
    """Another worker took the row over: this worker's writes are fenced off."""


@dataclass(frozen=True)
class Lease:
    """The fencing token this worker holds on one outbox row."""

    outbox_id: uuid.UUID
    epoch: int


#: Errors of a database session that died under us (terminated, failover, network).
CONNECTION_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def quiet_hours_timer_id(outbox_id: uuid.UUID | str) -> str:
    return f"sender-quiet-hours:{outbox_id}"


@dataclass(frozen=True)
class NewMessage:
    dedup_key: str
    kind: str
    to_number: str
    body: str
    media_urls: Sequence[str] = ()
    draft_id: str | None = None
    draft_version: int | None = None
    request_id: str | None = None
    in_reply_to: str | None = None
    workflow_enrollment_id: str | None = None
    not_before: datetime | None = None


class Outbox:
    def __init__(
        self,
        *,
        settings: SenderSettings,
        pool: asyncpg.Pool,
        bus: Bus,
        transport: Transport,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.bus = bus
        self.transport = transport
        self.clock = clock
        self.window = Window.parse(settings.quiet_hours_start, settings.quiet_hours_end)
        self.owners = frozenset(settings.owner_numbers)
        #: Names this worker in lease_owner (for operators; the epoch is what fences).
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # --- intake --------------------------------------------------------------

    def lead_facing(self, kind: str, to_number: str) -> bool:
        """Owner prompts and alerts skip the gates, but only when they really go to an owner."""
        return not (kind in OWNER_KINDS and to_number in self.owners)

    async def accept(self, msg: NewMessage) -> uuid.UUID:
        """Write the outbox row (once per dedup key) and return its id."""
        new_id = uuid.uuid4()
        inserted = await self.pool.fetchval(
            Q.insert_outbox,
            new_id,
            msg.dedup_key,
            msg.kind,
            contact_key(msg.to_number),
            msg.body,
            list(msg.media_urls),
            self.lead_facing(msg.kind, contact_key(msg.to_number)),
            msg.draft_id,
            msg.draft_version,
            msg.request_id,
            msg.in_reply_to,
            msg.workflow_enrollment_id,
            msg.not_before,
        )
        if inserted is not None:
            return inserted
        existing = await self.pool.fetchval(Q.outbox_id_by_key, msg.dedup_key)
        assert existing is not None
        return existing

    # --- the state machine -----------------------------------------------------

    async def drive(self, outbox_id: uuid.UUID) -> Decision:
        """Move one message forward as far as it can go now."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(Q.take_lease, outbox_id, self.worker, self.settings.send_lease_s)
            if row is None:
                remaining = await conn.fetchval(Q.lease_remaining, outbox_id)
                if remaining is None:
                    log.warning("outbox_row_missing", outbox_id=str(outbox_id))
                    return None
                # The holder finishes the row; look again once its lease could have expired.
                delay = min(max(remaining, 0.0) + 0.2, self.settings.send_lease_s)
                return Retry(delay, "another worker holds this message's lease")
            lease = Lease(outbox_id, row["lease_epoch"])
            try:
                decision = await self._drive_leased(conn, row, lease)
            except LeaseLost:
                # Someone took over after our lease expired (we stalled): it owns the row now.
                log.warning("lease_lost", outbox_id=str(outbox_id), epoch=lease.epoch)
                return None
            # Not in a finally: after an error the lease simply runs out.
            with contextlib.suppress(*CONNECTION_ERRORS):
                await conn.execute(Q.release_lease, outbox_id, lease.epoch)
            return decision

    async def _write(self, conn: asyncpg.Connection, lease: Lease, query: str, *args: Any) -> None:
        """A fenced update of the leased row: raises LeaseLost if another worker took it over."""
        done = await conn.execute(query, lease.outbox_id, *args, lease.epoch)
        if done != "UPDATE 1":
            raise LeaseLost(str(lease.outbox_id))

    async def _drive_leased(self, conn: asyncpg.Connection, row: asyncpg.Record, lease: Lease) -> Decision:
        outbox_id = row["id"]
        if row["status"] in FINAL:
            return await self._publish_outcome(conn, row)
        if row["status"] in ("SENDING", "UNKNOWN"):
            # We hold the lease, and a SENDING row's lease outlives its call: the last
            # attempt has ended (its fate is unknown) and nobody else is acting on the row.
            row, decision = await self._reconcile(conn, row, lease)
            if row["status"] in FINAL or decision is not None:
                return decision if decision is not None else await self._publish_outcome(conn, row)
        if row["lead_facing"]:
            try:
                await self._catch_up_consent(conn, row["to_number"])
            except (NatsError, OSError, TimeoutError, msgspec.DecodeError) as exc:
                return Retry(self._backoff(2), f"consent check failed: {exc!r}"[:200])
        if row["lead_facing"] and await conn.fetchval(Q.is_opted_out, row["to_number"]):
            await self._write(conn, lease, Q.mark_refused)
            await self._audit(conn, row, "outbound.refused_opted_out", {})
            log.info("refused_opted_out", outbox_id=str(outbox_id), to=row["to_number"])
            return await self._publish_outcome(conn, await self._reload(conn, outbox_id))
        due = await self._due(conn, row)
        if due is not None:
            return await self._defer(conn, row, due, lease)
        if row["attempts"] >= self.settings.max_send_attempts:
            return await self._fail(
                conn, row, lease, None, "gave up after transient errors", "retries_exhausted"
            )
        return await self._send(conn, row, lease)

    async def _reload(self, conn: asyncpg.Connection, outbox_id: uuid.UUID) -> asyncpg.Record:
        row = await conn.fetchrow(Q.get_outbox, outbox_id)
        assert row is not None
        return row

    async def _due(self, conn: asyncpg.Connection, row: asyncpg.Record) -> datetime | None:
        """When the message may go, if not now (quiet hours, requested not_before)."""
        now = self.clock()
        earliest = max(row["not_before"] or now, now)
        if row["lead_facing"] and (
            row["kind"] != "human_reply" or self.settings.human_reply_quiet_hours
        ):
            known = await conn.fetchval(Q.contact_time_zone, row["to_number"])
            zones = contact_zones(row["to_number"], known, self.settings.quiet_hours_default_tz)
            earliest = next_allowed(earliest, zones, self.window, self.settings.quiet_hours_default_tz)
        return earliest if earliest - now > EARLY_TOLERANCE else None

    async def _defer(
        self, conn: asyncpg.Connection, row: asyncpg.Record, due: datetime, lease: Lease
    ) -> Decision:
        outbox_id = row["id"]
        await self._write(conn, lease, Q.mark_deferred, due)
        if row["status"] != "DEFERRED" or row["not_before"] != due:
            await self._audit(conn, row, "outbound.deferred", {"until": due.isoformat()})
        # Same timer id and fire_at on a repeat, so a re-drive republishes a duplicate NATS drops.
        await self.bus.publish(
            TimerSet(
                thread=thread_of(row["to_number"]),
                timer_id=quiet_hours_timer_id(outbox_id),
                kind="quiet_hours",
                fire_at=due,
                payload={"outbox_id": str(outbox_id)},
            )
        )
        metrics.SENDS.labels("deferred", row["kind"]).inc()
        log.info("deferred", outbox_id=str(outbox_id), until=due.isoformat())
        return None

    async def _send(self, conn: asyncpg.Connection, row: asyncpg.Record, lease: Lease) -> Decision:
        outbox_id = row["id"]
        loop = asyncio.get_running_loop()
        # The deadline is taken before lease_until is written (DB clock, later), so the
        # call ends at least send_lease_margin_s before anyone may take the row over.
        deadline = loop.time() + self.settings.twilio_timeout_s
        attempts = await conn.fetchval(
            Q.mark_sending, outbox_id, self.settings.send_lease_s, lease.epoch
        )
        if attempts is None:
            raise LeaseLost(str(outbox_id))
        outcome: SendOutcome
        if loop.time() >= deadline:
            # The database took the whole call budget to commit SENDING: do not call late.
            outcome = SendFailure(transient=True, message="no call budget left after marking SENDING")
        else:
            try:
                async with asyncio.timeout_at(deadline):  # whatever the transport's own bound
                    outcome = await self.transport.send(
                        to=row["to_number"], body=row["body"], media_urls=tuple(row["media_urls"])
                    )
            except TimeoutError:
                outcome = SendUnknown(message="no answer within twilio_timeout_s")
        try:
            if isinstance(outcome, SendResult):
                return await self._record_sent(
                    conn, row, lease, outcome.provider_sid, outcome.status, "sent"
                )
            if isinstance(outcome, SendUnknown):
                # The lease is kept (release_lease skips UNKNOWN): a request abandoned at the
                # timeout gets the margin to surface in Twilio's list before anyone reconciles.
                await self._write(conn, lease, Q.mark_unknown, outcome.message)
                log.warning("send_outcome_unknown", outbox_id=str(outbox_id), error=outcome.message)
                return Retry(self._backoff(attempts), f"outcome unknown: {outcome.message}")
        except LeaseLost:
            # Only possible after our lease expired, i.e. after this call had ended: a
            # message it created is already in Twilio's list for the new holder's reconcile.
            log.warning(
                "send_result_not_recorded",
                outbox_id=str(outbox_id),
                outcome=type(outcome).__name__,
                provider_sid=getattr(outcome, "provider_sid", None),
            )
            raise
        return await self._failed_attempt(conn, row, lease, outcome, attempts)

    async def _failed_attempt(
        self,
        conn: asyncpg.Connection,
        row: asyncpg.Record,
        lease: Lease,
        failure: SendFailure,
        attempts: int,
    ) -> Decision:
        if not failure.transient:
            if failure.code in UNSUBSCRIBED_CODES:
                await self._set_consent(
                    conn, row["to_number"], True, "", f"provider_{failure.code}", None, utcnow()
                )
            return await self._fail(conn, row, lease, failure.code, failure.message, "provider_error")
        if attempts >= self.settings.max_send_attempts:
            return await self._fail(
                conn, row, lease, failure.code, failure.message, "retries_exhausted"
            )
        delay = self._backoff(attempts)
        await self._write(conn, lease, Q.mark_retry, delay, failure.code, failure.message)
        log.warning(
            "send_transient_failure",
            outbox_id=str(row["id"]),
            code=failure.code,
            http_status=failure.http_status,
            attempt=attempts,
            retry_in=delay,
        )
        return Retry(delay, f"transient {failure.http_status}/{failure.code}")

    def _backoff(self, attempts: int) -> float:
        steps = self.settings.send_backoff_s or (1.0,)
        return steps[min(max(attempts, 1) - 1, len(steps) - 1)]

    async def _record_sent(
        self,
        conn: asyncpg.Connection,
        row: asyncpg.Record,
        lease: Lease,
        sid: str,
        status: str,
        how: str,
    ) -> Decision:
        await self._write(conn, lease, Q.mark_sent, sid, status)
        await self._audit(conn, row, "outbound.sent", {"provider_sid": sid, "how": how})
        log.info("sent", outbox_id=str(row["id"]), sid=sid, how=how, transport=self.transport.name)
        fresh = await self._reload(conn, row["id"])
        # A status callback may have beaten us to the database.
        await self._apply_delivery(conn, fresh)
        return await self._publish_outcome(conn, await self._reload(conn, row["id"]))

    async def _fail(
        self,
        conn: asyncpg.Connection,
        row: asyncpg.Record,
        lease: Lease,
        code: int | None,
        message: str,
        reason: str,
    ) -> Decision:
        await self._write(conn, lease, Q.mark_failed, code, message, reason)
        await self._audit(
            conn, row, "outbound.failed", {"error_code": code, "error": message, "reason": reason}
        )
        log.warning("send_failed", outbox_id=str(row["id"]), code=code, reason=reason)
        return await self._publish_outcome(conn, await self._reload(conn, row["id"]))

    # --- reconciliation --------------------------------------------------------

    async def _reconcile(
        self, conn: asyncpg.Connection, row: asyncpg.Record, lease: Lease
    ) -> tuple[asyncpg.Record, Decision]:
        """Find out whether an interrupted attempt reached the provider.

        Twilio's Messages API has no idempotency key, and the list resource does not
        show a message's StatusCallback, so matching is by To/From, creation time,
        body, and a sid no other outbox row owns.
        """
        outbox_id = row["id"]
        if row["status"] == "SENDING":
            await self._write(conn, lease, Q.mark_unknown, "attempt interrupted")
        started = row["sending_started_at"] or row["created_at"]
        since = started - timedelta(seconds=self.settings.reconcile_slack_s)
        try:
            found = await self.transport.find_sent(to=row["to_number"], since=since)
        except Exception as exc:
            log.warning("reconcile_lookup_failed", outbox_id=str(outbox_id), error=repr(exc))
            return await self._reload(conn, outbox_id), Retry(self._backoff(2), "reconcile failed")
        # Compare modulo surrounding whitespace, which carriers and Twilio may trim.
        candidates = [m for m in found if m.body.strip() == row["body"].strip()]
        taken = {r["provider_sid"] for r in await conn.fetch(Q.sids_in_use, [m.sid for m in candidates])}
        # Oldest first: the interrupted attempt is the earliest unclaimed match.
        match = next((m for m in reversed(candidates) if m.sid not in taken), None)
        if match is not None:
            await self._audit(conn, row, "outbound.reconciled", {"provider_sid": match.sid})
            decision = await self._record_sent(
                conn, row, lease, match.sid, match.status, "reconciled"
            )
            return await self._reload(conn, outbox_id), decision
        await self._audit(conn, row, "outbound.reconciled_not_found", {"since": since.isoformat()})
        log.info("reconcile_not_found", outbox_id=str(outbox_id))
        await self._write(conn, lease, Q.mark_pending)
        return await self._reload(conn, outbox_id), None

    # --- outcomes ----------------------------------------------------------------

    async def _publish_outcome(self, conn: asyncpg.Connection, row: asyncpg.Record) -> Decision:
        """Publish outbound.sent / outbound.failed (and the owner alert) until it is on the bus."""
        if row["event_published"]:
            return None
        thread = thread_of(row["to_number"])
        common: dict[str, Any] = {
            "thread": thread,
            "outbox_id": str(row["id"]),
            "to_number": row["to_number"],
            "draft_id": row["draft_id"],
            "request_id": row["request_id"],
            "workflow_enrollment_id": row["workflow_enrollment_id"],
            "kind": row["kind"],
        }
        try:
            if row["status"] == "SENT":
                await self.bus.publish(OutboundSent(provider_sid=row["provider_sid"], **common))
            else:
                reason = row["failure_reason"] or "provider_error"
                await self.bus.publish(
                    OutboundFailed(
                        error_code=row["error_code"],
                        error_message=row["error_message"] or "",
                        permanent=True,
                        reason=reason,
                        provider_sid=row["provider_sid"],
                        **common,
                    )
                )
                await self._alert_owner(row, reason)
        except Exception as exc:  # NATS unavailable: the row stays unpublished for a retry
            log.warning("publish_outcome_failed", outbox_id=str(row["id"]), error=repr(exc))
            return Retry(self._backoff(2), "publishing the outcome failed")
        await conn.execute(Q.mark_published, row["id"], row["status"])
        status = {"SENT": "sent", "REFUSED": "refused"}.get(row["status"], "failed")
        metrics.SENDS.labels(status, row["kind"]).inc()
        return None

    async def _alert_owner(self, row: asyncpg.Record, reason: str) -> None:
        if not row["lead_facing"] or row["kind"] not in ALERT_KINDS:
            return
        if reason == "opted_out" and row["kind"] != "approved_draft":
            return  # workflow steps to opted-out contacts are expected, not news
        # A known Twilio code says what happened and what to do (libs/data/twilio_errors.yaml).
        explained = describe(row["error_code"]) if reason != "opted_out" else None
        why = explained or {
            "opted_out": "they opted out (STOP).",
            "retries_exhausted": "Twilio kept failing.",
            "undelivered": "the carrier did not deliver it.",
        }.get(reason, f"Twilio error: {row['error_message']}.")
        preview = row["body"] if len(row["body"]) <= 60 else row["body"][:57] + "..."
        body = f'Not delivered to {row["to_number"]}: {why} Message: "{preview}"'
        for owner in sorted(self.owners):
            await self.bus.publish(
                OutboundRequested(
                    thread=thread_of(owner),
                    request_id=f"send-failed:{row['id']}:{owner}",
                    to_number=owner,
                    body=body,
                    kind="owner_alert",
                )
            )

    async def _audit(
        self, conn: asyncpg.Connection, row: asyncpg.Record, action: str, details: dict[str, Any]
    ) -> None:
        await audit(
            conn,
            service=SERVICE,
            action=action,
            thread=thread_of(row["to_number"]),
            details={"outbox_id": str(row["id"]), "kind": row["kind"], **details},
        )

    # --- delivery status ---------------------------------------------------------

    async def record_status(self, event: OutboundStatus) -> Decision:
        """Store a status callback and apply it to the outbox row, if we know the sid."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
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
                row = await conn.fetchrow(Q.outbox_by_sid, event.provider_sid)
                if row is None:
                    # Not recorded yet (the callback raced the API answer): applied when it is.
                    return None
                await self._apply_delivery(conn, row)
            return await self._publish_outcome(conn, await self._reload(conn, row["id"]))

    async def _apply_delivery(self, conn: asyncpg.Connection, row: asyncpg.Record) -> None:
        events = await conn.fetch(Q.delivery_events_for, row["provider_sid"])
        if not events:
            return
        best = max(events, key=lambda e: STATUS_RANK.get(e["status"], 0))
        if best["status"] != row["provider_status"]:
            await conn.execute(Q.set_provider_status, row["id"], best["status"])
        if best["status"] in DELIVERY_FAILED and row["status"] == "SENT":
            code = best["error_code"]
            if code in UNSUBSCRIBED_CODES:
                await self._set_consent(
                    conn, row["to_number"], True, "", f"provider_{code}", None, best["occurred_at"]
                )
            await conn.execute(Q.mark_undelivered, row["id"], code, f"delivery {best['status']}")
            await self._audit(
                conn, row, "outbound.undelivered", {"error_code": code, "status": best["status"]}
            )

    # --- consent -------------------------------------------------------------------

    async def record_consent(self, event: ContactOptout | ContactOptin) -> Decision:
        async with self.pool.acquire() as conn:
            await self._apply_consent_event(conn, event)
        return None

    async def _apply_consent_event(
        self, conn: asyncpg.Connection, event: ContactOptout | ContactOptin
    ) -> None:
        # Ordered by when the lead's SMS arrived, not when the event was published: a
        # START replayed from the DLQ, or routed late, never undoes a newer STOP.
        await self._set_consent(
            conn,
            event.number,
            isinstance(event, ContactOptout),
            event.keyword,
            "sms_keyword",
            event.id,
            event.received_at or event.occurred_at,
        )

    async def _catch_up_consent(self, conn: asyncpg.Connection, number: str) -> None:
        """Apply the newest contact.optout / optin of the number found in PIPELINE itself.

        Ingest answers Twilio only once a STOP's contact.optout is in the stream, but
        this consumer may not have handled it yet: it may be queued behind other
        threads, nak'd for a retry (which reorders), or held by another replica. Reading
        the stream's last event per subject right before sending makes an acknowledged
        STOP win whatever the lag. Raises when NATS cannot be asked (the caller retries).
        """
        thread = thread_of(number)
        for cls in (ContactOptout, ContactOptin):
            subject = self.bus.subject_for(str(cls.__struct_config__.tag), thread)
            try:
                raw = await self.bus.js.get_last_msg(self.bus.stream, subject)
            except NotFoundError:
                continue
            event = decode(raw.data or b"")
            if isinstance(event, ContactOptout | ContactOptin):
                await self._apply_consent_event(conn, event)

    async def _set_consent(
        self,
        conn: asyncpg.Connection,
        number: str,
        opted_out: bool,
        keyword: str,
        source: str,
        event_id: str | None,
        at: datetime,
    ) -> None:
        changed = await conn.fetchval(
            Q.upsert_consent, contact_key(number), opted_out, keyword, source, event_id, at
        )
        if changed is not None:
            await audit(
                conn,
                service=SERVICE,
                action="consent.opt_out" if opted_out else "consent.opt_in",
                thread=thread_of(number),
                details={"keyword": keyword, "source": source, "event_id": event_id},
            )

    async def record_time_zone(self, number: str, zone: str, at: datetime) -> None:
        await self.pool.execute(Q.upsert_time_zone, contact_key(number), zone, at)

    # --- the sweep -------------------------------------------------------------------

    async def sweep_once(self) -> int:
        """Re-drive rows whose event was lost; returns how many were looked at."""
        rows = await self.pool.fetch(
            Q.sweep_candidates, self.settings.sweep_grace_s, self.settings.deferred_grace_s, 100
        )
        for r in rows:
            try:
                await self.drive(r["id"])
            except CONNECTION_ERRORS as exc:  # e.g. our session was terminated mid-drive
                log.warning("sweep_drive_failed", outbox_id=str(r["id"]), error=repr(exc))
        if rows:
            log.info("sweep", rows=len(rows))
        return len(rows)

    async def sweep_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.sweep_interval_s)
            if stop.is_set():
                return
            try:
                await self.sweep_once()
            except CONNECTION_ERRORS as exc:
                log.warning("sweep_failed", error=repr(exc))
