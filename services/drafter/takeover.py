"""Human takeover, the drafter's side (docs/drafter.md, "Human takeover").

- ``send``: a person's free text to a lead, from any channel (an owner's
  ``SEND <ref> <text>`` SMS, the API, the dashboard: all arrive as ``draft.decided``
  with action ``send``). Checked (owner number / known ref / consent), audited (who,
  what, channel), the thread's manual-queue items resolved, and published as
  ``outbound.human``: the sender sends it through its outbox, the router puts the
  thread in HUMAN_TAKEOVER. The owner who sent it by SMS is told the delivery
  result (``outbound.sent`` / ``outbound.failed``, including a later undelivered
  status callback).
- ``forward``: a lead message of a thread in HUMAN_TAKEOVER goes to the owners as
  it is, one SMS each, with the thread's ref, and waits in the manual queue.
- The owner console: ``PAUSE`` / ``RESUME <ref>`` (as ``contact.paused``),
  ``LIST`` / ``?``, ``HELP``.

Every owner alert carries a ref: a draft's own, or the thread's (``thread_refs``,
from the same sequence, so one number names one thing).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from libs import consent_state, metrics
from libs.bus import Bus
from libs.event_outbox import EventOutbox
from libs.events import (
    ContactPaused,
    DraftDecided,
    HumanReply,
    InboundRouted,
    OutboundFailed,
    OutboundSent,
    thread_of,
    utcnow,
)
from services.drafter import owner_texts
from services.drafter.owner_channel import OwnerChannel
from services.drafter.settings import DrafterSettings
from services.drafter.store import Q, enqueue_manual, insert_approval, thread_ref
from services.drafter.withdrawal import HUMAN_REPLY, drop_open_burst, withdraw
from services.drafter.work import Unit, record

log = structlog.get_logger("drafter.takeover")

#: draft.decided actions handled here rather than as decisions on a draft.
CONSOLE_ACTIONS = frozenset({"send", "pause", "resume", "list", "help"})
#: Lines of a LIST answer.
LIST_MAX = 8

#: Answers the owner who sent a console command (SMS only), into the command's unit.
Reply = Callable[[str], None]


def human_request_id(decision_id: str) -> str:
    return f"human:{decision_id}"


@dataclass(frozen=True)
class ThreadCommand:
    """A console command (PAUSE, RESUME, SEND) and the lead's thread it names. Its events'
    ids derive from the command's, so a redelivered command emits the same events."""

    ev: DraftDecided
    thread: str
    number: str
    #: The thread's ref (thread_refs), quoted to the owner.
    ref: str

    def paused(self) -> ContactPaused:
        """PAUSE or RESUME: the thread's automation, by the reviewer."""
        ev = self.ev
        return ContactPaused(
            id=_derived(ev.id, "paused"),
            thread=self.thread,
            number=self.number,
            paused=ev.action == "pause",
            actor=ev.reviewer,
            reason=f"{ev.action} by {ev.source}",
        )

    def human_reply(self, body: str) -> HumanReply:
        """SEND: the reviewer's text to the lead, from the business number."""
        ev = self.ev
        return HumanReply(
            id=_derived(ev.id, "human"),
            thread=self.thread,
            request_id=human_request_id(ev.id),
            to_number=self.number,
            body=body,
            author=ev.reviewer,
            channel=ev.source,
            ref=self.ref,
        )


@dataclass
class Console:
    settings: DrafterSettings
    #: Reads the consent state only; events go through ``outbox`` units.
    bus: Bus
    outbox: EventOutbox
    owners: OwnerChannel

    # --- forward -------------------------------------------------------------

    async def forward(self, event: InboundRouted, num_media: int = 0) -> None:
        async with self.outbox.unit() as u:
            ref = await thread_ref(u.conn, event.thread, event.from_number)
            await enqueue_manual(
                u.conn,
                key=f"forwarded:{event.message_sid}",
                thread=event.thread,
                number=event.from_number,
                reason="forwarded",
                detail="HUMAN_TAKEOVER",
                message_sid=event.message_sid,
                body=event.body,
            )
            await record(
                u, "forwarded_to_owner", event.thread, {"message_sid": event.message_sid, "ref": ref}
            )
            text = owner_texts.forwarded(ref, event.from_number, event.body, num_media)
            self.owners.tell_all(u, text, f"forward:{event.message_sid}")

    # --- draft.decided (console actions) ----------------------------------------

    async def apply(self, u: Unit, ev: DraftDecided) -> str:
        """Apply one console command inside the caller's unit; returns the outcome."""
        conn = u.conn
        by_sms = ev.source == "sms"
        if by_sms and ev.reviewer not in self.settings.owner_numbers:
            # Non-owners get none of this, and no answer (as for YES/NO).
            return await self._record(u, ev, ev.thread, "refused", "reviewer is not an owner number")
        reply = self._replier(u, ev)
        if ev.action == "help":
            reply(owner_texts.HELP)
            return await self._record(u, ev, ev.thread, "accepted", "help")
        if ev.action == "list":
            rows = await conn.fetch(Q.waiting_threads, LIST_MAX)
            total = int(await conn.fetchval(Q.count_waiting))
            lines = [(r["what"], r["ref"], r["number"], r["body"]) for r in rows]
            reply(owner_texts.waiting_list(lines, total))
            return await self._record(u, ev, ev.thread, "accepted", "list")
        target = await self._target(u, ev)
        if target is None:
            reply(owner_texts.unknown_thread_ref(ev.ref or ""))
            return await self._record(u, ev, ev.thread, "refused", f"unknown ref {ev.ref}")
        thread, number = target
        ref = await thread_ref(conn, thread, number)
        cmd = ThreadCommand(ev=ev, thread=thread, number=number, ref=ref)
        if ev.action in ("pause", "resume"):
            event = cmd.paused()
            u.emit(event)
            reply(owner_texts.paused(ref, number) if event.paused else owner_texts.resumed(ref, number))
            return await self._record(u, ev, thread, "accepted", f"{ev.action} {number}")
        return await self._send(u, cmd, reply)

    async def _send(self, u: Unit, cmd: ThreadCommand, reply: Reply) -> str:
        ev, thread, number = cmd.ev, cmd.thread, cmd.number
        body = (ev.text or "").strip()
        if not body:
            reply(owner_texts.HELP)
            return await self._record(u, ev, thread, "refused", "empty text")
        if await consent_state.opted_out(self.bus, number):
            # The sender would refuse it too; say so now, clearly, on the channel used.
            reply(owner_texts.send_refused_opted_out(number))
            metrics.HUMAN_REPLIES.labels(ev.source, "refused").inc()
            return await self._record(u, ev, thread, "refused", "lead opted out")
        human = cmd.human_reply(body)
        oldest = await self._hand_over(u, human)
        u.emit(human)
        metrics.HUMAN_REPLIES.labels(ev.source, "accepted").inc()
        if oldest is not None:
            metrics.TIME_TO_FIRST_HUMAN_REPLY.observe(max((utcnow() - oldest).total_seconds(), 0.0))
        log.info("human_reply", thread=thread, channel=ev.source, ref=cmd.ref)
        return await self._record(u, ev, thread, "accepted", f"sent as {human.request_id}")

    async def _hand_over(self, u: Unit, human: HumanReply) -> datetime | None:
        """Record the human reply and take the thread from the AI; the oldest open manual item's time."""
        conn = u.conn
        thread = human.thread
        notify = human.author if human.channel == "sms" else ""
        await conn.execute(
            Q.insert_human_reply.sql,
            *Q.insert_human_reply.bind(
                {
                    "request_id": human.request_id,
                    "thread": thread,
                    "number": human.to_number,
                    "body": human.body,
                    "author": human.author,
                    "channel": human.channel,
                    "notify": notify,
                    "ref": human.ref,
                }
            ),
        )
        # The person answered instead of the AI: its pending draft is withdrawn and
        # a burst held before the takeover began is never drafted.
        withdrawn = await withdraw(u, thread, HUMAN_REPLY, by=human.author)
        await drop_open_burst(u, thread, "human_reply")
        oldest = await conn.fetchval(Q.oldest_open_manual, thread)
        resolved = await conn.execute(Q.resolve_manual_for_thread, thread, human.author)
        await record(
            u,
            "human_reply",
            thread,
            {
                "author": human.author,
                "channel": human.channel,
                "body": human.body,
                "request_id": human.request_id,
                "ref": human.ref,
                "manual_items_resolved": int(resolved.split()[-1]),
                "drafts_withdrawn": [d.ref for d in withdrawn],
            },
            actor="HUMAN",
        )
        return oldest

    async def _target(self, u: Unit, ev: DraftDecided) -> tuple[str, str] | None:
        if ev.ref:
            row = await u.conn.fetchrow(Q.thread_by_ref, ev.ref.lstrip("#"))
            return (row["thread"], row["number"]) if row else None
        if ev.source != "sms" and ev.number:
            return thread_of(ev.number), ev.number
        return None

    def _replier(self, u: Unit, ev: DraftDecided) -> Reply:
        def reply(text: str) -> None:
            if ev.source == "sms":
                self.owners.tell(u, ev.reviewer, text, f"reply:{ev.id}", kind="owner_prompt")

        return reply

    async def _record(self, u: Unit, ev: DraftDecided, thread: str, outcome: str, notes: str) -> str:
        await insert_approval(u.conn, ev, None, outcome=outcome, notes=notes)
        details = {
            "decision_id": ev.id,
            "reviewer": ev.reviewer,
            "source": ev.source,
            "ref": ev.ref,
            "notes": notes,
        }
        await record(u, f"console_{ev.action}_{outcome}", thread, details, actor="HUMAN")
        return outcome

    # --- outbound.sent / outbound.failed of a human reply -------------------------

    async def on_outcome(self, event: OutboundSent | OutboundFailed) -> None:
        if event.kind != "human_reply" or not event.request_id:
            return
        sent = isinstance(event, OutboundSent)
        if isinstance(event, OutboundSent):
            status, error = "sent", ""
        else:
            status = "refused" if event.reason == "opted_out" else "failed"
            error = _why(event)
        async with self.outbox.unit() as u:
            row = await u.conn.fetchrow(Q.human_reply_outcome, event.request_id, status, error)
            if row is None or not row["notify"]:
                return  # already told (a redelivery), or not asked by SMS
            text = owner_texts.send_result(row["ref"], row["number"], row["body"], sent=sent, why=error)
            self.owners.tell(u, row["notify"], text, f"human-result:{event.request_id}:{status}")


def _why(event: OutboundFailed) -> str:
    if event.reason == "opted_out":
        return "they opted out (STOP)"
    if event.reason == "undelivered":
        return f"the carrier did not deliver it (error {event.error_code})"
    if event.reason == "retries_exhausted":
        return "Twilio kept failing"
    return f"Twilio error {event.error_code}: {event.error_message}".strip()


def _derived(*parts: Any) -> str:
    return str(uuid.uuid5(uuid.UUID("0b7f4c52-3c1e-4d0a-9f55-7a1d2e6c9b31"), ":".join(map(str, parts))))
