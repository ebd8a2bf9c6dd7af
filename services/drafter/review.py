"""Inbound messages a person reads instead of a draft: the manual-intervention queue.

A message routed ``needs_review``, one that arrived after a newer message of its thread
was drafted (stale), messages whose draft the LLM failed to write, and a thread a person
resumed (its items are resolved).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog

from libs.db import audit
from libs.events import ContactPaused, InboundRouted, thread_of
from libs.llm import LLMFailure
from services.drafter import owner_texts
from services.drafter.deps import SERVICE, Deps
from services.drafter.lead_messages import BurstToken, LeadMessage
from services.drafter.store import Q, enqueue_manual, insert_traces, thread_ref
from services.drafter.withdrawal import REVIEW, give_up, withdraw

log = structlog.get_logger("drafter")


async def queue_for_review(
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


async def is_stale(conn: asyncpg.Connection, event: InboundRouted) -> bool:
    """A newer message of the thread was drafted already (replicas, replays).

    Drafting this one now would answer the conversation out of order; a person
    looks at it instead. stream_seq 0 (events from before the field) is unknown.
    """
    if not event.stream_seq:
        return False
    newest = await conn.fetchval(Q.newest_inbound_seq, event.thread)
    return bool(newest > event.stream_seq)


async def skip_stale(conn: asyncpg.Connection, event: InboundRouted) -> None:
    log.warning("stale_inbound", message_sid=event.message_sid, seq=event.stream_seq)
    await queue_for_review(
        conn,
        event,
        detail="arrived after a newer message of the thread was drafted",
        action="stale_inbound_skipped",
        details={"message_sid": event.message_sid, "stream_seq": event.stream_seq},
    )


async def needs_review(deps: Deps, event: InboundRouted) -> None:
    """A message the router sent to a person: queued, the thread's pending draft withdrawn,
    and (alert_on_needs_review) the owners told."""
    async with deps.outbox.unit() as u:
        await queue_for_review(
            u.conn,
            event,
            detail=event.rule,
            action="needs_review",
            details={"rule": event.rule, "message_sid": event.message_sid},
        )
        # The owner must read this message: a pending draft answers what came before.
        await withdraw(u, event.thread, REVIEW)
        if deps.settings.alert_on_needs_review:
            ref = await thread_ref(u.conn, event.thread, event.from_number)
            deps.owners.tell_all(
                u,
                owner_texts.needs_review(event.from_number, event.body, event.rule, ref),
                f"needs_review:{event.message_sid}",
            )


async def resolve_for_thread(pool: asyncpg.Pool, event: ContactPaused) -> None:
    """A resumed thread leaves the manual-intervention queue: someone handled it."""
    thread = thread_of(event.number)
    async with pool.acquire() as conn, conn.transaction():
        result = await conn.execute(Q.resolve_manual_for_thread, thread, event.actor or "resume")
        if result != "UPDATE 0":
            await audit(
                conn,
                service=SERVICE,
                action="manual_queue_resolved",
                thread=thread,
                actor="HUMAN" if event.actor else "SYSTEM",
                details={"by": event.actor, "rows": int(result.split()[-1])},
            )


async def to_review(
    conn: asyncpg.Connection, thread: str, number: str, msgs: Sequence[LeadMessage], detail: str
) -> None:
    """Messages no draft will answer go to the manual-intervention queue."""
    for m in msgs:
        await enqueue_manual(
            conn,
            key=f"needs_review:{m.message_sid}",
            thread=thread,
            number=number,
            reason="needs_review",
            detail=detail,
            message_sid=m.message_sid,
            body=m.body,
        )
    await audit(
        conn,
        service=SERVICE,
        action="needs_review",
        thread=thread,
        details={"reason": detail, "message_sids": [m.message_sid for m in msgs]},
    )


async def llm_failed(
    deps: Deps,
    thread: str,
    number: str,
    msgs: Sequence[LeadMessage],
    failure: LLMFailure,
    prompt_text: str | None,
    burst: BurstToken | None,
) -> None:
    """The model (primary and fallback) failed: the messages go to a person, the owners hear why."""
    newest = msgs[-1]
    log.warning("llm_failed", error=str(failure))
    async with deps.outbox.unit() as u:
        conn = u.conn
        await insert_traces(
            conn,
            failure.attempts,
            draft_id=None,
            thread=thread,
            in_reply_to=newest.message_sid,
            prompt=prompt_text,
        )
        for m in msgs:
            await enqueue_manual(
                conn,
                key=f"llm_failed:{m.message_sid}",
                thread=thread,
                number=number,
                reason="llm_failed",
                detail=str(failure),
                message_sid=m.message_sid,
                body=m.body,
            )
        if burst is not None:
            await conn.execute(Q.close_burst, uuid.UUID(burst.burst_id), "closed", None, "llm_failed")
        await give_up(u, thread, REVIEW)  # drafts withdrawn for these messages: no replacement
        await audit(
            conn,
            service=SERVICE,
            action="needs_review",
            thread=thread,
            details={
                "reason": "llm_failed",
                "message_sid": newest.message_sid,
                "message_sids": [m.message_sid for m in msgs],
                "error": str(failure),
            },
        )
        deps.owners.tell_all(
            u,
            owner_texts.llm_failed(
                number, " / ".join(m.body for m in msgs), await thread_ref(conn, thread, number)
            ),
            f"llm_failed:{newest.message_sid}",
        )
