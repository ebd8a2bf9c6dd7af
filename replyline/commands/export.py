"""``replyline export``: conversations out, as CSV or JSON lines (libs/conversation.py).

Reads the slices straight from Postgres (REPLYLINE_DATABASE_URL; the read-only
operator role of docs/roles.sql is enough) and writes row by row, so the export of
every thread streams in bounded memory. The same rows as ``GET /api/export``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import aclosing
from pathlib import Path
from typing import TextIO

import asyncpg

from libs.conversation import (
    FORMATS,
    OUTCOMES,
    ExportError,
    Filters,
    Format,
    available_kinds,
    parse_time,
    render,
)
from libs.events import thread_of
from libs.settings import CommonSettings, SettingsError, load
from replyline.commands._parser import subcommand
from replyline.services import SERVICES

HELP = "export conversations (inbound, drafts, decisions, sends, delivery, takeovers, outcome)"
DESCRIPTION = (
    "Write conversations as CSV or JSON lines, one row per inbound message, draft "
    "version, decision, outbound message, delivery status, takeover and outcome, in time order "
    "per thread. See docs/export.md."
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subcommand(subparsers, "export", run, help=HELP, description=DESCRIPTION)
    p.add_argument("--thread", help="only this contact's number, e.g. +15551234567")
    p.add_argument("--since", help="rows at or after this date/time (2030-06-04 = midnight UTC)")
    p.add_argument("--until", help="rows before this date/time (exclusive)")
    p.add_argument("--outcome", choices=OUTCOMES, help="only threads whose latest outcome is this")
    p.add_argument("--format", choices=FORMATS, default="csv", help="csv (default) or jsonl")
    p.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")


def filters_from(args: argparse.Namespace) -> Filters:
    return Filters(
        thread=thread_of(args.thread) if args.thread else None,
        since=parse_time(args.since, "--since") if args.since else None,
        until=parse_time(args.until, "--until") if args.until else None,
        outcome=args.outcome,
    )


def run(args: argparse.Namespace) -> int:
    try:
        settings = load(CommonSettings, sections=SERVICES)
        filters = filters_from(args)
    except (SettingsError, ExportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.output:
            with args.output.open("w", encoding="utf-8", newline="") as out:
                return asyncio.run(export(settings.database_url, filters, args.format, out))
        return asyncio.run(export(settings.database_url, filters, args.format, sys.stdout))
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1


async def export(database_url: str, filters: Filters, fmt: Format, out: TextIO) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        _, notes = await available_kinds(conn)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        async with aclosing(render(conn, filters, fmt)) as chunks:
            async for chunk in chunks:
                out.write(chunk)
        out.flush()
    finally:
        await conn.close()
    return 0
