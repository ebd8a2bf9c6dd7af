"""`replyline thread <number>`: a conversation's history from the stream and the audit log."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import asyncpg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs.bus import Bus
from libs.conversation import explained
from libs.events import thread_of
from libs.settings import CommonSettings, SettingsError, load

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


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "thread",
        help="show one conversation's history (events + audit log)",
        description="Print every event of a thread from the PIPELINE stream and every audit_log "
        "row, merged in time order.",
    )
    p.add_argument("number", help="the contact's number, e.g. +15551234567")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load(CommonSettings)
    except SettingsError as exc:
        print(f"configuration error: {exc}")
        return 2
    rows = asyncio.run(history(settings, thread_of(args.number)))
    for row in rows:
        if args.json:
            print(json.dumps(row, default=str))
        else:
            print(f"{row['at']:%Y-%m-%d %H:%M:%S}  {row['source']:<6} {row['what']:<22} {row['summary']}")
    if not rows:
        print(f"no history for {args.number}")
    return 0


async def history(settings: CommonSettings, thread: str) -> list[dict[str, Any]]:
    rows = await stream_history(settings, thread) + await audit_history(settings, thread)
    return sorted(rows, key=lambda r: r["at"])


async def stream_history(settings: CommonSettings, thread: str) -> list[dict[str, Any]]:
    bus = await Bus.connect(settings, "replyline-thread")
    rows: list[dict[str, Any]] = []
    try:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=30.0
        )
        sub = await bus.js.pull_subscribe(f"{bus.prefix}*.*.{thread}", stream=bus.stream, config=config)
        while True:
            try:
                msgs = await sub.fetch(batch=200, timeout=1.0)
            except (NatsTimeoutError, TimeoutError):
                break
            for msg in msgs:
                data = json.loads(msg.data)
                fields = {k: data[k] for k in SUMMARY_FIELDS if data.get(k) not in (None, "", [])}
                summary = explained(fields)
                rows.append({
                    "at": msg.metadata.timestamp, "source": "stream", "seq": msg.metadata.sequence.stream,
                    "what": data.get("type", bus.unprefixed(msg.subject)), "summary": summary,
                })  # fmt: skip
            if msgs and msgs[-1].metadata.num_pending == 0:
                break
        await sub.unsubscribe()
    finally:
        await bus.close()
    return rows


async def audit_history(settings: CommonSettings, thread: str) -> list[dict[str, Any]]:
    try:
        conn = await asyncpg.connect(settings.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"(audit log unavailable: {exc})")
        return []
    try:
        records = await conn.fetch(
            "SELECT at, service, actor, action, details::text AS details FROM audit_log "
            "WHERE thread IN ($1, $2) ORDER BY at",
            thread, "+" + thread,
        )  # fmt: skip
    except asyncpg.UndefinedTableError:
        return []
    finally:
        await conn.close()
    return [
        {"at": r["at"], "source": "audit", "what": f"{r['service']}.{r['action']}",
         "summary": explained({"actor": r["actor"], **json.loads(r["details"])})}
        for r in records
    ]  # fmt: skip

