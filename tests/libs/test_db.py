from pathlib import Path

import asyncpg
import msgspec
import pytest

from libs.db import (
    MigrationError,
    NamedQuery,
    audit,
    create_pool,
    load_queries,
    migrate,
    slice_version,
    unflushed_commit,
)
from libs.tracing import current_traceparent, new_traceparent, trace_id_of


async def columns(pool: asyncpg.Pool, table: str) -> dict[str, str]:
    rows = await pool.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1",
        table,
    )
    return {r["column_name"]: r["data_type"] for r in rows}


async def test_migrations_apply_once_in_order(pool: asyncpg.Pool, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_init.sql").write_text("CREATE TABLE things (id INT PRIMARY KEY);")
    assert await migrate(pool, "demo", folder) == 1
    (folder / "0002_more.sql").write_text("ALTER TABLE things ADD COLUMN name TEXT NOT NULL DEFAULT '';")
    assert await migrate(pool, "demo", folder) == 2
    assert await migrate(pool, "demo", folder) == 2  # idempotent
    assert await columns(pool, "things") == {"id": "integer", "name": "text"}
    rows = await pool.fetch("SELECT slice, version, name FROM schema_migrations ORDER BY slice, version")
    assert [tuple(r) for r in rows] == [
        ("common", 1, "audit_log"),
        ("common", 2, "event_outbox"),
        ("demo", 1, "init"),
        ("demo", 2, "more"),
    ]
    assert await slice_version(pool, "demo") == 2


async def test_failed_migration_rolls_back_and_reports(pool: asyncpg.Pool, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "0001_broken.sql").write_text(
        "CREATE TABLE ok_part (id INT); SELECT no_such_column FROM ok_part;"
    )
    with pytest.raises(asyncpg.UndefinedColumnError):
        await migrate(pool, "broken", folder)
    assert await slice_version(pool, "broken") == 0
    assert await pool.fetchval("SELECT to_regclass('ok_part')") is None


async def test_misnamed_or_gapped_migrations_are_refused(pool: asyncpg.Pool, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "0002_skip.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="without gaps"):
        await migrate(pool, "gap", folder)
    (folder / "0002_skip.sql").rename(folder / "init.sql")
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        await migrate(pool, "gap", folder)


async def test_audit_log_is_append_only_and_traced(pool: asyncpg.Pool) -> None:
    await migrate(pool, "demo", None)
    assert set(await columns(pool, "audit_log")) == {
        "id", "at", "service", "actor", "action", "thread", "details", "trace_id"
    }  # fmt: skip
    tp = new_traceparent()
    token = current_traceparent.set(tp)
    try:
        await audit(pool, service="router", action="routed", thread="1555", details={"rule": "draft"})
    finally:
        current_traceparent.reset(token)
    row = await pool.fetchrow("SELECT * FROM audit_log")
    assert row["details"] == {"rule": "draft"} and row["actor"] == "SYSTEM"
    assert row["trace_id"] == trace_id_of(tp)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("UPDATE audit_log SET action = 'x'")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("DELETE FROM audit_log")
    with pytest.raises(asyncpg.CheckViolationError):
        await audit(pool, service="router", action="x", actor="ROBOT")


def test_named_queries(tmp_path: Path) -> None:
    path = tmp_path / "q.sql"
    path.write_text("-- name: one\nSELECT 1;\n\n-- name: two\nSELECT $1::int\n  + 1;\n")
    q = load_queries(path)
    assert q.one == "SELECT 1" and q.two == "SELECT $1::int\n  + 1"
    assert q.names == ["one", "two"]
    with pytest.raises(AttributeError, match="no query named 'three'"):
        _ = q.three
    path.write_text("-- name: one\nSELECT 1;\n-- name: one\nSELECT 2;\n")
    with pytest.raises(ValueError, match="defined twice"):
        load_queries(path)


def test_a_query_written_with_names_loads_bound_by_name(tmp_path: Path) -> None:
    path = tmp_path / "q.sql"
    path.write_text(
        "-- name: positional\nSELECT $1::text, '{:x}', now()::date;\n\n"
        "-- name: by_name\nUPDATE t SET a = :a::int WHERE id = :id;\n"
    )
    q = load_queries(path)
    assert q.positional == "SELECT $1::text, '{:x}', now()::date"  # casts and literals are no names
    assert isinstance(q.by_name, NamedQuery)
    assert q.by_name.sql == "UPDATE t SET a = $1::int WHERE id = $2" and q.by_name.names == ("a", "id")
    path.write_text("-- name: mixed\nSELECT :a, $2;\n")
    with pytest.raises(ValueError, match=r"query 'mixed': .*\$n"):
        load_queries(path)


def test_named_query_numbers_each_name_once() -> None:
    q = NamedQuery(
        "-- note: :not_a_param\n"
        "UPDATE t SET a = :a, b = ':literal', c = :c::text WHERE id = :id AND a <> :a"
    )
    assert q.sql == (
        "-- note: :not_a_param\n"
        "UPDATE t SET a = $1, b = ':literal', c = $2::text WHERE id = $3 AND a <> $1"
    )
    assert q.names == ("a", "c", "id")
    assert q.bind({"id": 7, "c": "x", "a": 1}) == (1, "x", 7)


def test_named_query_binds_a_struct_and_refuses_mistakes() -> None:
    class Row(msgspec.Struct):
        id: int
        a: int
        c: str
        unused: bool = False

    q = NamedQuery("SELECT :a, :c, :id")
    assert q.bind(Row(id=7, a=1, c="x")) == (1, "x", 7)
    with pytest.raises(KeyError, match="idd"):
        q.bind({"idd": 7, "a": 1, "c": "x"})  # a typo is not silently ignored
    with pytest.raises(KeyError):
        q.bind({"a": 1, "c": "x"})
    with pytest.raises(ValueError, match=r"\$n"):
        NamedQuery("SELECT :a, $2")


def test_named_query_binds_given_names_over_the_object() -> None:
    class Row(msgspec.Struct):
        id: int
        a: int

    q = NamedQuery("SELECT :a, :c, :id")
    assert q.bind(Row(id=7, a=1), c="x", a=2) == (2, "x", 7)
    assert q.bind({"id": 7, "a": 1}, c="x") == (1, "x", 7)
    with pytest.raises(KeyError, match="cc"):
        q.bind(Row(id=7, a=1), c="x", cc="y")  # a typo in a given name is refused too


async def test_named_query_runs_on_postgres(pool: asyncpg.Pool) -> None:
    q = NamedQuery("SELECT :greeting || ' ' || :name::text || ' ' || :greeting")
    assert await pool.fetchval(q.sql, *q.bind({"name": "Ada", "greeting": "hi"})) == "hi Ada hi"


def test_no_code_leaves_session_state_on_a_pooled_connection() -> None:
    """The pool skips asyncpg's RESET ALL on release (libs/db.py, _no_session_state): that is
    only safe while nothing sets session state. Session SETs, LISTEN and session advisory
    locks (outside the migration lock, which releases in a finally) are refused here."""
    import re

    root = Path(__file__).resolve().parents[2]
    session_set = re.compile(r"""["']\s*SET\s+(?!LOCAL\b)(?:SESSION\s+)?[a-z_]+\s*(?:=|TO)\s""", re.I)
    listen = re.compile(r"""["']\s*LISTEN\s""", re.I)
    session_lock = re.compile(r"pg_advisory_lock\(")
    found = []
    for path in [*root.glob("libs/**/*.py"), *root.glob("services/**/*.py"), *root.glob("services/**/*.sql")]:
        text = path.read_text()
        for pattern in (session_set, listen, session_lock):
            for match in pattern.finditer(text):
                if path.name == "db.py" and pattern is session_lock:
                    continue
                found.append(f"{path.relative_to(root)}: {match.group(0)!r}")
    assert found == []


async def test_releasing_a_connection_sends_nothing_and_leaves_no_transaction(database_url: str) -> None:
    # libs.db.create_pool: no reset query on release (one round trip less per unit of work);
    # an open transaction is still rolled back (asyncpg does that before the reset hook).
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid() /* last statement */")
        # Released (the release awaited any reset): another session sees what it last ran.
        seen = await asyncpg.connect(database_url)
        try:
            last = await seen.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
        finally:
            await seen.close()
        assert last == "SELECT pg_backend_pid() /* last statement */"
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await conn.execute("SET LOCAL statement_timeout = 1234")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SHOW statement_timeout") == "0"
    finally:
        await pool.close()


async def test_unflushed_commit_is_for_its_transaction_only(pool: asyncpg.Pool) -> None:
    await pool.execute("CREATE TABLE notes (n INT)")
    async with pool.acquire() as conn:
        async with unflushed_commit(conn):
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
            await conn.execute("INSERT INTO notes VALUES (1)")
        # Committed (visible at once, to everyone), and the session is back to the default.
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
    assert await pool.fetchval("SELECT count(*) FROM notes") == 1
