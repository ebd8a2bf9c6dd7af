"""The drafter's rows as typed values, and the named queries that read and write them."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import msgspec

from libs.db import load_queries
from libs.events import DraftDecided, Event
from libs.llm import Attempt

Q = load_queries(Path(__file__).parent / "queries.sql")

PENDING = "DRAFT_PENDING_APPROVAL"
APPROVED = "APPROVED_TO_SEND"
REJECTED = "REJECTED"
SUPERSEDED = "SUPERSEDED"

E = TypeVar("E", bound=Event)


class Draft(msgspec.Struct, frozen=True, kw_only=True):
    """One version of a draft."""

    draft_id: str
    version: int
    ref: str
    thread: str
    to_number: str
    body: str
    source: str
    status: str
    in_reply_to: str
    inbound_body: str
    inbound_seq: int
    intent: str | None
    language: str | None
    created_by: str
    created_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    expires_at: datetime | None = None
    expiry_alerted_at: datetime | None = None
    #: Set on every version of a workflow draft (draft.requested), None otherwise.
    request_id: str | None = None
    workflow_enrollment_id: str | None = None
    workflow_step_id: str | None = None
    #: False when the text was too long to show whole in one owner prompt SMS: such a
    #: version is decided on the dashboard/API only, never approved by SMS.
    sms_prompted: bool = True
    #: Every lead message this draft answers, oldest first (a burst and the messages of
    #: the drafts it superseded); empty for drafts from before bursts and workflow drafts.
    lead_messages: tuple[str, ...] = ()
    #: Refs of the pending drafts this one replaced because the lead wrote again.
    replaces_refs: tuple[str, ...] = ()
    #: Set on a version superseded because the lead wrote again: the replacing draft.
    replaced_by: str | None = None
    burst_id: str | None = None
    #: Why a version was withdrawn before a decision (services/drafter/withdrawal.py).
    withdrawn_reason: str | None = None

    @property
    def pending(self) -> bool:
        return self.status == PENDING

    @property
    def from_workflow(self) -> bool:
        return self.workflow_enrollment_id is not None

    def event(self, cls: type[E], **extra: Any) -> E:
        """An event about this version: every field the event class shares with Draft by
        name (thread, draft_id, version, to_number, body, ...) is copied, ``extra`` gives
        the rest (the reviewer, a reason) and overrides a copied field."""
        copied = {name: getattr(self, name) for name in _shared_fields(cls) if name not in extra}
        return cls(**copied, **extra)

    def summary(self) -> dict[str, Any]:
        """The JSON shape the request/reply API answers with (docs/drafter.md)."""
        return {name: _plain(getattr(self, name)) for name in SUMMARY_FIELDS}


#: The fields of a draft the request/reply API answers with, in order (docs/drafter.md).
SUMMARY_FIELDS = (
    "draft_id", "ref", "version", "thread", "to_number", "body", "status", "source", "intent",
    "language", "in_reply_to", "inbound_body", "created_at", "expires_at", "workflow_enrollment_id",
    "sms_prompted", "lead_messages", "replaces_refs",
)  # fmt: skip


def _plain(value: Any) -> Any:
    """A field as the API has always written it: datetimes by ``isoformat``, tuples as lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    return list(value) if isinstance(value, tuple) else value


@functools.cache
def _shared_fields(cls: type[Event]) -> tuple[str, ...]:
    return tuple(name for name in cls.__struct_fields__ if name in Draft.__struct_fields__)


class Burst(msgspec.Struct, frozen=True, kw_only=True):
    """A thread's lead messages held for one draft (services/drafter/bursts.py)."""

    burst_id: uuid.UUID
    thread: str
    number: str
    #: open | review | drafted | dropped | closed
    status: str
    first_at: datetime
    last_at: datetime
    fire_at: datetime
    draft_id: uuid.UUID | None
    reason: str
    created_at: datetime
    closed_at: datetime | None


class BurstMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One lead message held in a burst."""

    id: int
    message_sid: str
    burst_id: uuid.UUID
    body: str
    seq: int
    intent: str | None
    language: str | None
    #: The router's decision: draft | needs_review.
    decision: str
    rule: str
    created_at: datetime


def burst_of(record: asyncpg.Record | None) -> Burst | None:
    return None if record is None else Burst(**dict(record))


def burst_messages_of(records: list[asyncpg.Record]) -> list[BurstMessage]:
    return [BurstMessage(**dict(r)) for r in records]


def draft_of(record: asyncpg.Record | None) -> Draft | None:
    if record is None:
        return None
    row = dict(record)
    row.pop("id", None)
    row["draft_id"] = str(row["draft_id"])
    for key in ("replaced_by", "burst_id"):
        if row.get(key) is not None:
            row[key] = str(row[key])
    return msgspec.convert(row, Draft)


async def insert_draft(
    conn: asyncpg.Connection,
    *,
    draft_id: str,
    version: int,
    ref: str,
    thread: str,
    to_number: str,
    body: str,
    source: str,
    in_reply_to: str,
    inbound_body: str,
    intent: str | None,
    language: str | None,
    created_by: str,
    expires_at: datetime,
    inbound_seq: int = 0,
    request_id: str | None = None,
    workflow_enrollment_id: str | None = None,
    workflow_step_id: str | None = None,
    sms_prompted: bool = True,
    lead_messages: tuple[str, ...] = (),
    replaces_refs: tuple[str, ...] = (),
    burst_id: str | None = None,
) -> Draft:
    values = {
        "draft_id": uuid.UUID(draft_id),
        "version": version,
        "ref": ref,
        "thread": thread,
        "to_number": to_number,
        "body": body,
        "source": source,
        "in_reply_to": in_reply_to,
        "inbound_body": inbound_body,
        "intent": intent,
        "language": language,
        "created_by": created_by,
        "expires_at": expires_at,
        "inbound_seq": inbound_seq,
        "request_id": request_id,
        "workflow_enrollment_id": workflow_enrollment_id,
        "workflow_step_id": workflow_step_id,
        "sms_prompted": sms_prompted,
        "lead_messages": list(lead_messages),
        "replaces_refs": list(replaces_refs),
        "burst_id": uuid.UUID(burst_id) if burst_id else None,
    }
    record = await conn.fetchrow(Q.insert_draft.sql, *Q.insert_draft.bind(values))
    draft = draft_of(record)
    assert draft is not None
    return draft


async def insert_traces(
    conn: asyncpg.Connection,
    attempts: tuple[Attempt, ...],
    *,
    draft_id: str | None,
    thread: str,
    in_reply_to: str,
    prompt: str | None,
) -> None:
    for attempt in attempts:
        usage = attempt.usage
        values = {
            "draft_id": uuid.UUID(draft_id) if draft_id else None,
            "thread": thread,
            "in_reply_to": in_reply_to,
            "provider": attempt.provider,
            "model": attempt.model,
            "ok": attempt.ok,
            "error": attempt.error,
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
            "total_tokens": usage.total_tokens if usage else 0,
            "cost_usd": attempt.cost_usd,
            "latency_ms": attempt.latency_ms,
            "prompt": prompt,
        }
        await conn.execute(Q.insert_trace.sql, *Q.insert_trace.bind(values))


async def enqueue_manual(
    conn: asyncpg.Connection,
    *,
    key: str,
    thread: str,
    number: str,
    reason: str,
    detail: str = "",
    message_sid: str = "",
    draft_id: str | None = None,
    body: str = "",
) -> None:
    values = {
        "key": key,
        "thread": thread,
        "number": number,
        "reason": reason,
        "detail": detail,
        "message_sid": message_sid,
        "draft_id": uuid.UUID(draft_id) if draft_id else None,
        "body": body,
    }
    await conn.execute(Q.enqueue_manual.sql, *Q.enqueue_manual.bind(values))


async def enqueue_answered(
    conn: asyncpg.Connection, draft: Draft, *, key: str, reason: str, detail: str
) -> None:
    """The lead's message a version answered goes to a person (no draft of it will be sent)."""
    await enqueue_manual(
        conn,
        key=key,
        thread=draft.thread,
        number=draft.to_number,
        reason=reason,
        detail=detail,
        message_sid=draft.in_reply_to,
        draft_id=draft.draft_id,
        body=draft.inbound_body,
    )


async def insert_approval(
    conn: asyncpg.Connection, ev: DraftDecided, draft: Draft | None, *, outcome: str, notes: str
) -> None:
    """One row per draft.decided event, whatever its outcome (a repeat inserts nothing);
    ``draft`` is the version it applied to, None when it named none (console actions,
    unknown refs)."""
    values = {
        "decision_event_id": ev.id,
        "draft_id": uuid.UUID(draft.draft_id) if draft else None,
        "version": draft.version if draft else None,
        "ref": draft.ref if draft else ev.ref,
        "reviewer": ev.reviewer,
        "source": ev.source,
        "action": ev.action,
        "outcome": outcome,
        "notes": notes,
    }
    await conn.execute(Q.insert_approval.sql, *Q.insert_approval.bind(values))


async def thread_ref(conn: asyncpg.Connection, thread: str, number: str) -> str:
    """The thread's ref, made on first use."""
    ref = await conn.fetchval(Q.thread_ref, thread)
    if ref is None:
        ref = await conn.fetchval(Q.insert_thread_ref, thread, number)
        if ref is None:  # a concurrent insert won
            ref = await conn.fetchval(Q.thread_ref, thread)
    return str(ref)


def manual_item(record: asyncpg.Record) -> dict[str, Any]:
    row = dict(record)
    return {
        "id": row["id"],
        "thread": row["thread"],
        "number": row["number"],
        "reason": row["reason"],
        "detail": row["detail"],
        "message_sid": row["message_sid"],
        "draft_id": str(row["draft_id"]) if row["draft_id"] else None,
        "body": row["body"],
        "created_at": row["created_at"].isoformat(),
    }
