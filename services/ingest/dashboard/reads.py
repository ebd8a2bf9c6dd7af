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
    takeover: bool = False


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
            t.takeover = control.get("takeover_since") is not None
            if t.paused:
                t.status = "PAUSED_THREAD"
            elif t.takeover:
                t.status = "HUMAN_TAKEOVER"
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
    #: The thread as a chat, oldest first (see :func:`conversation`).
    conversation: list[dict[str, Any]] = field(default_factory=list)
    #: The draft waiting for approval, if any (approve/edit/reject in place).
    pending: dict[str, Any] | None = None


async def thread_detail(pool: asyncpg.Pool, thread: str, inbound_query: str) -> ThreadDetail:
    controls = await fetch(pool, Q.controls_for, [thread], what="thread controls")
    inbound = await fetch(pool, inbound_query, thread, 200, what="inbound messages")
    inbound.rows.reverse()  # the query answers newest first
    detail = ThreadDetail(
        thread=thread,
        audit=await fetch(pool, Q.audit_for_thread, thread, what="audit log"),
        inbound=inbound,
        routing=await fetch(pool, Q.routing_for_thread, thread, what="routing decisions"),
        drafts=await fetch(pool, Q.drafts_for_thread, thread, what="drafts"),
        outbound=await fetch(pool, Q.outbound_for_thread, thread, what="outbound messages"),
        control=controls.rows[0] if controls.rows else None,
        control_note=controls.unavailable,
    )
    humans = await fetch(pool, Q.human_replies_for_thread, thread, what="human replies")
    detail.conversation = conversation(detail, {r["request_id"]: r for r in humans.rows})
    pending = [d for d in detail.drafts.rows if d["status"] == "DRAFT_PENDING_APPROVAL"]
    detail.pending = pending[-1] if pending else None
    return detail


def conversation(detail: ThreadDetail, humans: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Inbound and outbound messages, drafts and decisions in time order, as chat entries.

    Each entry: ``side`` (lead, us, note), ``at``, ``body``, ``label`` and ``status``.
    Owner prompts and alerts go to the owner, not the lead: they are not in the chat.
    """
    entries: list[dict[str, Any]] = []
    routing = {r["message_sid"]: r for r in detail.routing.rows}
    for m in detail.inbound.rows:
        decided = routing.get(m.get("message_sid", ""))
        entries.append({
            "side": "lead", "at": m["received_at"], "body": m["body"],
            "label": f"+{m['num_media']} media" if m.get("num_media") else "",
            "status": decided["status"] if decided else "RECEIVED", "kind": "inbound",
        })
    for o in detail.outbound.rows:
        if o["kind"] in ("owner_prompt", "owner_alert"):
            continue
        human = humans.get(o.get("request_id") or "")
        label = f"{human['author']} via {human['channel']}" if human else o["kind"].replace("_", " ")
        status = o["status"] + (f" · {o['provider_status']}" if o.get("provider_status") else "")
        if o.get("failure_reason"):
            status += f" · {o['failure_reason']}"
        entries.append({"side": "us", "at": o["created_at"], "body": o["body"], "label": label,
                        "status": status, "kind": o["kind"]})
    for d in detail.drafts.rows:
        by = f" · {d['decided_by']}" if d.get("decided_by") else ""
        entries.append({"side": "note", "at": d["created_at"], "body": d["body"],
                        "label": f"draft #{d['ref']} v{d['version']} ({d['source']})",
                        "status": d["status"] + by, "kind": "draft"})
    entries.sort(key=lambda e: e["at"])
    return entries


async def paused_threads(pool: asyncpg.Pool, limit: int = 200) -> Section:
    return await fetch(pool, Q.paused_threads, limit, what="paused threads")


async def pending_drafts_from_db(pool: asyncpg.Pool, limit: int = 100) -> Section:
    return await fetch(pool, Q.pending_drafts, limit, what="pending drafts")
