"""`replyline run <service>`: one service in the foreground (as `python -m services.<name>`)."""

from __future__ import annotations

import argparse
import os
import sys

from replyline.commands._parser import subcommand
from replyline.services import SERVICES


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    description = "Run one service (configured by REPLYLINE_* variables) until SIGINT/SIGTERM."
    p = subcommand(subparsers, "run", run, help="run one service in the foreground", description=description)
    p.add_argument("service", choices=SERVICES)


def run(args: argparse.Namespace) -> int:
    # exec: the service becomes this process, so signals and exit codes are its own.
    os.execv(sys.executable, [sys.executable, "-m", f"services.{args.service}"])
