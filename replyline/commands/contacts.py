"""``replyline contacts import leads.csv``: validate every row, then import through the scheduler.

The scheduler owns ``contacts``; this command asks its contact-import endpoints
(libs/rpc.py ``CONTACTS_*``, services/scheduler/contact_import.py) like ingest's
``POST /api/contacts/import`` does. Columns and rules: libs/contact_csv.py and
docs/contacts.md. Progress goes to stderr, the result to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from libs import rpc
from libs.bus import Bus
from libs.contact_import_client import ImportFailed, import_contacts
from libs.settings import SettingsError, load
from replyline.commands._parser import subcommand
from replyline.services import SERVICES
from services.ingest.settings import IngestSettings


def add_parser(subparsers: Any) -> None:
    parser = subcommand(subparsers, "contacts", run, help="import contacts from a CSV file")
    actions = parser.add_subparsers(dest="contacts_action", required=True)
    imp = actions.add_parser(
        "import",
        help="import a CSV (phone, first_name, last_name, email, tags, opted_out/consent, custom columns)",
    )
    imp.add_argument("file", type=Path)
    imp.add_argument(
        "--region", help="region for numbers without +country (default: REPLYLINE_DEFAULT_REGION)"
    )
    imp.add_argument(
        "--fire-workflows", action="store_true", help="start contact_created workflows for new contacts"
    )
    imp.add_argument("--json", action="store_true", help="print the result as JSON")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    imp.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each scheduler reply")


def _lines(path: Path) -> Iterator[str]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        yield from handle


class _Bar:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.total = 0

    def __call__(self, phase: str, done: int) -> None:
        if not self.enabled:
            return
        if phase == "checking":
            self.total = max(self.total, done)
            sys.stderr.write(f"\rchecking  {done:>9,} rows")
        else:
            share = done / self.total if self.total else 1.0
            filled = int(share * 30)
            sys.stderr.write(f"\rimporting [{'#' * filled}{'.' * (30 - filled)}] {done:>9,}/{self.total:,}")
        sys.stderr.flush()

    def end(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def run(args: argparse.Namespace) -> int:
    try:
        settings = load(IngestSettings, section="ingest", sections=SERVICES)
    except (SettingsError, ValueError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    path: Path = args.file
    if not path.is_file():
        print(f"error: no such file {path}", file=sys.stderr)
        return 2
    region = (args.region or settings.default_region).upper()
    bar = _Bar(not args.no_progress)
    try:
        report = asyncio.run(_import(settings, path, region, args, bar))
    except ImportFailed as exc:
        bar.end()
        print(f"error: {exc}; nothing was imported", file=sys.stderr)
        return 1
    except (OSError, UnicodeDecodeError) as exc:
        bar.end()
        print(f"error: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    bar.end()
    if args.json:
        print(json.dumps(report.to_json()))
    if not report.ok:
        for issue in report.errors:
            print(f"{path}:{issue.line}: {issue.reason}", file=sys.stderr)
        more = report.error_count - len(report.errors)
        tail = f" ({more} more not shown)" if more > 0 else ""
        print(f"{report.error_count} invalid row(s){tail}; nothing was imported", file=sys.stderr)
        return 1
    if not args.json:
        r = report.result
        print(
            f"imported {r['rows']} rows: {r['contacts']} contacts ({r['created']} new, "
            f"{r['updated']} updated, {r['unchanged']} unchanged, "
            f"{r['duplicates']} duplicate rows merged, {r['opted_out']} opted out)"
        )
    return 0


async def _import(
    settings: IngestSettings, path: Path, region: str, args: argparse.Namespace, bar: _Bar
) -> Any:
    bus = await Bus.connect(settings, "replyline-contacts")
    try:
        return await import_contacts(
            lambda: _lines(path),
            rpc.RpcClient(bus.nc, bus.prefix, args.timeout),
            region=region,
            source=path.name,
            fire_workflows=args.fire_workflows,
            progress=bar,
        )
    except (rpc.RpcUnavailable, rpc.RpcFailed) as exc:
        raise ImportFailed(str(exc)) from None
    finally:
        await bus.close()
