"""Drafting one reply to some lead messages, superseding the thread's pending drafts.

Both paths end here: a message drafted at once (bursts off) and a burst whose
debounce timer fired (services/drafter/bursts.py). The reply answers every lead
message not answered yet: those of the thread's pending reply drafts (which the new
draft supersedes: their prompts were for a conversation that moved on) and the new
ones. Same consistency rule as handlers.py: rows and events in one transaction,
events first, commit last, deterministic event ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec
import structlog

from libs import metrics
from libs.consumer import Delivery, Retry
from libs.db import audit
from libs.events import InboundRouted, TimerCancel, utcnow
from libs.llm import LLMFailure
from services.drafter import owner_texts
from services.drafter.prompt import (
    HistoryItem,
    build_messages,
    clean_reply,
    fit_draft,
    language_of,
    render_prompt,
    template_draft,
)
from services.drafter.store import Draft, Q, draft_of, enqueue_manual, insert_draft, insert_traces
from services.drafter.takeover import thread_ref
from services.drafter.withdrawal import LEAD_WROTE, REVIEW, awaiting, give_up, withdraw

if TYPE_CHECKING:
    from services.drafter.handlers import Drafter

SERVICE = "drafter"
log = structlog.get_logger("drafter")


class LeadMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One routed lead message waiting for (or answered by) a draft."""

    sid: str
    body: str
    seq: int = 0
    intent: str | None = None
    language: str | None = None


def message_of(event: InboundRouted) -> LeadMessage:
    return LeadMessage(
        sid=event.message_sid,
        body=event.body,
        seq=event.stream_seq,
        intent=event.intent,
        language=event.language,
    )


def drafts_of(records: Sequence[asyncpg.Record]) -> list[Draft]:
    return [draft for r in records if (draft := draft_of(r)) is not None]


def _keys(drafts: Sequence[Draft]) -> list[tuple[str, int]]:
    return [(d.draft_id, d.version) for d in drafts]


def answered_by(draft: Draft) -> list[str]:
    """The lead messages a draft answers (drafts from before bursts: their one inbound)."""
    if draft.lead_messages:
        return list(draft.lead_messages)
    return [draft.inbound_body] if draft.inbound_body else []


@dataclass(frozen=True)
class BurstToken:
    """The burst being drafted, as read when its timer fired: drafting commits only if
    no message joined it since (a newer message re-armed the timer and drafts then)."""

    burst_id: str
    fire_at: datetime


@dataclass
class Replier:
    drafter: Drafter

    async def draft(
        self,
        thread: str,
        number: str,
        msgs: Sequence[LeadMessage],
        d: Delivery,
        *,
        burst: BurstToken | None = None,
    ) -> Retry | None:
        dr = self.drafter
        newest = msgs[-1]
        async with dr.pool.acquire() as conn:
            existing = draft_of(await conn.fetchrow(Q.draft_for_inbound, newest.sid))
            if existing is not None:
                # Redelivered after the commit: publishing again is deduplicated and
                # covers a lost ack.
                await dr._announce(existing)
                return None
            if burst is None:
                # Drafted at once (bursts off): the pending draft is withdrawn before the
                # model writes, so a YES meanwhile sends nothing (bursts.collect does this
                # when the message is held).
                async with conn.transaction():
                    await withdraw(conn, dr.bus, thread, LEAD_WROTE)
            pending = drafts_of(await conn.fetch(Q.pending_replies_of_thread, thread))
            waiting = await awaiting(conn, thread)
            history = await self._history(conn, thread, newest.sid)
        # Withdrawn for a newer message (waiting) or still pending (an older replica,
        # events from before withdrawal): the new draft answers their messages too.
        replaced = sorted(pending + waiting, key=lambda p: (p.created_at, p.draft_id))
        earlier = [body for p in replaced for body in answered_by(p)]
        bodies = earlier + [m.body for m in msgs]
        language = language_of(newest.language)
        intent = newest.intent
        traces: tuple[Any, ...] = ()
        prompt_text: str | None = None
        if not dr.llm.configured:
            body = fit_draft(
                template_draft(dr.profile, intent=intent, language=language),
                dr.settings.max_draft_chars,
            )
            source = "template"
        else:
            messages = build_messages(
                dr.profile, language=language, intent=intent, lead_message=bodies, history=history
            )
            prompt_text = render_prompt(messages) if dr.settings.record_prompts else None
            await d.in_progress()  # the call may outlast ack_wait; the consumer keeps beating too
            try:
                completion = await dr.llm.complete(
                    messages,
                    max_tokens=dr.settings.drafter_llm.max_tokens,
                    temperature=dr.settings.drafter_llm.temperature,
                )
            except LLMFailure as failure:  # the client counted every attempt (libs/llm.py)
                await self._llm_failed(thread, number, msgs, failure, prompt_text, burst)
                return None
            # Bounded so the owner's prompt shows all of it (the model is told the
            # profile's limit, but nothing guarantees it obeys).
            cleaned = clean_reply(completion.text) or completion.text
            body = fit_draft(cleaned, dr.settings.max_draft_chars)
            if body != cleaned:
                log.info("draft_truncated", message_sid=newest.sid, chars=len(cleaned), kept=len(body))
            traces = completion.attempts
            source = "llm"

        draft_id = str(uuid.uuid4())
        seq = max(m.seq for m in msgs)
        async with dr.pool.acquire() as conn, conn.transaction():
            await conn.execute(Q.lock_thread, thread)
            if seq and int(await conn.fetchval(Q.newest_inbound_seq, thread)) > seq:
                # Another replica drafted a newer message of the thread meanwhile.
                await self.to_review(
                    conn, thread, number, msgs, "arrived after a newer message of the thread was drafted"
                )
                await give_up(conn, thread, REVIEW)
                if burst is not None:
                    await conn.execute(Q.close_burst, uuid.UUID(burst.burst_id), "closed", None, "stale")
                return None
            if burst is not None:
                row = await conn.fetchrow(Q.burst_by_id, uuid.UUID(burst.burst_id))
                if row is None or row["status"] != "open" or row["fire_at"] != burst.fire_at:
                    log.info("burst_changed_while_drafting", burst_id=burst.burst_id)
                    return None  # a newer message re-armed its timer (or it was dropped)
            locked = drafts_of(await conn.fetch(Q.pending_replies_of_thread, thread))
            locked_waiting = await awaiting(conn, thread)
            if _keys(locked) != _keys(pending) or _keys(locked_waiting) != _keys(waiting):
                # A pending draft was decided, edited or withdrawn while the model wrote:
                # draft again from what is pending now.
                return Retry(0.2, "the thread's pending drafts changed while drafting")
            ref = await conn.fetchval(Q.next_ref)
            replaces = tuple(p.ref for p in replaced)
            draft = await insert_draft(
                conn,
                draft_id=draft_id,
                version=1,
                ref=ref,
                thread=thread,
                to_number=number,
                body=body,
                source=source,
                in_reply_to=newest.sid,
                inbound_body="\n".join(bodies),
                intent=intent,
                language=language,
                created_by="SYSTEM",
                expires_at=utcnow() + timedelta(seconds=dr.settings.draft_expiry_s),
                inbound_seq=seq,
                sms_prompted=dr.promptable(ref, number, body, bodies, replaces),
                lead_messages=tuple(bodies),
                replaces_refs=replaces,
                burst_id=burst.burst_id if burst else None,
            )
            await insert_traces(
                conn, traces, draft_id=draft_id, thread=thread, in_reply_to=newest.sid, prompt=prompt_text
            )
            for old in pending:
                await self._supersede(conn, old, draft)
            for old in waiting:
                await self._supersede(conn, old, draft, withdrawn=True)
            if burst is not None:
                await conn.execute(
                    Q.close_burst, uuid.UUID(burst.burst_id), "drafted", uuid.UUID(draft_id), ""
                )
            await audit(
                conn,
                service=SERVICE,
                action="draft_created",
                thread=thread,
                details={
                    "draft_id": draft_id,
                    "ref": ref,
                    "version": 1,
                    "source": source,
                    "in_reply_to": newest.sid,
                    "answers": [m.sid for m in msgs],
                    "replaces": list(replaces),
                    "burst_id": burst.burst_id if burst else None,
                },
            )
        # Announced after the commit, so no prompt ever names a ref that a crash rolled
        # back; a crash before this line redelivers the event, and the redelivery finds
        # the committed draft and announces it (deduplicated by msg-id).
        await dr._announce(draft)
        metrics.DRAFTS_CREATED.labels(source).inc()  # committed
        log.info("draft_created", draft_id=draft_id, ref=ref, source=source, messages=len(bodies))
        return None

    async def _history(self, conn: asyncpg.Connection, thread: str, sid: str) -> list[HistoryItem]:
        rows = await conn.fetch(Q.thread_history, thread, sid, self.drafter.settings.history_messages)
        items: list[HistoryItem] = []
        for row in reversed(rows):  # the query returns newest first
            if row["inbound_body"]:
                items.append(HistoryItem(author="lead", body=row["inbound_body"]))
            if row["approved_body"]:
                items.append(HistoryItem(author="business", body=row["approved_body"]))
        return items

    async def _supersede(
        self, conn: asyncpg.Connection, old: Draft, new: Draft, *, withdrawn: bool = False
    ) -> None:
        """The lead wrote again: the pending version can no longer be approved; a decision
        naming it is answered "replaced by #new" (handlers.Decision). ``withdrawn``: it was
        withdrawn when the message arrived (services/drafter/withdrawal.py); only
        ``replaced_by`` is filled, its expiry timer was cancelled then."""
        from services.drafter.handlers import derived_id, expiry_timer_id

        query = Q.fill_replaced_by if withdrawn else Q.supersede_by
        await conn.execute(query, uuid.UUID(old.draft_id), old.version, uuid.UUID(new.draft_id))
        await audit(
            conn,
            service=SERVICE,
            action="draft_superseded",
            thread=old.thread,
            details={
                "draft_id": old.draft_id,
                "version": old.version,
                "ref": old.ref,
                "replaced_by": new.draft_id,
                "new_ref": new.ref,
            },
        )
        if withdrawn:
            return
        await self.drafter.bus.publish(
            TimerCancel(
                thread=old.thread,
                id=derived_id("superseded", old.draft_id, old.version),
                timer_id=expiry_timer_id(old.draft_id),
            )
        )

    async def to_review(
        self, conn: asyncpg.Connection, thread: str, number: str, msgs: Sequence[LeadMessage], detail: str
    ) -> None:
        """Messages no draft will answer go to the manual-intervention queue."""
        for m in msgs:
            await enqueue_manual(
                conn,
                key=f"needs_review:{m.sid}",
                thread=thread,
                number=number,
                reason="needs_review",
                detail=detail,
                message_sid=m.sid,
                body=m.body,
            )
        await audit(
            conn,
            service=SERVICE,
            action="needs_review",
            thread=thread,
            details={"reason": detail, "message_sids": [m.sid for m in msgs]},
        )

    async def _llm_failed(
        self,
        thread: str,
        number: str,
        msgs: Sequence[LeadMessage],
        failure: LLMFailure,
        prompt_text: str | None,
        burst: BurstToken | None,
    ) -> None:
        dr = self.drafter
        newest = msgs[-1]
        log.warning("llm_failed", error=str(failure))
        async with dr.pool.acquire() as conn, conn.transaction():
            await insert_traces(
                conn,
                failure.attempts,
                draft_id=None,
                thread=thread,
                in_reply_to=newest.sid,
                prompt=prompt_text,
            )
            for m in msgs:
                await enqueue_manual(
                    conn,
                    key=f"llm_failed:{m.sid}",
                    thread=thread,
                    number=number,
                    reason="llm_failed",
                    detail=str(failure),
                    message_sid=m.sid,
                    body=m.body,
                )
            if burst is not None:
                await conn.execute(Q.close_burst, uuid.UUID(burst.burst_id), "closed", None, "llm_failed")
            await give_up(conn, thread, REVIEW)  # drafts withdrawn for these messages: no replacement
            await audit(
                conn,
                service=SERVICE,
                action="needs_review",
                thread=thread,
                details={
                    "reason": "llm_failed",
                    "message_sid": newest.sid,
                    "message_sids": [m.sid for m in msgs],
                    "error": str(failure),
                },
            )
            await dr._tell_owners(
                owner_texts.llm_failed(
                    number, " / ".join(m.body for m in msgs), await thread_ref(conn, thread, number)
                ),
                f"llm_failed:{newest.sid}",
            )
