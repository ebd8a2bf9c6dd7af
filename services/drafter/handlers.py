"""The drafter's event handlers: draft, ask the owner, apply the owner's decision.

Consistency rule for every handler: the rows are written and the events published
inside one database transaction, events first, commit last. Every published event
has a deterministic Nats-Msg-Id (draft id + version, decision id, ...), so a handler
that fails after publishing rolls back, is redelivered, recomputes the same events
and JetStream stores them once. A committed transaction therefore always has its
events in the stream.

Failure policy for drafting (docs/drafter.md): primary provider -> fallback provider
-> the message goes to the manual-intervention queue with an owner alert. There is
no silent path: either the owner gets an approval prompt or an alert. Templates are
used only when no endpoint is configured at all, never as an LLM fallback, because a
template answer to a question the AI was meant to handle would read as a non-answer.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog

from libs import metrics
from libs.bus import Bus
from libs.consumer import Delivery, Drop, Retry
from libs.db import audit
from libs.events import (
    ContactPaused,
    DraftApproved,
    DraftCreated,
    DraftDecided,
    DraftRejected,
    DraftRequested,
    InboundRouted,
    OutboundFailed,
    OutboundRequested,
    OutboundSent,
    TimerCancel,
    TimerFired,
    TimerSet,
    thread_of,
    utcnow,
)
from libs.llm import LLM
from libs.owner_protocol import fits_sms
from services.drafter import owner_texts
from services.drafter.after_hours import acknowledge_if_closed
from services.drafter.bursts import DROPS_BURST, Bursts
from services.drafter.profile import Profile
from services.drafter.replying import Replier, message_of
from services.drafter.settings import DrafterSettings
from services.drafter.store import (
    APPROVED,
    REJECTED,
    SUPERSEDED,
    Draft,
    Q,
    draft_of,
    enqueue_manual,
    insert_draft,
)
from services.drafter.takeover import CONSOLE_ACTIONS, Console, thread_ref

SERVICE = "drafter"
log = structlog.get_logger("drafter")


def expiry_timer_id(draft_id: str) -> str:
    return f"draft_expiry:{draft_id}"


#: Deliveries of a decision naming an unknown draft that wait for its commit before refusing.
UNKNOWN_DRAFT_RETRIES = 2


@dataclass
class Drafter:
    settings: DrafterSettings
    bus: Bus
    pool: asyncpg.Pool
    llm: LLM
    profile: Profile
    #: Tests pass a manual clock (business hours decide the after-hours acknowledgement).
    clock: Callable[[], datetime] = field(default=utcnow)
    replier: Replier = field(init=False)
    bursts: Bursts = field(init=False)

    def __post_init__(self) -> None:
        self.console = Console(self.settings, self.bus, self.pool, self._tell_owner)
        self.replier = Replier(self)
        self.bursts = Bursts(self)

    # --- inbound.routed ----------------------------------------------------

    async def on_routed(self, event: InboundRouted, d: Delivery) -> Drop | Retry | None:
        """Routing applies per message; drafting is services/drafter/replying.py, and with
        bursts on (burst_debounce_s > 0) waits for the burst (services/drafter/bursts.py)."""
        if event.decision == "forward":
            # HUMAN_TAKEOVER: a person answers this thread; nothing of it is drafted.
            await self.bursts.drop(event.thread, f"{event.decision}:{event.rule}")
            await self.console.forward(event)
            return None
        if event.decision in DROPS_BURST:
            await self.bursts.drop(event.thread, f"{event.decision}:{event.rule}")
            return None
        # Before the draft: the lead hears "we're closed" first, the reply follows.
        await acknowledge_if_closed(
            event, profile=self.profile, pool=self.pool, bus=self.bus, clock=self.clock
        )
        if event.decision == "needs_review":
            await self._needs_review(event)
            if self.bursts.on:
                await self.bursts.review(event)
            return None
        if event.decision != "draft":
            return None  # owner commands, help, duplicates: not ours
        if self.bursts.on:
            await self.bursts.collect(event)
            return None
        async with self.pool.acquire() as conn:
            existing = draft_of(await conn.fetchrow(Q.draft_for_inbound, event.message_sid))
            if existing is None and await self._stale(conn, event):
                await self._skip_stale(event)
                return None
        return await self.replier.draft(event.thread, event.from_number, [message_of(event)], d)

    async def _stale(self, conn: asyncpg.Connection, event: InboundRouted) -> bool:
        """A newer message of the thread was drafted already (replicas, replays).

        Drafting this one now would answer the conversation out of order; a person
        looks at it instead. stream_seq 0 (events from before the field) is unknown.
        """
        if not event.stream_seq:
            return False
        newest = await conn.fetchval(Q.newest_inbound_seq, event.thread)
        return bool(newest > event.stream_seq)

    async def _skip_stale(self, event: InboundRouted, conn: asyncpg.Connection | None = None) -> None:
        log.warning("stale_inbound", message_sid=event.message_sid, seq=event.stream_seq)
        async with contextlib.AsyncExitStack() as stack:
            if conn is None:
                conn = await stack.enter_async_context(self.pool.acquire())
            await _queue_for_review(
                conn,
                event,
                detail="arrived after a newer message of the thread was drafted",
                action="stale_inbound_skipped",
                details={"message_sid": event.message_sid, "stream_seq": event.stream_seq},
            )

    def promptable(
        self,
        ref: str,
        to_number: str,
        body: str,
        messages: Sequence[str] = (),
        replaces: Sequence[str] = (),
    ) -> bool:
        """Whether the whole text fits the draft limit and one owner prompt SMS."""
        if len(body) > self.settings.max_draft_chars:
            return False
        if len(messages) > 1 or replaces:
            return owner_texts.burst_prompt(ref, to_number, body, messages, replaces) is not None
        return fits_sms(ref, to_number, body)

    def prompt_text(self, draft: Draft) -> str:
        """The owner prompt for a version, or, when it cannot be shown whole, why not.

        A first version answering several lead messages (a burst) or replacing pending
        drafts says so and quotes what the lead wrote; an edit is the owner's own text.
        """
        several = len(draft.lead_messages) > 1 or bool(draft.replaces_refs)
        if draft.sms_prompted and draft.version == 1 and several:
            text = owner_texts.burst_prompt(
                draft.ref, draft.to_number, draft.body, draft.lead_messages, draft.replaces_refs
            )
            if text is not None:
                return text
        if draft.sms_prompted:
            return owner_texts.approval_prompt(draft.ref, draft.to_number, draft.body)
        return owner_texts.too_long(
            draft.ref, draft.to_number, len(draft.body), self.settings.max_draft_chars
        )

    async def _announce(self, draft: Draft) -> None:
        """draft.created, the owner prompts and the expiry timer for one version.

        A version too long to show whole by SMS gets a short notice instead of a
        prompt: it waits on the dashboard, and SMS approvals of it are refused.
        """
        await self.bus.publish(
            DraftCreated(
                thread=draft.thread,
                draft_id=draft.draft_id,
                version=draft.version,
                ref=draft.ref,
                to_number=draft.to_number,
                body=draft.body,
                in_reply_to=draft.in_reply_to,
                intent=draft.intent,
                language=draft.language,
                source=draft.source,  # type: ignore[arg-type]
            )
        )
        text = self.prompt_text(draft)
        kind = "owner_prompt" if draft.sms_prompted else "owner_alert"
        for owner in self.settings.owner_numbers:
            await self._tell_owner(owner, text, f"prompt:{draft.draft_id}:{draft.version}", kind=kind)
        assert draft.expires_at is not None
        await self.bus.publish(
            TimerSet(
                thread=draft.thread,
                timer_id=expiry_timer_id(draft.draft_id),
                kind="draft_expiry",
                fire_at=draft.expires_at,
                payload={
                    "draft_id": draft.draft_id,
                    "version": draft.version,
                    "ref": draft.ref,
                    "to_number": draft.to_number,
                },
            )
        )

    async def _tell_owner(
        self, owner: str, body: str, request_key: str, *, kind: str = "owner_alert"
    ) -> None:
        await self.bus.publish(
            OutboundRequested(
                thread=thread_of(owner),
                request_id=f"{request_key}:{owner}",
                to_number=owner,
                body=body,
                kind=kind,  # type: ignore[arg-type]
            )
        )

    async def _tell_owners(self, body: str, request_key: str) -> None:
        for owner in self.settings.owner_numbers:
            await self._tell_owner(owner, body, request_key)

    async def _needs_review(self, event: InboundRouted) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await _queue_for_review(
                conn,
                event,
                detail=event.rule,
                action="needs_review",
                details={"rule": event.rule, "message_sid": event.message_sid},
            )
            if self.settings.alert_on_needs_review:
                ref = await thread_ref(conn, event.thread, event.from_number)
                await self._tell_owners(
                    owner_texts.needs_review(event.from_number, event.body, event.rule, ref),
                    f"needs_review:{event.message_sid}",
                )

    # --- draft.requested -----------------------------------------------------

    async def on_requested(self, event: DraftRequested, d: Delivery) -> Drop | None:
        """A workflow message that needs the owner's YES: a draft like any other.

        The text is the workflow's, rendered by the scheduler; nothing is generated.
        """
        if not event.to_number.strip():
            return Drop(f"draft.requested {event.request_id} without a to_number")
        if not event.body.strip():
            return Drop(f"draft.requested {event.request_id} with an empty body")
        async with self.pool.acquire() as conn:
            existing = draft_of(await conn.fetchrow(Q.draft_for_request, event.request_id))
        if existing is not None:
            # Redelivered after the commit. Re-announcing a still-undecided first version
            # is deduplicated and covers a lost ack; once decided or edited, the events
            # of what happened since are in the stream and nothing is repeated.
            if existing.pending:
                await self._announce(existing)
            return None
        draft_id = derived_id("requested", event.request_id)
        async with self.pool.acquire() as conn, conn.transaction():
            ref = await conn.fetchval(Q.next_ref)
            draft = await insert_draft(
                conn,
                draft_id=draft_id,
                version=1,
                ref=ref,
                thread=event.thread,
                to_number=event.to_number,
                body=event.body,
                source=event.source,
                in_reply_to="",
                inbound_body="",
                intent=None,
                language=None,
                created_by="SYSTEM",
                expires_at=utcnow() + timedelta(seconds=self.settings.draft_expiry_s),
                request_id=event.request_id,
                workflow_enrollment_id=event.workflow_enrollment_id,
                workflow_step_id=event.step_id,
                # The workflow's text is never cut: too long, and it waits on the dashboard.
                sms_prompted=self.promptable(ref, event.to_number, event.body),
            )
            await audit(
                conn,
                service=SERVICE,
                action="draft_created",
                thread=event.thread,
                details={
                    "draft_id": draft_id,
                    "ref": ref,
                    "version": 1,
                    "source": event.source,
                    "request_id": event.request_id,
                    "workflow_enrollment_id": event.workflow_enrollment_id,
                    "step_id": event.step_id,
                },
            )
            await self._announce(draft)
        metrics.DRAFTS_CREATED.labels(event.source).inc()
        log.info("draft_created", draft_id=draft_id, ref=ref, source=event.source)
        return None

    # --- draft.decided -------------------------------------------------------

    async def on_decided(self, event: DraftDecided, d: Delivery) -> Retry | None:
        if event.action in CONSOLE_ACTIONS:
            await self._console(event)
            return None
        if d.num_delivered <= UNKNOWN_DRAFT_RETRIES and not await self._names_known_draft(event):
            # draft.created and the owner prompt are published before the creating
            # transaction commits, so a fast decision can arrive first: wait, don't refuse.
            return Retry(0.5, "the draft this decision names is not committed yet")
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(Q.decision_seen, event.id):
                return None  # a redelivery of a decision already applied
            decision = Decision(self, conn, event)
            await decision.apply()
        decision.count()  # committed: a rolled-back attempt is redelivered and counts then
        return None

    async def _console(self, event: DraftDecided) -> None:
        """SEND / PAUSE / RESUME / LIST / HELP (services/drafter/takeover.py)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(Q.decision_seen, event.id):
                return
            outcome = await self.console.apply(conn, event)
        metrics.DRAFT_DECISIONS.labels(event.action, event.source, outcome).inc()

    async def on_outbound(self, event: OutboundSent | OutboundFailed, d: Delivery) -> None:
        """The delivery result of a human reply, for the owner who sent it by SMS."""
        await self.console.on_outcome(event)

    async def _names_known_draft(self, event: DraftDecided) -> bool:
        """False only when the decision names a draft id or ref that no row has (yet)."""
        if event.draft_id:
            try:
                draft_id = _uuid(event.draft_id)
            except ValueError:
                return True  # malformed: Decision refuses it
            return await self.pool.fetchrow(Q.current_version, draft_id) is not None
        if event.ref:
            return bool(await self.pool.fetchval(Q.ref_exists, event.ref.lstrip("#")))
        return True

    # --- timer.fired ---------------------------------------------------------

    async def on_timer(self, event: TimerFired, d: Delivery) -> Drop | Retry | None:
        if event.kind == "burst_debounce":
            return await self.bursts.on_timer(event, d)
        if event.kind != "draft_expiry":
            return None
        draft_id = event.payload.get("draft_id")
        if not isinstance(draft_id, str):
            return Drop(f"draft_expiry timer {event.timer_id} without a draft_id")
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                draft = draft_of(await conn.fetchrow(Q.current_version, _uuid(draft_id)))
            except ValueError:
                return Drop(f"draft_expiry timer {event.timer_id}: bad draft_id {draft_id!r}")
            if draft is None:
                return Drop(f"draft_expiry timer {event.timer_id}: unknown draft {draft_id}")
            version = event.payload.get("version")
            stale = isinstance(version, int) and version != draft.version
            if not draft.pending or stale:
                # Decided (or edited, which set a newer timer) in time: nothing to say.
                log.info("expiry_ignored", draft_id=draft_id, status=draft.status, stale=stale)
                return None
            if await conn.execute(Q.mark_expiry_alerted, _uuid(draft_id), draft.version) == ("UPDATE 0"):
                return None  # alerted already (a redelivered or duplicate timer)
            await enqueue_manual(
                conn,
                key=f"draft_expired:{draft_id}:{draft.version}",
                thread=draft.thread,
                number=draft.to_number,
                reason="draft_expired",
                detail=f"draft #{draft.ref} undecided after {self.settings.draft_expiry_s:g}s",
                message_sid=draft.in_reply_to,
                draft_id=draft_id,
                body=draft.inbound_body,
            )
            await audit(
                conn,
                service=SERVICE,
                action="draft_expired",
                thread=draft.thread,
                details={
                    "draft_id": draft_id,
                    "ref": draft.ref,
                    "version": draft.version,
                    "late": event.late,
                },
            )
            await self._tell_owners(
                owner_texts.draft_expired(draft.ref, draft.to_number, self.settings.draft_expiry_s / 3600),
                f"expired:{draft_id}:{draft.version}",
            )
        metrics.DRAFTS_EXPIRED.inc()  # every branch that sends no alert returned above
        return None

    # --- contact.paused ------------------------------------------------------

    async def on_paused(self, event: ContactPaused, d: Delivery) -> None:
        """A resumed thread leaves the manual-intervention queue (someone handled it); a
        paused one drafts nothing more, so its open burst is dropped."""
        if event.paused:
            await self.bursts.drop(thread_of(event.number), "paused")
            return None
        async with self.pool.acquire() as conn, conn.transaction():
            result = await conn.execute(
                Q.resolve_manual_for_thread, thread_of(event.number), event.actor or "resume"
            )
            if result != "UPDATE 0":
                await audit(
                    conn,
                    service=SERVICE,
                    action="manual_queue_resolved",
                    thread=thread_of(event.number),
                    actor="HUMAN" if event.actor else "SYSTEM",
                    details={"by": event.actor, "rows": int(result.split()[-1])},
                )
        return None


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)


#: Ids of events derived from a draft are fixed, so a retried handler publishes the
#: same event and JetStream's duplicate window drops the copy.
_EVENT_IDS = uuid.UUID("6f1d2c1e-8a43-4f7e-9a51-2d0c3b7e5a10")


def derived_id(*parts: object) -> str:
    return str(uuid.uuid5(_EVENT_IDS, ":".join(str(p) for p in parts)))


class Decision:
    """One draft.decided event checked and applied inside the caller's transaction."""

    def __init__(self, drafter: Drafter, conn: asyncpg.Connection, event: DraftDecided) -> None:
        self.d = drafter
        self.conn = conn
        self.event = event
        self.settings = drafter.settings
        # Counted by count() once the caller's transaction committed.
        self._outcomes: list[str] = []
        self._versions: list[str] = []

    def count(self) -> None:
        ev = self.event
        for outcome in self._outcomes:
            metrics.DRAFT_DECISIONS.labels(ev.action, ev.source, outcome).inc()
        for source in self._versions:
            metrics.DRAFTS_CREATED.labels(source).inc()

    @property
    def by_sms(self) -> bool:
        return self.event.source == "sms"

    async def apply(self) -> None:
        ev = self.event
        if self.by_sms and ev.reviewer not in self.settings.owner_numbers:
            # Only the owner numbers decide by SMS. Nothing is sent back: the sender
            # may be a lead or a stranger, and silence tells them nothing.
            await self._record(None, "refused", "reviewer is not an owner number")
            return
        if ev.action == "unclear":
            pending, total = await self._pending_listing()
            await self._reply(owner_texts.not_understood(ev.text or "", pending, total, ev.notes))
            await self._record(None, "clarify", f"command not understood: {ev.notes}")
            return
        draft = await self._target()
        if draft is None:
            return
        if not draft.pending and draft.replaced_by:
            await self._replaced(draft)
            return
        if not draft.pending:
            await self._reply(owner_texts.already_decided(draft.ref, draft.status))
            await self._record(draft, "refused", f"draft is {draft.status}")
            return
        if ev.action == "approve" and self.by_sms and not draft.sms_prompted:
            # The owner was never shown this text whole: only the dashboard can approve it.
            await self._reply(owner_texts.not_shown(draft.ref))
            await self._record(draft, "refused", "not shown whole by SMS")
            return
        if ev.action == "approve":
            await self._approve(draft)
        elif ev.action == "reject":
            await self._reject(draft)
        else:
            await self._edit(draft)

    async def _replaced(self, draft: Draft) -> None:
        """The lead wrote again and a new draft replaced this one: nothing is decided; the
        owner is told which draft to decide instead (following later replacements)."""
        named = (self.event.ref or "").lstrip("#") or draft.ref
        newest = draft
        for _ in range(50):  # a chain of replacements, each by a newer lead message
            if newest.replaced_by is None:
                break
            found = draft_of(await self.conn.fetchrow(Q.current_version_unlocked, _uuid(newest.replaced_by)))
            if found is None:
                break
            newest = found
        await self._reply(owner_texts.replaced(named, newest.ref, newest.status))
        await self._record(draft, "refused", f"replaced by #{newest.ref} after the lead wrote again")

    async def _current(self, draft_id: str) -> Draft | None:
        """The newest version of a draft, locked until the decision commits."""
        try:
            return draft_of(await self.conn.fetchrow(Q.current_version, _uuid(draft_id)))
        except ValueError:
            return None

    async def _target(self) -> Draft | None:
        """The draft version the decision names; on anything ambiguous, ask and return None.

        Every row read here is locked (FOR UPDATE) until the transaction ends, so a
        concurrent edit or decision of the same draft waits for this one.
        """
        ev = self.event
        if ev.ref:
            return await self._target_by_ref(ev.ref.lstrip("#"))
        if ev.draft_id:
            draft = await self._current(ev.draft_id)
            if draft is None:
                await self._record(None, "refused", f"unknown draft_id {ev.draft_id}")
            return draft
        # A bare reply: valid only when exactly one draft is pending.
        rows = await self.conn.fetch(Q.pending_drafts, 2)
        if len(rows) == 1:
            draft = await self._current(str(rows[0]["draft_id"]))
            if draft is not None and draft.pending and not self._could_have_read(draft):
                await self._reply(owner_texts.confirm_bare(*self._prompt_and_fallback(draft)))
                await self._record(draft, "clarify", "bare reply sent before this version's prompt")
                return None
            return draft
        if not rows:
            await self._reply(owner_texts.no_pending())
            await self._record(None, "refused", "bare reply with no pending draft")
        else:
            pending, total = await self._pending_listing()
            await self._reply(owner_texts.which_draft(pending, total))
            await self._record(None, "clarify", f"bare reply with {total} pending drafts")
        return None

    async def _target_by_ref(self, ref: str) -> Draft | None:
        """A ref names one version (each version has its own ref): the decision applies
        to it only. When a newer version replaced it, the owner gets the new text and is
        asked again; nothing is decided."""
        ev = self.event
        named = draft_of(await self.conn.fetchrow(Q.version_by_ref, ref))
        if named is None:
            pending, total = await self._pending_listing()
            await self._reply(owner_texts.unknown_ref(ref, pending, total))
            await self._record(None, "refused", f"unknown ref #{ref}")
            return None
        if ev.draft_id and ev.draft_id != named.draft_id:
            await self._record(None, "refused", f"ref #{ref} is not a version of draft {ev.draft_id}")
            return None
        current = await self._current(named.draft_id)
        assert current is not None  # named is a version of it, locked
        if current.version == named.version:
            return current
        if not current.pending:
            return current  # decided since: apply() says so
        await self._reply(
            owner_texts.changed_since(named.ref, *self._prompt_and_fallback(current))
        )
        await self._record(
            named, "clarify", f"version {named.version} was replaced by version {current.version}"
        )
        return None

    def _could_have_read(self, draft: Draft) -> bool:
        """Whether the owner can have read this version's prompt before replying.

        Their own edit they wrote themselves; any other version must have been
        prompted bare_reply_grace_s before their SMS reached ingest.
        """
        ev = self.event
        if not self.by_sms or draft.created_by == ev.reviewer:
            return True
        received = ev.received_at or ev.occurred_at
        return draft.created_at <= received - timedelta(seconds=self.settings.bare_reply_grace_s)

    def _prompt_and_fallback(self, draft: Draft) -> tuple[str, str]:
        """The version's prompt (or too-long notice), and a short form if it does not fit."""
        short = owner_texts.too_long(
            draft.ref, draft.to_number, len(draft.body), self.settings.max_draft_chars
        )
        return self.d.prompt_text(draft), short

    async def _pending_listing(self) -> tuple[list[tuple[str, str]], int]:
        limit = self.settings.clarify_list_max
        rows = await self.conn.fetch(Q.pending_drafts, limit)
        total = int(await self.conn.fetchval(Q.count_pending))
        return [(r["ref"], r["to_number"]) for r in rows], total

    async def _approve(self, draft: Draft) -> None:
        ev = self.event
        await self.conn.execute(Q.set_status, _uuid(draft.draft_id), draft.version, APPROVED, ev.reviewer)
        await self._record(draft, "accepted", ev.notes)
        await self.d.bus.publish(
            DraftApproved(
                thread=draft.thread,
                draft_id=draft.draft_id,
                version=draft.version,
                to_number=draft.to_number,
                body=draft.body,
                reviewer=ev.reviewer,
                in_reply_to=draft.in_reply_to,
                request_id=draft.request_id,
                workflow_enrollment_id=draft.workflow_enrollment_id,
            )
        )
        await self._cancel_expiry(draft)

    async def _reject(self, draft: Draft) -> None:
        ev = self.event
        await self.conn.execute(Q.set_status, _uuid(draft.draft_id), draft.version, REJECTED, ev.reviewer)
        await self._record(draft, "accepted", ev.notes)
        if draft.from_workflow:
            await self._reject_workflow_draft(draft)
            return
        await enqueue_manual(
            self.conn,
            key=f"rejected:{draft.draft_id}",
            thread=draft.thread,
            number=draft.to_number,
            reason="rejected",
            detail=f"draft #{draft.ref} rejected by {ev.reviewer}" + (f": {ev.notes}" if ev.notes else ""),
            message_sid=draft.in_reply_to,
            draft_id=draft.draft_id,
            body=draft.inbound_body,
        )
        await self.d.bus.publish(
            DraftRejected(
                thread=draft.thread,
                draft_id=draft.draft_id,
                version=draft.version,
                reviewer=ev.reviewer,
                reason=ev.notes,
            )
        )
        # A rejected draft means a person takes the conversation over: stop automation.
        await self.d.bus.publish(
            ContactPaused(
                thread=draft.thread,
                id=derived_id("paused", draft.draft_id, draft.version),
                number=draft.to_number,
                paused=True,
                actor=ev.reviewer,
                reason=f"draft #{draft.ref} rejected",
            )
        )
        await self._cancel_expiry(draft)

    async def _reject_workflow_draft(self, draft: Draft) -> None:
        """NO to a workflow message: it is not sent and its enrollment ends (the scheduler).

        Unlike a rejected reply, the thread is neither paused nor queued: the lead asked
        nothing, and pausing would make the router log their next message without a draft.
        """
        await self.d.bus.publish(
            DraftRejected(
                thread=draft.thread,
                draft_id=draft.draft_id,
                version=draft.version,
                reviewer=self.event.reviewer,
                reason=self.event.notes,
                request_id=draft.request_id,
                workflow_enrollment_id=draft.workflow_enrollment_id,
            )
        )
        await self._cancel_expiry(draft)

    async def _edit(self, draft: Draft) -> None:
        ev = self.event
        new_text = (ev.text or "").strip()
        if not new_text:
            await self._reply(owner_texts.not_understood(ev.text or "", [], 0))
            await self._record(draft, "clarify", "edit without text")
            return
        await self.conn.execute(Q.set_status, _uuid(draft.draft_id), draft.version, SUPERSEDED, ev.reviewer)
        # A new ref per version: a reply to the old prompt names the old text, and is
        # never applied to this one (see _target_by_ref).
        ref = await self.conn.fetchval(Q.next_ref)
        new = await insert_draft(
            self.conn,
            draft_id=draft.draft_id,
            version=draft.version + 1,
            ref=ref,
            thread=draft.thread,
            to_number=draft.to_number,
            body=new_text,
            source="edit",
            in_reply_to=draft.in_reply_to,
            inbound_body=draft.inbound_body,
            intent=draft.intent,
            language=draft.language,
            created_by=ev.reviewer,
            expires_at=utcnow() + timedelta(seconds=self.settings.draft_expiry_s),
            inbound_seq=draft.inbound_seq,
            request_id=draft.request_id,
            workflow_enrollment_id=draft.workflow_enrollment_id,
            workflow_step_id=draft.workflow_step_id,
            sms_prompted=self.d.promptable(ref, draft.to_number, new_text),
        )
        await self._record(draft, "accepted", ev.notes or f"new version {new.version} #{ref}")
        self._versions.append(new.source)
        await self.d._announce(new)

    async def _cancel_expiry(self, draft: Draft) -> None:
        await self.d.bus.publish(
            TimerCancel(
                thread=draft.thread,
                id=derived_id("cancel", draft.draft_id, draft.version),
                timer_id=expiry_timer_id(draft.draft_id),
            )
        )

    async def _reply(self, text: str) -> None:
        """Answer the owner who sent the command (SMS only: API callers read the audit)."""
        if self.by_sms:
            await self.d._tell_owner(self.event.reviewer, text, f"reply:{self.event.id}", kind="owner_prompt")

    async def _record(self, draft: Draft | None, outcome: str, notes: str) -> None:
        ev = self.event
        await self.conn.execute(
            Q.insert_approval,
            ev.id,
            _uuid(draft.draft_id) if draft else None,
            draft.version if draft else None,
            draft.ref if draft else ev.ref,
            ev.reviewer,
            ev.source,
            ev.action,
            outcome,
            notes,
        )
        await audit(
            self.conn,
            service=SERVICE,
            action=f"decision_{outcome}",
            thread=draft.thread if draft else ev.thread,
            actor="HUMAN",
            details={
                "decision_id": ev.id,
                "reviewer": ev.reviewer,
                "source": ev.source,
                "action": ev.action,
                "ref": draft.ref if draft else ev.ref,
                "draft_id": draft.draft_id if draft else ev.draft_id,
                "version": draft.version if draft else None,
                "notes": notes,
            },
        )
        self._outcomes.append(outcome)


__all__ = ["Decision", "Drafter", "derived_id", "expiry_timer_id"]


async def _queue_for_review(
    conn: asyncpg.Connection,
    event: InboundRouted,
    *,
    detail: str,
    action: str,
    details: dict[str, Any],
) -> None:
    """Put an inbound message in the manual-intervention queue, and say why in the audit log."""
    await enqueue_manual(
        conn,
        key=f"needs_review:{event.message_sid}",
        thread=event.thread,
        number=event.from_number,
        reason="needs_review",
        detail=detail,
        message_sid=event.message_sid,
        body=event.body,
    )
    await audit(conn, service=SERVICE, action=action, thread=event.thread, details=details)
