"""Real servers for the tests.

Once per session: a nats-server (random port, temporary store) and a Postgres
(pgserver, one template database). Per test: a fresh database cloned from the
template and a fresh namespace, so streams and subjects never collide and tests
can run in parallel against one server. ``REPLYLINE_TEST_NATS_URL`` and
``REPLYLINE_TEST_DATABASE_URL`` point the tests at existing servers instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from libs.bus import Bus
from libs.db import create_pool
from libs.embedded import EmbeddedNats, EmbeddedPostgres, with_database
from libs.logging import configure
from libs.settings import CommonSettings, load
from tests.harness import EventCollector

S = TypeVar("S", bound=CommonSettings)
TEMPLATE_DB = "replyline_template"

configure("tests", level=os.environ.get("REPLYLINE_TEST_LOG_LEVEL", "INFO"), fmt="console")


@contextlib.contextmanager
def _private_dir(kind: str) -> Iterator[Path]:
    # Not tmp_path_factory: pytest prunes old basetemp folders, and a concurrent
    # pytest run would delete a live server's data from under it.
    path = Path(tempfile.mkdtemp(prefix=f"replyline-test-{kind}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def nats_server() -> Iterator[EmbeddedNats | None]:
    """The session's own nats-server, or None when REPLYLINE_TEST_NATS_URL names one."""
    if os.environ.get("REPLYLINE_TEST_NATS_URL"):
        yield None
        return
    with _private_dir("nats") as store:
        server = EmbeddedNats(store)
        server.start()
        yield server
        server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: EmbeddedNats | None) -> str:
    return nats_server.url if nats_server else os.environ["REPLYLINE_TEST_NATS_URL"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres | None]:
    if os.environ.get("REPLYLINE_TEST_DATABASE_URL"):
        yield None
        return
    with _private_dir("pg") as data:
        server = EmbeddedPostgres(data)
        server.start()
        yield server
        server.stop()


@pytest.fixture(scope="session")
def pg_admin_url(pg_server: EmbeddedPostgres | None) -> str:
    """A DSN to a database we may CREATE DATABASE from."""
    return pg_server.url if pg_server else os.environ["REPLYLINE_TEST_DATABASE_URL"]


@pytest.fixture(scope="session")
def _template_ready(pg_admin_url: str) -> str:
    import asyncio

    async def create() -> None:
        conn = await asyncpg.connect(pg_admin_url)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", TEMPLATE_DB)
            if not exists:
                try:
                    await conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
                except asyncpg.DuplicateDatabaseError:
                    pass  # another test session created it first
        finally:
            await conn.close()

    asyncio.run(create())
    return TEMPLATE_DB


@pytest.fixture
async def database_url(pg_admin_url: str, _template_ready: str) -> AsyncIterator[str]:
    """A fresh database for this test, cloned from the (empty) template."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(pg_admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_template_ready}"')
    finally:
        await conn.close()
    yield with_database(pg_admin_url, name)
    conn = await asyncpg.connect(pg_admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_settings(nats_url: str, database_url: str, namespace: str) -> Callable[..., Any]:
    """Build any service's settings pointed at this test's servers, namespace and database.

    The process environment is ignored so a developer's REPLYLINE_* variables never leak in.
    """

    def make(cls: type[S] = CommonSettings, **overrides: Any) -> S:  # type: ignore[assignment]
        base: dict[str, Any] = {
            "nats_url": nats_url,
            "database_url": database_url,
            "namespace": namespace,
            "ack_wait_s": 5.0,
            "backoff_s": [0.2, 0.5, 1.0],
            "max_deliver": 4,
            "drain_grace_s": 5.0,
            "log_format": "console",
        }
        if "burst_debounce_s" in getattr(cls, "__struct_fields__", ()):
            # The drafter drafts every message at once unless a test is about bursts
            # (production waits for the lead's burst: docs/drafter.md, "Bursts").
            base["burst_debounce_s"] = 0.0
        base.update(overrides)
        return load(cls, env={}, overrides=base)

    return make


@pytest.fixture
async def bus(make_settings: Callable[..., CommonSettings]) -> AsyncIterator[Bus]:
    b = await Bus.connect(make_settings(), "tests")
    await b.ensure_streams()
    yield b
    await b.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(database_url)
    yield p
    await p.close()


@pytest.fixture
async def collector(bus: Bus) -> AsyncIterator[EventCollector]:
    """Every event published in this test's namespace."""
    c = await EventCollector(bus, f"{bus.prefix}>").start()
    yield c
    await c.stop()


REPO_ROOT = Path(__file__).resolve().parent.parent
