"""``draft.decided``: the owner's YES / NO / edit of a pending version, and the console.

Decision.check (services/drafter/decision.py) finds the version and answers every case
that decides nothing; the functions here apply the action inside the same unit of work
(its rows and events commit together).
Console actions (SEND, PAUSE, RESUME, LIST, HELP) go to services/drafter/takeover.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from libs import metrics
from libs.consumer import Delivery
from libs.events import ContactPaused, DraftApproved, DraftDecided, DraftRejected, utcnow
from services.drafter import owner_texts, workflow_drafts
from services.drafter.decision import Decision
from services.drafter.deps import Deps
from services.drafter.ids import derived_id, to_uuid
from services.drafter.store import APPROVED, REJECTED, SUPERSEDED, Draft, Q, enqueue_answered, insert_draft
from services.drafter.takeover import CONSOLE_ACTIONS, Console
from services.drafter.work import cancel_expiry


async def approve(dec: Decision, draft: Draft) -> None:
    ev = dec.event
    await dec.conn.execute(Q.set_status, to_uuid(draft.draft_id), draft.version, APPROVED, ev.reviewer)
    await dec.record(draft, "accepted", ev.notes)
    dec.u.emit(draft.event(DraftApproved, reviewer=ev.reviewer))
    dec.u.emit(cancel_expiry(draft, "cancel"))


async def reject(dec: Decision, draft: Draft) -> None:
    """NO: the lead's message goes to a person and the thread is paused (a workflow
    message's NO ends its enrollment instead: workflow_drafts.reject)."""
    ev = dec.event
    await dec.conn.execute(Q.set_status, to_uuid(draft.draft_id), draft.version, REJECTED, ev.reviewer)
    await dec.record(draft, "accepted", ev.notes)
    if draft.from_workflow:
        workflow_drafts.reject(dec, draft)
        return
    await enqueue_answered(
        dec.conn,
        draft,
        key=f"rejected:{draft.draft_id}",
        reason="rejected",
        detail=f"draft #{draft.ref} rejected by {ev.reviewer}" + (f": {ev.notes}" if ev.notes else ""),
    )
    dec.u.emit(draft.event(DraftRejected, reviewer=ev.reviewer, reason=ev.notes))
    # A rejected draft means a person takes the conversation over: stop automation.
    dec.u.emit(
        ContactPaused(
            thread=draft.thread,
            id=derived_id("paused", draft.draft_id, draft.version),
            number=draft.to_number,
            paused=True,
            actor=ev.reviewer,
            reason=f"draft #{draft.ref} rejected",
        )
    )
    dec.u.emit(cancel_expiry(draft, "cancel"))


async def edit(dec: Decision, draft: Draft) -> None:
    """The owner's own text: a new version with a new ref, announced like a new draft."""
    ev = dec.event
    new_text = (ev.text or "").strip()
    if not new_text:
        dec.reply(owner_texts.not_understood(ev.text or "", [], 0))
        await dec.record(draft, "clarify", "edit without text")
        return
    await dec.conn.execute(Q.set_status, to_uuid(draft.draft_id), draft.version, SUPERSEDED, ev.reviewer)
    # A new ref per version: a reply to the old prompt names the old text, and is
    # never applied to this one (see Decision._target_by_ref).
    ref = await dec.conn.fetchval(Q.next_ref)
    new = await insert_draft(
        dec.conn,
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
        expires_at=utcnow() + timedelta(seconds=dec.settings.draft_expiry_s),
        inbound_seq=draft.inbound_seq,
        request_id=draft.request_id,
        workflow_enrollment_id=draft.workflow_enrollment_id,
        workflow_step_id=draft.workflow_step_id,
        sms_prompted=dec.deps.owners.promptable(ref, draft.to_number, new_text),
    )
    await dec.record(draft, "accepted", ev.notes or f"new version {new.version} #{ref}")
    dec.created_version(new.source)
    dec.deps.owners.announce(dec.u, new)  # published once the new version is committed


#: What a decision does to the pending version it names (any other action is an edit).
ACTIONS: dict[str, Callable[[Decision, Draft], Awaitable[None]]] = {
    "approve": approve,
    "reject": reject,
    "edit": edit,
}


@dataclass(frozen=True)
class Approvals:
    deps: Deps
    console: Console

    async def on_decided(self, event: DraftDecided, d: Delivery) -> None:
        """A decision naming a ref or draft id no row has is refused at once: nothing that
        names a draft (its prompt, draft.created) is on the bus before the draft's row is
        committed (services/drafter/work.py), so an unknown draft is really unknown."""
        if event.action in CONSOLE_ACTIONS:
            await self._console(event)
            return None
        async with self.deps.outbox.unit() as u:
            if await u.conn.fetchval(Q.decision_seen, event.id):
                return None  # a redelivery of a decision already applied
            decision = Decision(self.deps, u, event)
            draft = await decision.check()
            if draft is not None:
                await ACTIONS.get(event.action, edit)(decision, draft)
        decision.count()  # committed: a rolled-back attempt is redelivered and counts then
        return None

    async def _console(self, event: DraftDecided) -> None:
        """SEND / PAUSE / RESUME / LIST / HELP (services/drafter/takeover.py)."""
        async with self.deps.outbox.unit() as u:
            if await u.conn.fetchval(Q.decision_seen, event.id):
                return
            outcome = await self.console.apply(u, event)
        metrics.DRAFT_DECISIONS.labels(event.action, event.source, outcome).inc()
