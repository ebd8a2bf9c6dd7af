"""The `replyline` command: run services, the dev stack, migrations and tools."""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from replyline.commands import classify, contacts, dev, export, migrate, replay, run, sms, thread, workflows

# Explicit registry: a subcommand exists because it is listed here.
COMMANDS: list[ModuleType] = [dev, run, migrate, sms, classify, workflows, contacts, replay, thread, export]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replyline",
        description="Replyline: SMS lead response with owner-approved AI replies.",
        epilog="Settings come from REPLYLINE_* environment variables (see README).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
