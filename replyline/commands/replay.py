"""`replyline replay`: re-deliver dead letters or a subject range to one service's consumer."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta

from libs.bus import Bus
from libs.replay import Replayed, replay_dlq, replay_range
from libs.settings import CommonSettings, SettingsError, load
from replyline.commands._parser import subcommand
from replyline.services import SERVICES

HELP = "re-deliver DLQ entries or a range of PIPELINE events to a service"
DESCRIPTION = (
    "Re-deliver events to one service's durable consumer (subject "
    "replay.<service>.<original subject>). With --dlq, dead letters go back to the "
    "service that dropped them and leave the DLQ. Replays are idempotent: the same "
    "event replayed twice within the duplicate window is stored once, and handlers "
    "dedupe on MessageSid / draft version / outbox id."
)
EXAMPLES = (
    "examples:\n  replyline replay --dlq\n  replyline replay --dlq --service router\n"
    "  replyline replay --service drafter --subject 'inbound.routed.>' --since 2h"
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subcommand(subparsers, "replay", run, help=HELP, description=DESCRIPTION, epilog=EXAMPLES, raw=True)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dlq", action="store_true", help="replay dead letters")
    source.add_argument("--subject", help="PIPELINE subject filter, e.g. 'inbound.received.>'")
    p.add_argument("--service", choices=SERVICES, help="target service (required with --subject)")
    p.add_argument("--since", help="with --subject: a duration (90m, 2h, 1d) or an ISO time")
    p.add_argument("--start-seq", type=int, help="with --subject: first stream sequence")
    p.add_argument("--end-seq", type=int, help="with --subject: last stream sequence")
    p.add_argument("--keep", action="store_true", help="with --dlq: leave entries in the DLQ")
    p.add_argument("--dry-run", action="store_true", help="list what would be replayed")


def parse_since(text: str) -> datetime:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[:-1].isdigit() and text[-1] in units:
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def run(args: argparse.Namespace) -> int:
    if args.subject and not args.service:
        print("--subject needs --service (the consumer to re-deliver to)")
        return 2
    try:
        settings = load(CommonSettings, sections=SERVICES)
        since = parse_since(args.since) if args.since else None
    except (SettingsError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    return asyncio.run(_run(settings, args, since))


async def _run(settings: CommonSettings, args: argparse.Namespace, since: datetime | None) -> int:
    bus = await Bus.connect(settings, "replyline-replay")
    try:
        if args.dlq:
            done = await replay_dlq(bus, consumer=args.service, dry_run=args.dry_run, keep=args.keep)
        else:
            done = await replay_range(
                bus, consumer=args.service, subject=args.subject, since=since,
                start_seq=args.start_seq, end_seq=args.end_seq, dry_run=args.dry_run,
            )  # fmt: skip
    finally:
        await bus.close()
    _print(done, args.dry_run)
    return 0


def _print(done: list[Replayed], dry_run: bool) -> None:
    verb = "would replay" if dry_run else "replayed"
    for item in done:
        note = " (duplicate, already replayed)" if item.duplicate else ""
        reason = f"  [{item.reason}]" if item.reason else ""
        print(f"{verb} seq {item.original_seq} {item.original_subject} -> {item.consumer}{note}{reason}")
    print(f"{len(done)} event(s) {verb}")
