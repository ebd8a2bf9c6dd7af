"""`replyline run <service>`: one service in the foreground (as `python -m services.<name>`)."""

from __future__ import annotations

import argparse
import os
import sys

from replyline.services import SERVICES


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "run",
        help="run one service in the foreground",
        description="Run one service (configured by REPLYLINE_* variables) until SIGINT/SIGTERM.",
    )
    p.add_argument("service", choices=SERVICES)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # exec: the service becomes this process, so signals and exit codes are its own.
    os.execv(sys.executable, [sys.executable, "-m", f"services.{args.service}"])
