"""The scheduler's event handlers (service.py wires them to the engine and the timers)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import structlog

from libs.consumer import Delivery, Drop, Handler
from libs.db import audit
from libs.events import (
    CallMissed,
    ContactOptin,
    ContactOptout,
    ContactPaused,
    ContactTagged,
    ContactTakeover,
    ContactUpdated,
    DraftApproved,
    DraftRejected,
    Event,
    InboundRouted,
    LeadCreated,
    OutboundSent,
    TimerCancel,
    TimerFired,
    TimerSet,
)
from libs.service import ServiceContext

from .engine import Engine
from .outcomes import OutcomeJudge, decide, store_outcome
from .settings import SchedulerSettings
from .store import Q, set_field, view_of
from .timers import Outcome, TimerRecord, TimerStore

log = structlog.get_logger("scheduler")
SERVICE = "scheduler"
#: Timer kinds the scheduler itself acts on when they fire (others belong to drafter / sender).
OWN_KINDS = frozenset({"workflow_delay", "reply_timeout", "no_response"})
#: Inbound decisions that are not a lead talking to us.
NOT_A_REPLY = frozenset({"owner_command", "duplicate", "opt_out"})
#: Outbound kinds that go to the lead (owner prompts and alerts do not count).
LEAD_FACING = frozenset({"approved_draft", "reply", "workflow"})
#: Languages the drafter answers in (a workflow's {en, es} texts follow the contact's).
ANSWERED_LANGUAGES = frozenset({"en", "es"})


def no_response_timer_id(thread: str) -> str:
    return f"noresp.{thread}"


class Scheduler:
    """Event handlers; each is idempotent (delivery is at least once)."""

    def __init__(
        self,
        ctx: ServiceContext[SchedulerSettings],
        engine: Engine,
        timers: TimerStore,
        judge: OutcomeJudge,
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.pool = ctx.pool
        self.engine = engine
        self.timers = timers
        self.judge = judge

    def handlers(self) -> Mapping[type[Event], Handler]:
        return {
            TimerSet: self.on_timer_set,
            TimerCancel: self.on_timer_cancel,
            TimerFired: self.on_timer_fired,
            LeadCreated: self.on_lead,
            CallMissed: self.on_call_missed,
            InboundRouted: self.on_inbound,
            ContactOptout: self.on_optout,
            ContactOptin: self.on_optin,
            ContactPaused: self.on_paused,
            ContactTakeover: self.on_takeover,
            ContactTagged: self.on_tagged,
            ContactUpdated: self.on_updated,
            OutboundSent: self.on_sent,
            DraftApproved: self.on_draft_decided,
            DraftRejected: self.on_draft_decided,
        }

    # --- timers ----------------------------------------------------------------

    async def on_timer_set(self, event: TimerSet, d: Delivery) -> None:
        await self.timers.set(
            event.timer_id, event.kind, event.fire_at, thread=event.thread, payload=event.payload
        )

    async def on_timer_cancel(self, event: TimerCancel, d: Delivery) -> None:
        await self.timers.cancel(event.timer_id)

    async def on_timer_fired(self, event: TimerFired, d: Delivery) -> None:
        if event.kind in ("workflow_delay", "reply_timeout"):
            await self.engine.timer_fired(event.timer_id, event.kind, event.payload, event.late)
        elif event.kind == "no_response":
            await self._no_response(
                event.thread,
                event.timer_id,
                event.payload,
                f"{event.timer_id}:{event.fire_at.isoformat()}",
                late=event.late,
            )

    async def _no_response(
        self,
        thread: str,
        timer_id: str,
        payload: dict[str, Any],
        source: str,
        *,
        late: bool,
        escalated: bool = False,
    ) -> None:
        contact = await self.pool.fetchrow(Q.get_contact, thread)
        if contact is None or contact["opted_out"]:
            return
        since = payload.get("since", "")
        last_reply = contact["last_reply_at"]
        if last_reply is not None and last_reply.isoformat() >= since:
            return  # they answered after our message: not silent
        # Judged with no transaction open; storing it once per source event keeps a redelivery harmless.
        verdict = await decide(self.judge, "no_response", "no_reply", view_of(contact))
        details = {
            "since": since,
            "days": self.settings.no_response_days,
            "late": late,
            "escalated": escalated,
        }
        async with self.pool.acquire() as conn:
            await store_outcome(
                conn, verdict, thread=thread, reason="no_reply", source_event=source, details=details
            )

    async def on_overdue(self, record: TimerRecord, outcome: Outcome, lateness: float) -> None:
        """This replica skipped or escalated an overdue timer: leave a trace."""
        async with self.pool.acquire() as conn:
            await audit(
                conn,
                service=SERVICE,
                action=f"timer_{outcome}",
                thread=record.thread,
                details={
                    "timer_id": record.timer_id,
                    "kind": record.kind,
                    "fire_at": record.fire_at.isoformat(),
                    "lateness_s": round(lateness, 3),
                },
            )
        if record.kind == "no_response" and outcome == "escalated":
            # The owner was told; the label is still true.
            await self._no_response(
                record.thread,
                record.timer_id,
                record.payload,
                f"{record.timer_id}:{record.fire_at.isoformat()}",
                late=True,
                escalated=True,
            )

    # --- owner approval of workflow messages -------------------------------------

    async def on_draft_decided(self, event: DraftApproved | DraftRejected, d: Delivery) -> Drop | None:
        """The owner's decision on a draft an approval-required ``send_sms`` requested."""
        if not event.workflow_enrollment_id:
            return None  # a reply to an inbound message: not a workflow's
        try:
            enrollment_id = uuid.UUID(event.workflow_enrollment_id)
        except ValueError:
            return Drop(f"{event.tag} with a bad workflow_enrollment_id {event.workflow_enrollment_id!r}")
        approved = isinstance(event, DraftApproved)
        output: dict[str, Any] = {
            "draft_id": event.draft_id,
            "version": event.version,
            "approved" if approved else "rejected": True,
            "reviewer": event.reviewer,
        }
        if isinstance(event, DraftApproved):
            output["body"] = event.body  # what the lead gets (an EDIT may have changed it)
        elif event.reason:
            output["reason"] = event.reason
        await self.engine.approval_decided(enrollment_id, event.request_id, approved=approved, output=output)
        return None

    # --- contacts and conversations ------------------------------------------------

    async def on_lead(self, event: LeadCreated, d: Delivery) -> None:
        fields = dict(event.fields)
        if event.source:
            fields["source"] = event.source
        values = Q.upsert_lead_contact.bind(event, fields=fields, tags=list(event.tags))
        await self.pool.execute(Q.upsert_lead_contact.sql, *values)
        await self.engine.trigger(
            "contact_created",
            event.thread,
            context={"lead_id": event.lead_id},
            event_id=event.lead_id,
        )

    async def on_call_missed(self, event: CallMissed, d: Delivery) -> None:
        """A missed call: start ``call_missed`` workflows (the text-back), once per window.

        The window is kept in Postgres (trigger_windows), so it holds across replicas
        and restarts; it is measured on when ingest saw the call, not on delivery time.
        """
        window = timedelta(seconds=self.settings.call_textback_window_s)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(Q.ensure_contact, event.thread, event.from_number)
            claimed = await conn.fetchval(
                Q.claim_trigger_window,
                event.thread,
                "call_missed",
                event.call_sid,
                event.received_at,
                window,
            )
            if claimed is None:
                await audit(
                    conn,
                    service=SERVICE,
                    action="call_textback_skipped",
                    thread=event.thread,
                    details={
                        "call_sid": event.call_sid,
                        "reason": "repeat_call_within_window",
                        "window_s": self.settings.call_textback_window_s,
                    },
                )
                return
        await self.engine.trigger(
            "call_missed",
            event.thread,
            context={"call_sid": event.call_sid, "missed_reason": event.reason},
            event_id=event.call_sid,
        )

    async def on_inbound(self, event: InboundRouted, d: Delivery) -> None:
        if event.decision in NOT_A_REPLY:
            return
        if event.language in ANSWERED_LANGUAGES and event.decision == "draft":
            # The language the router answered them in picks {en, es} workflow texts.
            await self.pool.execute(Q.remember_language, event.thread, event.from_number, event.language)
        await self.engine.lead_replied(event.thread, event.from_number, event.body, event.message_sid)
        await self.timers.cancel(no_response_timer_id(event.thread))
        await self.engine.trigger(
            "sms_received", event.thread, context={"body": event.body}, event_id=event.message_sid
        )

    async def on_optout(self, event: ContactOptout, d: Delivery) -> None:
        await self.engine.opted_out(event.thread, event.number, event.id)
        await self.timers.cancel(no_response_timer_id(event.thread))

    async def on_optin(self, event: ContactOptin, d: Delivery) -> None:
        await self.pool.execute(Q.ensure_contact, event.thread, event.number)
        await self.pool.execute(Q.set_opted_out, event.thread, False)

    async def on_paused(self, event: ContactPaused, d: Delivery) -> None:
        await self.engine.paused(
            event.thread, event.number, paused=event.paused, actor=event.actor, event_id=event.id
        )

    async def on_takeover(self, event: ContactTakeover, d: Delivery) -> None:
        """HUMAN_TAKEOVER holds the thread's workflow sends like a pause (docs/scheduler.md):
        a person is talking to the lead; the enrollments go on when the AI takes over again."""
        await self.engine.paused(
            event.thread,
            event.number,
            paused=event.active,
            actor=event.actor or "human_takeover",
            event_id=event.id,
        )

    async def on_tagged(self, event: ContactTagged, d: Delivery) -> None:
        outcome = self.settings.outcome_tags.get(event.tag_name) if event.added else None
        reason = f"tag:{event.tag_name}"
        verdict = None
        if outcome is not None:
            # Judged before the transaction that locks the contact row (the LLM may be slow).
            await self.pool.execute(Q.ensure_contact, event.thread, event.number)
            contact = await self.pool.fetchrow(Q.get_contact, event.thread)
            view = view_of(contact)
            view["tags"] = sorted({*view["tags"], event.tag_name})  # as the transaction below leaves it
            verdict = await decide(self.judge, outcome, reason, view)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(Q.ensure_contact, event.thread, event.number)
            await conn.execute(Q.add_tag if event.added else Q.remove_tag, event.thread, event.tag_name)
            if verdict is not None:
                await store_outcome(conn, verdict, thread=event.thread, reason=reason, source_event=event.id)
        if event.added:
            await self.engine.trigger(
                "tag_added", event.thread, context={"tag": event.tag_name}, event_id=event.id
            )

    async def on_updated(self, event: ContactUpdated, d: Delivery) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(Q.ensure_contact, event.thread, event.number)
            await set_field(conn, event.thread, event.field, event.value)
        await self.engine.trigger(
            "field_updated",
            event.thread,
            context={"field": event.field, "value": event.value},
            event_id=event.id,
        )

    async def on_sent(self, event: OutboundSent, d: Delivery) -> None:
        """Our last word to a lead starts the no-response clock (each send restarts it)."""
        if event.kind not in LEAD_FACING:
            return
        now = self.engine.clock.now()
        await self.pool.execute(Q.ensure_contact, event.thread, event.to_number)
        await self.pool.execute(Q.record_outbound, event.thread, now)
        fire_at = now + _days(self.settings.no_response_days)
        await self.timers.set(
            no_response_timer_id(event.thread),
            "no_response",
            fire_at,
            thread=event.thread,
            payload={"since": now.isoformat()},
        )


def _days(days: float) -> Any:
    from datetime import timedelta

    return timedelta(days=days)
