"""What the dashboard shows, read from the audit log and (read-only) the other slices.

Ingest never writes another service's tables; here it only reads them for people.
A slice that is missing (service not deployed yet) or not granted to ingest's role
makes its section "unavailable", never the page fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from libs.db import load_queries

log = structlog.get_logger("ingest.dashboard")

Q = load_queries(Path(__file__).parent / "queries.sql")

#: The errors that mean "this slice is not here for us", as opposed to a broken database.
_ABSENT = (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError, asyncpg.InsufficientPrivilegeError)

#: Lifecycle statuses of a lead's draft that say where the conversation stands.
_DRAFT_STATUSES = {"DRAFT_PENDING_APPROVAL", "APPROVED_TO_SEND", "REJECTED"}
_SEND_STATUSES = {"SENT": "SENT", "FAILED_SEND": "FAILED_SEND", "REFUSED": "FAILED_SEND"}


@dataclass
class Section:
    """Rows of one dashboard section, or why they are not available."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    unavailable: str | None = None


async def fetch(pool: asyncpg.Pool, query: str, *args: Any, what: str) -> Section:
    try:
        records = await pool.fetch(query, *args)
    except _ABSENT as exc:
        log.info("dashboard_section_unavailable", section=what, error=type(exc).__name__)
        return Section(unavailable=f"{what}: not available ({_reason(exc)})")
    return Section(rows=[dict(r) for r in records])


def _reason(exc: Exception) -> str:
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return "ingest's database role may not read it"
    return "that service's tables are not in this database yet"


@dataclass
class ThreadRow:
    thread: str
    last_at: datetime
    entries: int
    status: str = "RECEIVED"
    detail: str = ""
    paused: bool = False
    opted_out: bool = False


async def recent_threads(pool: asyncpg.Pool, limit: int = 100) -> tuple[list[ThreadRow], list[str]]:
    """Threads by last activity, each with its latest lifecycle status where known."""
    base = await fetch(pool, Q.recent_threads, limit, what="audit log")
    notes = [base.unavailable] if base.unavailable else []
    threads = [ThreadRow(**r) for r in base.rows]
    if not threads:
        return threads, notes
    names = [t.thread for t in threads]
    numbers = ["+" + n for n in names]
    # (thread -> [(at, status, detail)]) from each slice that is present.
    seen: dict[str, list[tuple[datetime, str, str]]] = {}
    routing = await fetch(pool, Q.latest_routing, names, what="routing decisions")
    for r in routing.rows:
        seen.setdefault(r["thread"], []).append((r["at"], r["status"], f"rule {r['rule']}"))
    drafts = await fetch(pool, Q.latest_drafts, names, what="drafts")
    for r in drafts.rows:
        if r["status"] in _DRAFT_STATUSES:
            seen.setdefault(r["thread"], []).append((r["at"], r["status"], f"draft #{r['ref']}"))
    outbound = await fetch(pool, Q.latest_outbound, numbers, what="outbound messages")
    for r in outbound.rows:
        if r["status"] in _SEND_STATUSES:
            seen.setdefault(r["thread"], []).append((r["at"], _SEND_STATUSES[r["status"]], "reply"))
    controls = await fetch(pool, Q.controls_for, names, what="thread controls")
    by_thread = {r["thread"]: r for r in controls.rows}
    notes += [s.unavailable for s in (routing, drafts, outbound, controls) if s.unavailable]
    for t in threads:
        if seen.get(t.thread):
            _, t.status, t.detail = max(seen[t.thread], key=lambda item: item[0])
        control = by_thread.get(t.thread)
        if control:
            t.paused, t.opted_out = bool(control["paused"]), bool(control["opted_out"])
            if t.paused:
                t.status = "PAUSED_THREAD"
    return threads, notes


@dataclass
class ThreadDetail:
    thread: str
    audit: Section
    inbound: Section
    routing: Section
    drafts: Section
    outbound: Section
    control: dict[str, Any] | None
    control_note: str | None


async def thread_detail(pool: asyncpg.Pool, thread: str, inbound_query: str) -> ThreadDetail:
    controls = await fetch(pool, Q.controls_for, [thread], what="thread controls")
    inbound = await fetch(pool, inbound_query, thread, 200, what="inbound messages")
    inbound.rows.reverse()  # the query answers newest first
    return ThreadDetail(
        thread=thread,
        audit=await fetch(pool, Q.audit_for_thread, thread, what="audit log"),
        inbound=inbound,
        routing=await fetch(pool, Q.routing_for_thread, thread, what="routing decisions"),
        drafts=await fetch(pool, Q.drafts_for_thread, thread, what="drafts"),
        outbound=await fetch(pool, Q.outbound_for_thread, thread, what="outbound messages"),
        control=controls.rows[0] if controls.rows else None,
        control_note=controls.unavailable,
    )


async def paused_threads(pool: asyncpg.Pool, limit: int = 200) -> Section:
    return await fetch(pool, Q.paused_threads, limit, what="paused threads")


async def pending_drafts_from_db(pool: asyncpg.Pool, limit: int = 100) -> Section:
    return await fetch(pool, Q.pending_drafts, limit, what="pending drafts")
