"""`replyline migrate`: apply every service's migrations (each service also does it at start-up)."""

from __future__ import annotations

import argparse
import asyncio

from libs.db import create_pool, migrate
from libs.settings import CommonSettings, SettingsError, load
from replyline.services import SERVICES, VIEWS_DIR, VIEWS_SLICE, migrations_dir


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "migrate",
        help="apply database migrations",
        description="Apply the numbered SQL migrations of each service's slice to "
        "REPLYLINE_DATABASE_URL, then (when migrating all) the read-only `messages` view "
        "over the slices, and print the resulting versions.",
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
        settings = load(CommonSettings, sections=SERVICES)
    except SettingsError as exc:
        print(f"configuration error: {exc}")
        return 2
    unknown = sorted(set(args.services) - set(SERVICES))
    if unknown:
        print(f"unknown service(s): {', '.join(unknown)} (known: {', '.join(SERVICES)})")
        return 2
    return asyncio.run(_migrate(settings.database_url, args.services or list(SERVICES)))


async def _migrate(dsn: str, services: list[str]) -> int:
    for name, version in (await migrate_all(dsn, services)).items():
        print(f"{name:<10} slice at version {version}")
    return 0


async def migrate_all(dsn: str, services: list[str] | None = None) -> dict[str, int]:
    """Apply the given slices (default all) and, when all are there, the cross-slice views."""
    chosen = services or list(SERVICES)
    versions: dict[str, int] = {}
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        for name in chosen:
            versions[name] = await migrate(pool, name, migrations_dir(name))
        if set(chosen) == set(SERVICES):
            versions[VIEWS_SLICE] = await migrate(pool, VIEWS_SLICE, VIEWS_DIR)
    finally:
        await pool.close()
    return versions
