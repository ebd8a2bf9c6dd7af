"""A conversation's history as rows: what `replyline thread`, `replyline export`, the
export API and the dashboard's download link share.

The export reads the slices' versioned read views (docs/DESIGN.md, "Reading another
slice"; never their tables) with one query: each row kind is a named query in
export_queries.sql answering the same columns, UNION ALLed, filtered and sorted in
Postgres, and read through a server-side cursor, so an export of any size streams in
bounded memory. A new kind is one query plus one ``Kind`` line in ``KINDS``.

Every body in here can be lead-controlled text: ``csv_cell`` neutralises spreadsheet
formulas, and nothing is ever interpreted.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import asyncpg

from libs.db import load_queries
from libs.twilio_errors import describe

Q = load_queries(Path(__file__).parent / "export_queries.sql")

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
CONTENT_TYPES: dict[Format, str] = {"csv": "text/csv", "jsonl": "application/x-ndjson"}

#: The outcomes the scheduler records (conversation_outcomes.outcome).
OUTCOMES = ("success", "qualified", "unqualified", "escalated", "no_response", "discarded")


@dataclass(frozen=True)
class Kind:
    name: str
    query: str  # a named query in export_queries.sql
    #: Every relation it reads (the slices' read views, or audit_log): all must be readable.
    tables: tuple[str, ...]


KINDS: tuple[Kind, ...] = (
    Kind("inbound", "kind_inbound", ("ingest_v1_inbound", "router_v1_decisions")),
    Kind("draft", "kind_draft", ("drafter_v1_drafts",)),
    Kind("decision", "kind_decision", ("drafter_v1_decisions",)),
    Kind("outbound", "kind_outbound", ("sender_v1_outbound",)),
    Kind("delivery", "kind_delivery", ("sender_v1_delivery_events", "sender_v1_outbound")),
    Kind("takeover", "kind_takeover", ("audit_log",)),
    Kind("outcome", "kind_outcome", ("scheduler_v1_outcomes",)),
)

#: CSV columns, in order; JSON lines carry the same keys (details as an object).
COLUMNS = (
    "at", "thread", "kind", "id", "status", "body", "actor", "version", "ref",
    "error_code", "error_help", "details",
)  # fmt: skip


class ExportError(Exception):
    """The export cannot be made as asked (bad filter, outcome table unavailable)."""


@dataclass(frozen=True)
class Filters:
    thread: str | None = None  # digits, no '+'
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    outcome: str | None = None  # the thread's latest outcome

    def __post_init__(self) -> None:
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise ExportError(f"outcome must be one of {', '.join(OUTCOMES)}")
        if self.since and self.until and self.since >= self.until:
            raise ExportError("since must be before until")


def parse_time(raw: str, name: str) -> datetime:
    """``2030-06-04`` (midnight UTC) or an ISO timestamp (UTC unless it names an offset)."""
    text = raw.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ExportError(f"{name} must be a date (2030-06-04) or an ISO time, not {raw!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def explained(summary: dict[str, Any]) -> dict[str, Any]:
    """A delivery error code gets its plain-language explanation (libs/data/twilio_errors.yaml)."""
    help_text = describe(summary.get("error_code"))
    return {**summary, "error_help": help_text} if help_text else summary


async def available_kinds(conn: asyncpg.Connection) -> tuple[list[Kind], list[str]]:
    """The kinds whose tables this role can read, and a note for each one left out."""
    tables = sorted({t for k in KINDS for t in k.tables})
    readable = {r["t"] for r in await conn.fetch(Q.readable_tables, tables)}
    kinds = [k for k in KINDS if all(t in readable for t in k.tables)]
    notes = [
        f"{k.name} rows left out: {', '.join(t for t in k.tables if t not in readable)} not readable"
        for k in KINDS
        if k not in kinds
    ]
    return kinds, notes


def build_query(kinds: Iterable[Kind], filters: Filters) -> tuple[str, list[Any]]:
    """One statement over the kinds; Postgres pushes the filters into each branch."""
    branches = [f"({getattr(Q, k.query)})" for k in kinds]
    if not branches:
        raise ExportError("nothing to export: no conversation table is readable")
    where: list[str] = []
    args: list[Any] = []
    if filters.thread is not None:
        args.append(filters.thread)
        where.append(f"x.thread = ${len(args)}")
    if filters.since is not None:
        args.append(filters.since)
        where.append(f"x.at >= ${len(args)}")
    if filters.until is not None:
        args.append(filters.until)
        where.append(f"x.at < ${len(args)}")
    if filters.outcome is not None:
        args.append(filters.outcome)
        where.append(
            "x.thread IN (SELECT thread FROM (SELECT DISTINCT ON (thread) thread, outcome "
            "FROM scheduler_v1_outcomes ORDER BY thread, created_at DESC, id DESC) latest "
            f"WHERE latest.outcome = ${len(args)})"
        )
    sql = (
        "SELECT * FROM (" + " UNION ALL ".join(branches) + ") AS x"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY x.thread, x.at, x.ord, x.id"
    )  # fmt: skip
    return sql, args


async def export_rows(
    conn: asyncpg.Connection, filters: Filters, *, prefetch: int = 500
) -> AsyncGenerator[dict[str, Any], None]:
    """Rows in time order per thread, read through a cursor in one read-only snapshot."""
    kinds, _ = await available_kinds(conn)
    if filters.outcome is not None and not any(k.name == "outcome" for k in kinds):
        raise ExportError("cannot filter by outcome: scheduler_v1_outcomes is not readable")
    sql, args = build_query(kinds, filters)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for record in conn.cursor(sql, *args, prefetch=prefetch):
            yield _row(record)


def _row(record: asyncpg.Record) -> dict[str, Any]:
    details = record["details"]
    if isinstance(details, str):  # a connection without the jsonb codec
        details = json.loads(details)
    return {
        "at": record["at"].astimezone(UTC).isoformat(),
        "thread": "+" + record["thread"],
        "kind": record["kind"],
        "id": record["id"],
        "status": record["status"],
        "body": record["body"] or "",
        "actor": record["actor"],
        "version": record["version"],
        "ref": record["ref"],
        "error_code": record["error_code"],
        "error_help": describe(record["error_code"]),
        "details": details or {},
    }


# -- formats -------------------------------------------------------------------------------

#: A cell a spreadsheet would read as a formula (or split as a control character).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A CSV cell that no spreadsheet evaluates: formula-looking text gets a leading "'".

    Phone numbers ("+1555...") get one too, which also keeps spreadsheets from turning
    them into numbers.
    """
    if value is None:
        return ""
    if isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    else:
        text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_header() -> str:
    return _csv_line(COLUMNS)


def csv_line(row: dict[str, Any]) -> str:
    return _csv_line([csv_cell(row.get(c)) for c in COLUMNS])


def _csv_line(cells: Iterable[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue()


def jsonl_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, default=str) + "\n"


async def render(conn: asyncpg.Connection, filters: Filters, fmt: Format) -> AsyncGenerator[str, None]:
    """The export as text chunks (one per row), header first for CSV."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}")
    rows = export_rows(conn, filters)
    if fmt == "csv":
        # The first row is fetched before the header, so a bad filter fails before output.
        first = await anext(rows, None)
        yield csv_header()
        if first is not None:
            yield csv_line(first)
        async for row in rows:
            yield csv_line(row)
    else:
        async for row in rows:
            yield jsonl_line(row)
