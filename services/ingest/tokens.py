"""``python -m services.ingest.tokens``: create, list and revoke API tokens.

    python -m services.ingest.tokens create owner-laptop            # scope admin
    python -m services.ingest.tokens create typeform --scope leads  # POST /leads only
    python -m services.ingest.tokens list
    python -m services.ingest.tokens revoke typeform

Uses the same settings as the service (REPLYLINE_DATABASE_URL, REPLYLINE_CONFIG) and
applies ingest's migrations first, so it works before ingest has ever started.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import asyncpg

from libs.db import create_pool, migrate
from libs.settings import SettingsError, load
from services import SERVICES
from services.ingest.auth import SCOPES, create_token
from services.ingest.service import MIGRATIONS, QUERIES
from services.ingest.settings import IngestSettings


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m services.ingest.tokens",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a token and print it (shown only once)")
    create.add_argument("name", help="a unique label, e.g. owner-laptop")
    create.add_argument("--scope", choices=SCOPES, default="admin")
    sub.add_parser("list", help="list tokens (names and dates, never the tokens)")
    revoke = sub.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    return p


async def run(args: argparse.Namespace, settings: IngestSettings) -> int:
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        await migrate(pool, "ingest", MIGRATIONS)
        if args.command == "create":
            try:
                token = await create_token(pool, QUERIES, args.name, args.scope)
            except asyncpg.UniqueViolationError:
                print(f"a token named {args.name!r} already exists", file=sys.stderr)
                return 1
            print(f"created {args.scope} token {args.name!r}; store it now, it is not kept:")
            print(token)
            return 0
        if args.command == "list":
            for row in await pool.fetch(QUERIES.list_tokens):
                state = "revoked" if row["revoked_at"] else "active"
                print(
                    f"{row['name']}\t{row['scope']}\t{state}\tcreated {row['created_at']:%F %T}"
                    f"\tlast used {row['last_used_at'] or 'never'}"
                )
            return 0
        revoked = await pool.fetchval(QUERIES.revoke_token, args.name)
        if revoked is None:
            print(f"no active token named {args.name!r}", file=sys.stderr)
            return 1
        print(f"revoked {args.name!r}")
        return 0
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load(IngestSettings, section="ingest", sections=SERVICES)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run(args, settings))


if __name__ == "__main__":
    raise SystemExit(main())
