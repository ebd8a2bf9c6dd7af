"""How a `replyline` subcommand registers itself (each module's ``add_parser``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def subcommand(
    subparsers: Any,
    name: str,
    run: Callable[[argparse.Namespace], int],
    *,
    help: str,
    description: str | None = None,
    epilog: str | None = None,
    raw: bool = False,
) -> argparse.ArgumentParser:
    """Add ``replyline <name>``, whose parsed arguments run ``run`` (``args.handler``).

    ``raw`` keeps the line breaks of the description and epilog (a module docstring with
    examples); otherwise argparse rewraps them.
    """
    formatter = argparse.RawDescriptionHelpFormatter if raw else argparse.HelpFormatter
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=formatter
    )
    parser.set_defaults(handler=run)
    return parser
