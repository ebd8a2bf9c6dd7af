"""`replyline thread <number>`: a conversation's history from the stream and the audit log."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

import asyncpg
from nats.js.api import ConsumerConfig, DeliverPolicy

from libs.bus import Bus
from libs.conversation import explained
from libs.events import thread_of
from libs.replay import read_current
from libs.settings import CommonSettings
from replyline.commands._config import load_settings
from replyline.commands._parser import subcommand

T = TypeVar("T")

SUMMARY_FIELDS = (
    "body",
    "decision",
    "rule",
    "status",
    "intent",
    "action",
    "ref",
    "version",
    "kind",
    "provider_sid",
    "error_code",
    "keyword",
    "timer_id",
    "fire_at",
)


DESCRIPTION = (
    "Print every event of a thread from the PIPELINE stream and every audit_log row, merged in time order."
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    summary = "show one conversation's history (events + audit log)"
    p = subcommand(subparsers, "thread", run, help=summary, description=DESCRIPTION)
    p.add_argument("number", help="the contact's number, e.g. +15551234567")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(CommonSettings)
    if settings is None:
        return 2
    state, rows = asyncio.run(history(settings, thread_of(args.number)))
    if state is not None:
        print(json.dumps(state, default=str) if args.json else _state_line(state))
    for row in rows:
        if args.json:
            print(json.dumps(row, default=str))
        else:
            print(f"{row['at']:%Y-%m-%d %H:%M:%S}  {row['source']:<6} {row['what']:<22} {row['summary']}")
    if not rows:
        print(f"no history for {args.number}")
    return 0


async def history(
    settings: CommonSettings, thread: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The thread's takeover state (None when a person is not answering it) and its rows."""
    state, db_rows = await db_history(settings, thread)
    rows = await stream_history(settings, thread) + db_rows
    return state, sorted(rows, key=lambda r: r["at"])


async def stream_history(settings: CommonSettings, thread: str) -> list[dict[str, Any]]:
    bus = await Bus.connect(settings, "replyline-thread")
    rows: list[dict[str, Any]] = []
    try:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        subject = f"{bus.prefix}*.*.{thread}"
        async for msg in read_current(bus, bus.stream, subject, config, batch=200):
            data = json.loads(msg.data)
            fields = {k: data[k] for k in SUMMARY_FIELDS if data.get(k) not in (None, "", [])}
            summary = explained(fields)
            rows.append({
                "at": msg.metadata.timestamp, "source": "stream", "seq": msg.metadata.sequence.stream,
                "what": data.get("type", bus.unprefixed(msg.subject)), "summary": summary,
            })  # fmt: skip
    finally:
        await bus.close()
    return rows


async def db_history(
    settings: CommonSettings, thread: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    try:
        conn = await asyncpg.connect(settings.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"(audit log unavailable: {exc})")
        return None, []
    try:
        # Each read is optional: the CLI works against a database where only some
        # slices are migrated (a slice's read view missing means nothing to show).
        # Only the slices' read views are read, never their tables (DESIGN.md).
        state = await _optional(takeover_state(conn, thread), None)
        rows = await _optional(audit_history(conn, thread), [])
        rows += await _optional(human_reply_history(conn, thread), [])
    finally:
        await conn.close()
    return state, rows


async def _optional(query: Awaitable[T], missing: T) -> T:
    try:
        return await query
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
        return missing


async def audit_history(conn: asyncpg.Connection, thread: str) -> list[dict[str, Any]]:
    records = await conn.fetch(
        "SELECT at, service, actor, action, details::text AS details FROM audit_log "
        "WHERE thread IN ($1, $2) ORDER BY at",
        thread, "+" + thread,
    )  # fmt: skip
    return [
        {"at": r["at"], "source": "audit", "what": f"{r['service']}.{r['action']}",
         "summary": explained({"actor": r["actor"], **json.loads(r["details"])})}
        for r in records
    ]  # fmt: skip


async def takeover_state(conn: asyncpg.Connection, thread: str) -> dict[str, Any] | None:
    """HUMAN_TAKEOVER from the router's read view; the channel of the latest human reply (drafter's)."""
    row = await conn.fetchrow(
        "SELECT takeover_since, takeover_until, takeover_by, last_human_reply_at FROM router_v1_threads "
        "WHERE thread = $1 AND takeover_since IS NOT NULL",
        thread,
    )
    if row is None:
        return None
    channel = await _optional(
        conn.fetchval(
            "SELECT channel FROM drafter_v1_human_replies WHERE thread = $1 ORDER BY created_at DESC LIMIT 1",
            thread,
        ),
        None,
    )
    return {
        "source": "state", "what": "HUMAN_TAKEOVER", "since": row["takeover_since"],
        "by": row["takeover_by"], "channel": channel or "", "last_human_reply_at": row["last_human_reply_at"],
        "until": row["takeover_until"],
    }  # fmt: skip


async def human_reply_history(conn: asyncpg.Connection, thread: str) -> list[dict[str, Any]]:
    """A person's replies (drafter's read view) with their delivery status (sender's outbox view)."""
    records = await conn.fetch(
        "SELECT h.created_at, h.body, h.author, h.channel, h.ref, h.status, h.error,"
        " o.status AS outbox_status, o.provider_status, o.provider_sid, o.error_code"
        " FROM drafter_v1_human_replies h LEFT JOIN sender_v1_outbound o"
        "   ON o.kind = 'human_reply' AND o.request_id = h.request_id"
        " WHERE h.thread = $1 ORDER BY h.created_at",
        thread,
    )
    rows = []
    for r in records:
        summary = {
            "body": r["body"], "author": r["author"], "channel": r["channel"], "ref": r["ref"],
            # The outbox's word (SENT, DEFERRED, FAILED_SEND, REFUSED…) when the sender has
            # the message, else the drafter's (requested / refused).
            "delivery": r["outbox_status"] or r["status"].upper(),
            "provider_status": r["provider_status"], "provider_sid": r["provider_sid"],
            "error_code": r["error_code"], "error": r["error"],
        }  # fmt: skip
        summary = {k: v for k, v in summary.items() if v not in (None, "")}
        rows.append(
            {"at": r["created_at"], "source": "human", "what": "human_reply", "summary": explained(summary)}
        )
    return rows


def _state_line(state: dict[str, Any]) -> str:
    by = state["by"] + (f" ({state['channel']})" if state["channel"] else "")
    return (
        f"HUMAN_TAKEOVER since {state['since']:%Y-%m-%d %H:%M:%S} by {by}; "
        f"the AI resumes at {state['until']:%Y-%m-%d %H:%M:%S} unless a person replies again"
    )
