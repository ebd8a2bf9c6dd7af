"""`replyline migrate`: apply every service's migrations (each service also does it at start-up)."""

from __future__ import annotations

import argparse
import asyncio

from libs.db import create_pool, migrate
from libs.settings import CommonSettings, SettingsError, load
from replyline.services import SERVICES, migrations_dir


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "migrate",
        help="apply database migrations",
        description="Apply the numbered SQL migrations of each service's slice to "
        "REPLYLINE_DATABASE_URL and print the resulting versions.",
    )
    p.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE",
        help=f"services whose slice to migrate (default: all of {', '.join(SERVICES)})",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load(CommonSettings)
    except SettingsError as exc:
        print(f"configuration error: {exc}")
        return 2
    unknown = sorted(set(args.services) - set(SERVICES))
    if unknown:
        print(f"unknown service(s): {', '.join(unknown)} (known: {', '.join(SERVICES)})")
        return 2
    return asyncio.run(_migrate(settings.database_url, args.services or list(SERVICES)))


async def _migrate(dsn: str, services: list[str]) -> int:
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        for name in services:
            version = await migrate(pool, name, migrations_dir(name))
            print(f"{name:<10} slice at version {version}")
    finally:
        await pool.close()
    return 0
