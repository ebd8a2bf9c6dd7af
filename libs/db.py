"""Postgres: pool, per-service numbered migrations, named queries, audit rows.

Each service owns a *slice* of the schema: the numbered files in its
``migrations/`` folder (``0001_init.sql``, ``0002_...``). ``migrate`` applies
the missing ones in order, each in its own transaction, under an advisory lock
so that replicas starting together do not race. The shared ``audit_log`` is the
``common`` slice every service applies first. Derived objects (the cross-slice
``messages`` view) are not a history: ``recreate_derived`` reruns their one current
definition and records its version.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from libs.tracing import current_traceparent, trace_id_of

log = structlog.get_logger("db")

COMMON_SLICE = "common"
COMMON_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_DERIVED_VERSION = re.compile(r"\A--\s*version:\s*(\d+)\s*$", re.MULTILINE)
_QUERY_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    slice       TEXT NOT NULL,
    version     INTEGER NOT NULL,
    name        TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (slice, version)
)
"""


class MigrationError(Exception):
    pass


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=_json_dumps, decoder=json.loads, schema="pg_catalog")


def _json_dumps(value: Any) -> str:
    return json.dumps(value, default=str)


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """Run on each released connection instead of asyncpg's reset query.

    asyncpg's default sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release: one more round trip per unit of work, which the
    releasing task waits for before it goes on (the sender before its API call).
    The code base keeps no session state across a checkout: settings are ``SET
    LOCAL``, cursors and temp tables live in transactions, nothing LISTENs, and
    the one session lock (migrations, below) is released or its connection
    closed. asyncpg still rolls back an open transaction and drops listener
    callbacks before calling this. New session state needs its own clean-up.
    """


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_no_session_state,
        command_timeout=30,
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def unflushed_commit(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """A transaction whose COMMIT does not wait for its WAL to reach the disk.

    ``SET LOCAL synchronous_commit = off``: the commit is visible to everyone at once,
    but a Postgres crash within about three ``wal_writer_delay`` (600 ms by default)
    can lose it. Only for writes that a later *synchronous* commit on the same path
    makes durable anyway (the WAL is one sequence: flushing a commit flushes every
    record written before it) before anything outside the database (an API call, a
    NATS ack or publish, an HTTP answer) depends on them. Not for audit rows of
    things that already happened elsewhere: they are the only record.
    """
    async with conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit = off")
        yield conn


def migration_files(folder: Path) -> list[tuple[int, str, Path]]:
    found: list[tuple[int, str, Path]] = []
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_name.sql")
        found.append((int(match.group(1)), match.group(2), path))
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"{folder}: migration numbers must run 1, 2, 3... without gaps")
    return found


def expected_version(folder: Path) -> int:
    return len(migration_files(folder))


@asynccontextmanager
async def _migration_lock(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection holding the one lock for all slices, with the version table there."""
    async with pool.acquire() as conn:
        # One lock for all slices: CREATE TABLE IF NOT EXISTS itself is not race-free.
        await conn.execute("SELECT pg_advisory_lock(hashtext('replyline_migrations'))")
        try:
            # A service role without CREATE on the schema may still migrate its
            # own slice once an admin has created the version table.
            if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
                await conn.execute(_VERSION_TABLE)
            yield conn
        finally:
            try:
                await conn.execute("SELECT pg_advisory_unlock(hashtext('replyline_migrations'))")
            except BaseException:
                # The lock belongs to the session and the pool no longer resets sessions
                # (_no_session_state): a connection that may still hold it is closed instead.
                conn.terminate()
                raise


async def migrate(pool: asyncpg.Pool, slice_name: str, folder: Path | None) -> int:
    """Apply the common slice, then ``slice_name``'s missing migrations; return its version."""
    async with _migration_lock(pool) as conn:
        await _apply(conn, COMMON_SLICE, COMMON_MIGRATIONS)
        return await _apply(conn, slice_name, folder) if folder else 0


def read_derived(path: Path) -> tuple[int, str]:
    """The version (its ``-- version: N`` first line) and SQL of a file of derived objects."""
    text = path.read_text()
    match = _DERIVED_VERSION.match(text)
    if not match:
        raise MigrationError(f"{path}: a file of derived objects starts with '-- version: N'")
    return int(match.group(1)), text


async def recreate_derived(pool: asyncpg.Pool, slice_name: str, path: Path) -> int:
    """Drop and recreate derived objects (views) from their one current definition.

    Views hold no data, so they are not migrated step by step: ``path`` is run on every
    call (it drops and creates them) and its version is recorded under ``slice_name``.
    A database already at a higher version is refused, as for a slice: older code must
    not replace a newer definition.
    """
    version, sql = read_derived(path)
    async with _migration_lock(pool) as conn:
        current = await conn.fetchval(
            "SELECT coalesce(max(version), 0) FROM schema_migrations WHERE slice = $1", slice_name
        )
        if current > version:
            raise MigrationError(
                f"slice {slice_name!r} is at version {current} but this code only knows {version}"
            )
        async with conn.transaction():
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO schema_migrations (slice, version, name) VALUES ($1, $2, $3) "
                "ON CONFLICT (slice, version) DO NOTHING",
                slice_name,
                version,
                path.stem,
            )
    return version


async def _apply(conn: asyncpg.Connection, slice_name: str, folder: Path) -> int:
    current = await conn.fetchval(
        "SELECT coalesce(max(version), 0) FROM schema_migrations WHERE slice = $1", slice_name
    )
    files = migration_files(folder)
    if current > len(files):
        raise MigrationError(
            f"slice {slice_name!r} is at version {current} but this code only knows {len(files)}"
        )
    for version, name, path in files[current:]:
        async with conn.transaction():
            await conn.execute(path.read_text())
            await conn.execute(
                "INSERT INTO schema_migrations (slice, version, name) VALUES ($1, $2, $3)",
                slice_name,
                version,
                name,
            )
        log.info("migration_applied", slice=slice_name, version=version, name=name)
    return len(files)


async def slice_version(conn: asyncpg.Connection | asyncpg.Pool, slice_name: str) -> int:
    try:
        version = await conn.fetchval(QUERIES.slice_version, slice_name)
    except asyncpg.UndefinedTableError:
        return 0
    return int(version)


# A ``:name`` placeholder, skipping string literals, ``--`` comments and ``::type`` casts.
_NAMED_TOKEN = re.compile(r"'(?:[^']|'')*'|--[^\n]*|::|(?<![\w$]):([a-z_][a-z0-9_]*)")


class NamedQuery:
    """SQL with ``:name`` placeholders, rewritten once (at load) into asyncpg's ``$n``.

    ``sql`` is what asyncpg runs; ``bind(values)`` turns a mapping or an object
    with those attributes (a msgspec Struct) into the positional arguments;
    ``bind(obj, name=value)`` reads the object but for the names given (values
    computed from it, or held elsewhere). A name used twice is one ``$n``. Long
    parameter lists bind by name so that no caller has to count to ``$13``.
    """

    __slots__ = ("names", "sql")

    def __init__(self, text: str) -> None:
        if re.search(r"\$\d", text):
            raise ValueError("a named query may not also use $n placeholders")
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:
                return match.group(0)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        self.sql = _NAMED_TOKEN.sub(number, text)
        self.names = tuple(names)

    def bind(self, values: Mapping[str, Any] | object, /, **given: Any) -> tuple[Any, ...]:
        if isinstance(values, Mapping):
            values = {**values, **given}
            extra = set(values) - set(self.names)
            if extra:
                raise KeyError(f"no placeholder for {sorted(extra)}")
            return tuple(values[name] for name in self.names)
        extra = set(given) - set(self.names)
        if extra:
            raise KeyError(f"no placeholder for {sorted(extra)}")
        return tuple(given[name] if name in given else getattr(values, name) for name in self.names)


def _statement(text: str) -> str | NamedQuery:
    """A NamedQuery if ``text`` has ``:name`` placeholders, else the text as asyncpg runs it."""
    if any(match.group(1) for match in _NAMED_TOKEN.finditer(text)):
        return NamedQuery(text)
    return text


class Queries:
    """SQL statements loaded from a file of ``-- name: foo`` sections.

    A statement written with ``:name`` placeholders is a NamedQuery (``Q.foo.sql``,
    ``Q.foo.bind(values)``); any other is the ``str`` itself, with asyncpg's ``$n``.
    One statement may not mix both styles.
    """

    def __init__(self, statements: Mapping[str, str], source: str) -> None:
        self._source = source
        self._statements: dict[str, str | NamedQuery] = {}
        for name, text in statements.items():
            try:
                self._statements[name] = _statement(text)
            except ValueError as e:
                raise ValueError(f"{source}: query {name!r}: {e}") from None

    # Any: a str or a NamedQuery, which the query's text decides (see the class docstring).
    def __getattr__(self, name: str) -> Any:
        try:
            return self._statements[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r} in {self._source}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._statements

    @property
    def names(self) -> list[str]:
        return sorted(self._statements)


def load_queries(path: Path) -> Queries:
    text = path.read_text()
    headers = list(_QUERY_HEADER.finditer(text))
    if not headers:
        raise ValueError(f"{path}: no '-- name: ...' sections")
    statements: dict[str, str] = {}
    for i, match in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        name = match.group(1)
        if name in statements:
            raise ValueError(f"{path}: query {name!r} defined twice")
        statements[name] = text[match.end() : end].strip().rstrip(";")
    return Queries(statements, str(path))


QUERIES = load_queries(Path(__file__).parent / "queries.sql")


async def audit(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    service: str,
    action: str,
    thread: str | None = None,
    actor: str = "SYSTEM",
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append one row to the shared audit log, tagged with the current trace id."""
    await conn.execute(
        QUERIES.insert_audit,
        service,
        actor,
        action,
        thread,
        dict(details or {}),
        trace_id_of(current_traceparent.get()),
    )
