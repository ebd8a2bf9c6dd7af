"""`replyline migrate`: apply every service's migrations (each service also does it at start-up)."""

from __future__ import annotations

import argparse
import asyncio

from libs.db import create_pool, migrate, recreate_derived
from libs.settings import CommonSettings
from replyline.commands._config import load_settings
from replyline.commands._parser import subcommand
from replyline.services import SERVICES, VIEWS_FILE, VIEWS_SLICE, migrations_dir

DESCRIPTION = (
    "Apply the numbered SQL migrations of each service's slice to "
    "REPLYLINE_DATABASE_URL, then (when migrating all) recreate the read-only `messages` "
    "view over the slices, and print the resulting versions."
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subcommand(subparsers, "migrate", run, help="apply database migrations", description=DESCRIPTION)
    p.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE",
        help=f"services whose slice to migrate (default: all of {', '.join(SERVICES)})",
    )


def run(args: argparse.Namespace) -> int:
    settings = load_settings(CommonSettings)
    if settings is None:
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
            versions[VIEWS_SLICE] = await recreate_derived(pool, VIEWS_SLICE, VIEWS_FILE)
    finally:
        await pool.close()
    return versions
