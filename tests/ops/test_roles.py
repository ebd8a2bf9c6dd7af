"""docs/roles.sql: each service's role may change only its own slice, and services run with it."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from libs.db import migrate
from replyline.services import SERVICES, migrations_dir
from tests.ops.conftest import REPO_ROOT, StartIngest

ROLES_SQL = REPO_ROOT / "docs" / "roles.sql"
#: Sequences behind a table's serial columns.
OWNED_SEQUENCES = """
SELECT s.relname FROM pg_class s
JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.deptype = 'a'
JOIN pg_class t ON t.oid = d.refobjid
WHERE s.relkind = 'S' AND t.relname = $1
"""
_CREATE_TABLE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.IGNORECASE)
_CREATE_VIEW = re.compile(r"CREATE (?:OR REPLACE )?VIEW (\w+)", re.IGNORECASE)


def slice_tables(folder: Path) -> set[str]:
    return {m.group(1) for f in sorted(folder.glob("*.sql")) for m in _CREATE_TABLE.finditer(f.read_text())}


def slice_views(folder: Path) -> set[str]:
    return {m.group(1) for f in sorted(folder.glob("*.sql")) for m in _CREATE_VIEW.finditer(f.read_text())}


def as_role(dsn: str, role: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


async def apply_roles(pool: asyncpg.Pool) -> dict[str, set[str]]:
    """Migrate every slice as the owner, then apply docs/roles.sql; return each slice's tables."""
    tables: dict[str, set[str]] = {}
    for name in SERVICES:
        folder = migrations_dir(name)
        assert folder is not None
        await migrate(pool, name, folder)
        tables[name] = slice_tables(folder)
    await pool.execute(ROLES_SQL.read_text())
    await pool.execute(ROLES_SQL.read_text())  # idempotent: a deploy runs it again
    return tables


async def test_each_role_may_change_only_its_own_slice(pool: asyncpg.Pool) -> None:
    tables = await apply_roles(pool)
    for name in SERVICES:
        role = f"replyline_{name}"
        for other, owned in tables.items():
            for table in owned:
                can_write = await pool.fetchval(
                    "SELECT has_table_privilege($1, $2, 'INSERT, UPDATE, DELETE')", role, table
                )
                assert can_write == (other == name), (role, table)
                if other == name:
                    assert await pool.fetchval("SELECT has_table_privilege($1, $2, 'SELECT')", role, table)
                    for seq in await pool.fetch(OWNED_SEQUENCES, table):
                        assert await pool.fetchval(
                            "SELECT has_sequence_privilege($1, $2, 'USAGE')", role, seq["relname"]
                        ), (role, seq["relname"])
        assert await pool.fetchval("SELECT has_table_privilege($1, 'audit_log', 'INSERT')", role)
        assert not await pool.fetchval("SELECT has_table_privilege($1, 'audit_log', 'UPDATE')", role)
        assert not await pool.fetchval("SELECT has_schema_privilege($1, 'public', 'CREATE')", role)
    assert not await pool.fetchval(
        "SELECT has_table_privilege('replyline_readonly', 'drafts', 'INSERT, UPDATE, DELETE')"
    )


async def test_ingest_runs_under_its_own_role(
    pool: asyncpg.Pool, database_url: str, start_ops_ingest: StartIngest
) -> None:
    await apply_roles(pool)
    # The service starts (its start-up migrate() is a no-op) and works under its role.
    ingest = await start_ops_ingest(database_url=as_role(database_url, "replyline_ingest"))
    status, body = await ingest.request("GET", "/health/ready")
    assert status == 200 and body["checks"]["database"] is True
    role = await ingest.service.ctx.pool.fetchval("SELECT current_user")
    assert role == "replyline_ingest"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await ingest.service.ctx.pool.execute("UPDATE drafts SET body = 'x'")
    status, _ = await ingest.internal("/health/system")
    assert status in (200, 503)


async def test_ingest_reads_other_slices_only_through_their_read_views(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """The dashboard and the export read the other slices' views, never their tables."""
    tables = await apply_roles(pool)
    views = {v for name in SERVICES if (folder := migrations_dir(name)) for v in slice_views(folder)}
    assert {"drafter_v1_drafts", "sender_v1_outbound", "router_v1_threads", "scheduler_v1_outcomes",
            "ingest_v1_inbound"} <= views  # fmt: skip
    for view in views:
        assert await pool.fetchval("SELECT has_table_privilege('replyline_ingest', $1, 'SELECT')", view), view
        assert not await pool.fetchval(
            "SELECT has_table_privilege('replyline_ingest', $1, 'INSERT, UPDATE, DELETE')", view
        ), view
    for other, owned in tables.items():
        if other == "ingest":
            continue
        for table in owned:
            assert not await pool.fetchval(
                "SELECT has_table_privilege('replyline_ingest', $1, 'SELECT')", table
            ), table
    # And for real, under ingest's role: the views answer, the tables behind them refuse.
    conn = await asyncpg.connect(as_role(database_url, "replyline_ingest"))
    try:
        for view in views:
            await conn.fetch(f"SELECT * FROM {view} LIMIT 1")
        for table in ("drafts", "outbound_messages", "routing_decisions", "conversation_outcomes"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(f"SELECT 1 FROM {table} LIMIT 1")
    finally:
        await conn.close()
