"""Withdrawing pending reply drafts that can no longer be sent (docs/drafter.md, "Withdrawn drafts").

A pending reply draft is withdrawn, at once and in the transaction that learns why:

- ``lead_wrote``: a draftable lead message arrived (it is held in a burst, or being
  drafted). The new draft answers the old draft's messages too and fills
  ``replaced_by``; until then a decision naming it is told "a new draft is coming".
- ``review``: a lead message that needs a person arrived; the withdrawn draft's
  messages join the manual queue (the owner must read the new message anyway).
- ``opted_out``: ``contact.optout`` (from ingest, the router or a contact import).
- ``human_reply``: a person answered the lead (SEND, API, dashboard).

Status SUPERSEDED (as before), ``withdrawn_reason`` says why, the expiry timer is
cancelled. A version withdrawn with ``lead_wrote`` whose replacement will not come
after all (the burst went to review, the LLM failed, the lead opted out, a person
answered, the thread was paused) gets that reason instead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import structlog

from libs import consent_state
from libs.bus import Bus
from libs.consumer import Delivery
from libs.event_outbox import EventOutbox
from libs.events import ContactOptout, TimerCancel, thread_of
from services.drafter import owner_texts
from services.drafter.ids import burst_timer_id
from services.drafter.store import Draft, Q, burst_of, draft_of, enqueue_answered, thread_ref
from services.drafter.work import Unit, cancel_expiry, record

log = structlog.get_logger("drafter.withdrawal")

LEAD_WROTE = "lead_wrote"
REVIEW = "review"
OPTED_OUT = "opted_out"
HUMAN_REPLY = "human_reply"
PAUSED = "paused"

#: bursts.drop's reason (router decision, or "paused") -> why its awaiting drafts get no replacement.
DROP_REASONS = {"forward": HUMAN_REPLY, "opt_out": OPTED_OUT, "log_only": PAUSED, "paused": PAUSED}


def _drafts(records: list[asyncpg.Record]) -> list[Draft]:
    return [d for r in records if (d := draft_of(r)) is not None]


async def awaiting(conn: asyncpg.Connection, thread: str) -> list[Draft]:
    """The thread's versions withdrawn for a newer lead message, waiting for their replacement."""
    return _drafts(await conn.fetch(Q.awaiting_replacement, thread))


async def _withdrawn(u: Unit, d: Draft, reason: str, *, cancel: bool) -> None:
    """The audit entry of a withdrawn version, and (``cancel``) its expiry timer's cancel."""
    details = {"draft_id": d.draft_id, "version": d.version, "ref": d.ref, "reason": reason}
    events = [cancel_expiry(d, "withdrawn")] if cancel else []
    await record(u, "draft_withdrawn", d.thread, details, emit=events)


async def withdraw(u: Unit, thread: str, reason: str, *, by: str = "lead") -> list[Draft]:
    """Withdraw the thread's pending reply drafts (workflow drafts are not touched), inside
    the caller's unit; for any reason but ``lead_wrote`` the drafts already waiting
    for a replacement get this reason too. Idempotent: a repeat finds nothing pending."""
    conn = u.conn
    await conn.execute(Q.lock_thread, thread)
    pending = _drafts(await conn.fetch(Q.pending_replies_of_thread, thread))
    for d in pending:
        await conn.execute(Q.withdraw_draft, uuid.UUID(d.draft_id), d.version, reason, by)
        await _withdrawn(u, d, reason, cancel=True)
    waiting = [] if reason == LEAD_WROTE else await give_up(u, thread, reason, queue=pending)
    if pending:
        log.info("drafts_withdrawn", thread=thread, reason=reason, refs=[d.ref for d in pending])
    return pending + waiting


async def give_up(
    u: Unit, thread: str, reason: str, *, queue: list[Draft] | None = None
) -> list[Draft]:
    """The replacement the thread's awaiting drafts wait for will not be written: they get
    ``reason``. With ``review`` their messages (and those of ``queue``) join the manual queue."""
    conn = u.conn
    waiting = await awaiting(conn, thread)
    for d in waiting:
        await conn.execute(Q.set_withdrawn_reason, uuid.UUID(d.draft_id), d.version, reason)
        await _withdrawn(u, d, reason, cancel=False)  # its timer was cancelled when withdrawn
    if reason == REVIEW:
        for d in (queue or []) + waiting:
            # No draft answers these messages now: a person does.
            await enqueue_answered(
                conn,
                d,
                key=f"withdrawn:{d.draft_id}:{d.version}",
                reason="needs_review",
                detail=f"draft #{d.ref} withdrawn: the lead wrote again",
            )
    if waiting:
        log.info("replacement_given_up", thread=thread, reason=reason, refs=[d.ref for d in waiting])
    return waiting


async def drop_open_burst(u: Unit, thread: str, reason: str) -> bool:
    """The thread's open burst is never drafted (inside the caller's unit)."""
    conn = u.conn
    await conn.execute(Q.lock_thread, thread)
    row = burst_of(await conn.fetchrow(Q.open_burst, thread))
    if row is None:
        return False
    await conn.execute(Q.close_burst, row.burst_id, "dropped", None, reason)
    cancel = TimerCancel(
        thread=thread, id=str(uuid.uuid5(row.burst_id, "dropped")), timer_id=burst_timer_id(str(row.burst_id))
    )
    await record(
        u, "burst_dropped", thread, {"burst_id": str(row.burst_id), "reason": reason}, emit=[cancel]
    )
    log.info("burst_dropped", thread=thread, reason=reason)
    return True


async def refusal(conn: asyncpg.Connection, named_ref: str, draft: Draft) -> str:
    """What the owner is told when a decision names a withdrawn version."""
    reason = draft.withdrawn_reason or LEAD_WROTE
    ref = await thread_ref(conn, draft.thread, draft.to_number) if reason == REVIEW else ""
    return owner_texts.withdrawn(named_ref, draft.to_number, reason, ref)


@dataclass
class OptOuts:
    """``contact.optout``: the lead's pending drafts are withdrawn and their open burst dropped."""

    #: Reads the consent state only; the unit emits the timer cancels.
    bus: Bus
    outbox: EventOutbox

    async def on_optout(self, event: ContactOptout, d: Delivery) -> None:
        # Replays and duplicates: a repeat finds nothing pending; a replayed STOP the lead
        # has since taken back (START, by the lead's SMS time) withdraws nothing.
        if not await consent_state.opted_out(self.bus, event.number):
            log.info("optout_superseded", number=event.number)
            return
        thread = thread_of(event.number)
        async with self.outbox.unit() as u:
            await withdraw(u, thread, OPTED_OUT, by="STOP")
            await drop_open_burst(u, thread, "opt_out:contact.optout")


__all__ = [
    "DROP_REASONS",
    "HUMAN_REPLY",
    "LEAD_WROTE",
    "OPTED_OUT",
    "PAUSED",
    "REVIEW",
    "OptOuts",
    "awaiting",
    "drop_open_burst",
    "give_up",
    "refusal",
    "withdraw",
]
