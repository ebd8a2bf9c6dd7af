"""Drafting one reply to some lead messages, superseding the thread's pending drafts.

Both paths end here: a message drafted at once (bursts off) and a burst whose
debounce timer fired (services/drafter/bursts.py). The reply answers every lead
message not answered yet: those of the thread's pending reply drafts (which the new
draft supersedes: their prompts were for a conversation that moved on) and the new
ones. Same consistency rule as every handler (docs/drafter.md): the draft's rows and its
events (draft.created, the owner prompts, the expiry timer) commit in one unit of work
(services/drafter/work.py) and are published after the commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import asyncpg
import structlog

from libs import metrics
from libs.consumer import Delivery, Retry
from libs.llm import LLMFailure
from services.drafter.deps import Deps
from services.drafter.lead_messages import BurstToken, LeadMessage
from services.drafter.new_drafts import Origin, Text, first_version
from services.drafter.prompt import (
    HistoryItem,
    build_messages,
    clean_reply,
    fit_draft,
    language_of,
    render_prompt,
    template_draft,
)
from services.drafter.review import llm_failed, to_review
from services.drafter.store import Draft, Q, burst_of, draft_of
from services.drafter.withdrawal import LEAD_WROTE, REVIEW, awaiting, give_up, withdraw
from services.drafter.work import Unit, cancel_expiry, record

log = structlog.get_logger("drafter")


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
class Reply:
    """One reply being drafted: the lead messages it answers and the thread as read before
    the model wrote (re-checked, locked, before the draft commits)."""

    thread: str
    number: str
    msgs: Sequence[LeadMessage]
    burst: BurstToken | None
    #: The thread's pending reply drafts, and its versions withdrawn for a newer message.
    pending: list[Draft]
    waiting: list[Draft]
    history: list[HistoryItem]

    @property
    def newest(self) -> LeadMessage:
        return self.msgs[-1]

    @property
    def replaced(self) -> list[Draft]:
        """Withdrawn for a newer message (waiting) or still pending (an older replica,
        events from before withdrawal): the new draft answers their messages too."""
        return sorted(self.pending + self.waiting, key=lambda p: (p.created_at, p.draft_id))

    @property
    def bodies(self) -> list[str]:
        earlier = [body for p in self.replaced for body in answered_by(p)]
        return earlier + [m.body for m in self.msgs]


@dataclass
class Replier:
    deps: Deps

    async def draft(
        self,
        thread: str,
        number: str,
        msgs: Sequence[LeadMessage],
        d: Delivery,
        *,
        burst: BurstToken | None = None,
    ) -> Retry | None:
        reply = await self._read(thread, number, msgs, burst)
        if reply is None:
            return None  # drafted already (its events went out with its commit)
        text = await self._write(reply, d)
        if text is None:
            return None  # the LLM failed: the messages went to a person
        return await self._commit(reply, text)

    async def _read(
        self, thread: str, number: str, msgs: Sequence[LeadMessage], burst: BurstToken | None
    ) -> Reply | None:
        """The thread before the model writes; None when the newest message has a draft."""
        dr = self.deps
        newest = msgs[-1]
        async with dr.pool.acquire() as conn:
            if await conn.fetchrow(Q.draft_for_inbound, newest.message_sid) is not None:
                # Redelivered after the commit: the draft's events are in its unit's
                # outbox rows, published (or swept) without us.
                return None
            if burst is None:
                # Drafted at once (bursts off): the pending draft is withdrawn before the
                # model writes, so a YES meanwhile sends nothing (bursts.collect does this
                # when the message is held).
                # Most threads have none: only then pay for the locking transaction.
                if await conn.fetchval(Q.has_pending_reply, thread):
                    async with dr.outbox.unit(conn) as u:
                        await withdraw(u, thread, LEAD_WROTE)
            return Reply(
                thread=thread,
                number=number,
                msgs=msgs,
                burst=burst,
                pending=drafts_of(await conn.fetch(Q.pending_replies_of_thread, thread)),
                waiting=await awaiting(conn, thread),
                history=await self._history(conn, thread, newest.message_sid),
            )

    async def _write(self, reply: Reply, d: Delivery) -> Text | None:
        """The template (no LLM configured) or the model's text; None when the LLM failed."""
        dr = self.deps
        language = language_of(reply.newest.language)
        intent = reply.newest.intent
        if not dr.llm.configured:
            body = fit_draft(
                template_draft(dr.profile, intent=intent, language=language),
                dr.settings.max_draft_chars,
            )
            return Text(body=body, source="template")
        messages = build_messages(
            dr.profile, language=language, intent=intent, lead_message=reply.bodies, history=reply.history
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
            await llm_failed(
                self.deps,
                reply.thread, reply.number, reply.msgs, failure, prompt_text, reply.burst
            )
            return None
        # Bounded so the owner's prompt shows all of it (the model is told the
        # profile's limit, but nothing guarantees it obeys).
        cleaned = clean_reply(completion.text) or completion.text
        body = fit_draft(cleaned, dr.settings.max_draft_chars)
        if body != cleaned:
            log.info(
                "draft_truncated", message_sid=reply.newest.message_sid, chars=len(cleaned), kept=len(body)
            )
        return Text(body=body, source="llm", traces=completion.attempts, prompt=prompt_text)

    async def _commit(self, reply: Reply, text: Text) -> Retry | None:
        """Write the draft if the thread is as it was read, and announce it in the same unit:
        its prompt is published after the commit, so it never names a rolled-back ref."""
        dr = self.deps
        draft_id = str(uuid.uuid4())
        async with dr.outbox.unit() as u:
            await u.conn.execute(Q.lock_thread, reply.thread)
            still = await self._recheck(u, reply)
            if still != "ok":
                return still if isinstance(still, Retry) else None
            draft = await self._insert(u, reply, text, draft_id)
            dr.owners.announce(u, draft)
        metrics.DRAFTS_CREATED.labels(text.source).inc()  # committed
        log.info(
            "draft_created", draft_id=draft_id, ref=draft.ref, source=text.source, messages=len(reply.bodies)
        )
        return None

    async def _recheck(self, u: Unit, reply: Reply) -> Retry | Literal["ok", "stop"]:
        """Under the thread lock: "ok" to write the draft, "stop" when nothing is to be
        drafted any more, Retry when the thread's pending drafts changed meanwhile."""
        conn = u.conn
        thread, burst = reply.thread, reply.burst
        seq = max(m.stream_seq for m in reply.msgs)
        if seq and int(await conn.fetchval(Q.newest_inbound_seq, thread)) > seq:
            # Another replica drafted a newer message of the thread meanwhile.
            detail = "arrived after a newer message of the thread was drafted"
            await to_review(conn, thread, reply.number, reply.msgs, detail)
            await give_up(u, thread, REVIEW)
            if burst is not None:
                await conn.execute(Q.close_burst, uuid.UUID(burst.burst_id), "closed", None, "stale")
            return "stop"
        if burst is not None:
            row = burst_of(await conn.fetchrow(Q.burst_by_id, uuid.UUID(burst.burst_id)))
            if row is None or row.status != "open" or row.fire_at != burst.fire_at:
                log.info("burst_changed_while_drafting", burst_id=burst.burst_id)
                return "stop"  # a newer message re-armed its timer (or it was dropped)
        locked = drafts_of(await conn.fetch(Q.pending_replies_of_thread, thread))
        locked_waiting = await awaiting(conn, thread)
        if _keys(locked) != _keys(reply.pending) or _keys(locked_waiting) != _keys(reply.waiting):
            # A pending draft was decided, edited or withdrawn while the model wrote:
            # draft again from what is pending now.
            return Retry(0.2, "the thread's pending drafts changed while drafting")
        return "ok"

    async def _insert(self, u: Unit, reply: Reply, text: Text, draft_id: str) -> Draft:
        """The draft row, its traces, the drafts it replaces and the burst it closes."""
        conn = u.conn
        newest, burst, bodies = reply.newest, reply.burst, reply.bodies
        replaces = tuple(p.ref for p in reply.replaced)
        origin = Origin(
            in_reply_to=newest.message_sid,
            inbound_body="\n".join(bodies),
            intent=newest.intent,
            language=language_of(newest.language),
            inbound_seq=max(m.stream_seq for m in reply.msgs),
            lead_messages=tuple(bodies),
            replaces_refs=replaces,
            burst_id=burst.burst_id if burst else None,
        )
        draft = await first_version(
            self.deps, u, text, origin, draft_id=draft_id, thread=reply.thread, to_number=reply.number
        )
        for old in reply.pending:
            await self._supersede(u, old, draft)
        for old in reply.waiting:
            await self._supersede(u, old, draft, withdrawn=True)
        if burst is not None:
            await conn.execute(Q.close_burst, uuid.UUID(burst.burst_id), "drafted", uuid.UUID(draft_id), "")
        await record(
            u,
            "draft_created",
            reply.thread,
            {
                "draft_id": draft_id,
                "ref": draft.ref,
                "version": 1,
                "source": text.source,
                "in_reply_to": newest.message_sid,
                "answers": [m.message_sid for m in reply.msgs],
                "replaces": list(replaces),
                "burst_id": burst.burst_id if burst else None,
            },
        )
        return draft

    async def _history(self, conn: asyncpg.Connection, thread: str, sid: str) -> list[HistoryItem]:
        rows = await conn.fetch(Q.thread_history, thread, sid, self.deps.settings.history_messages)
        items: list[HistoryItem] = []
        for row in reversed(rows):  # the query returns newest first
            if row["inbound_body"]:
                items.append(HistoryItem(author="lead", body=row["inbound_body"]))
            if row["approved_body"]:
                items.append(HistoryItem(author="business", body=row["approved_body"]))
        return items

    async def _supersede(self, u: Unit, old: Draft, new: Draft, *, withdrawn: bool = False) -> None:
        """The lead wrote again: the pending version can no longer be approved; a decision
        naming it is answered "replaced by #new" (decision.Decision). ``withdrawn``: it was
        withdrawn when the message arrived (services/drafter/withdrawal.py); only
        ``replaced_by`` is filled, its expiry timer was cancelled then."""
        query = Q.fill_replaced_by if withdrawn else Q.supersede_by
        await u.conn.execute(query, uuid.UUID(old.draft_id), old.version, uuid.UUID(new.draft_id))
        details = {
            "draft_id": old.draft_id,
            "version": old.version,
            "ref": old.ref,
            "replaced_by": new.draft_id,
            "new_ref": new.ref,
        }
        events = [] if withdrawn else [cancel_expiry(old, "superseded")]
        await record(u, "draft_superseded", old.thread, details, emit=events)
