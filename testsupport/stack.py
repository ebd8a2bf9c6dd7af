"""Real servers and real service processes for the benchmarks and the fault suite.

``Infra`` is a private nats-server and Postgres (the same wheels ``replyline dev``
uses) in a temporary folder. ``ServiceProcess`` runs ``python -m services.<name>``
as a child process configured only through ``REPLYLINE_*`` variables, waits for
its ``/health/ready``, and can SIGKILL and restart it, so faults hit the real
entry points exactly as a deployment runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import asyncpg
import nats

from libs.embedded import EmbeddedNats, EmbeddedNatsCluster, EmbeddedPostgres, free_port, with_database
from libs.settings import nats_servers
from services import SERVICES

REPO = Path(__file__).resolve().parent.parent
#: Start order: consumers before the front door (ingest), so nothing waits on a missing durable.
START_ORDER = (*(s for s in SERVICES if s != "ingest"), "ingest")

OWNER = "+15550000001"
BUSINESS = "+15550000000"
AUTH_TOKEN = "bench-auth-token-7a41c0de"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
#: What Twilio would call: ingest checks signatures against this, never its own address.
PUBLIC_BASE_URL = "https://replyline-bench.example.com"


class Infra:
    """nats-server + Postgres (one database shared by all service slices) in a temp folder."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="replyline-bench-"))
        self.nats = EmbeddedNats(self.root / "nats")
        self.pg = EmbeddedPostgres(self.root / "pg")
        self.database_url = ""

    @property
    def nats_url(self) -> str:
        """What the services get as REPLYLINE_NATS_URL."""
        return self.nats.url

    async def _start_nats(self) -> None:
        await asyncio.to_thread(self.nats.start)

    def _stop_nats(self) -> None:
        self.nats.stop()

    async def start(self, database: str = "replyline") -> None:
        await self._start_nats()
        await asyncio.to_thread(self.pg.start)
        conn = await asyncpg.connect(self.pg.url)
        try:
            await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()
        self.database_url = with_database(self.pg.url, database)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.pg.stop()
        with contextlib.suppress(Exception):
            self._stop_nats()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class ClusterInfra(Infra):
    """Like :class:`Infra`, with a JetStream cluster of ``size`` nats-servers on loopback.

    ``nats_url`` lists every node; ``cluster`` kills and restarts single nodes.
    (The inherited single-server ``nats`` is never started.)
    """

    def __init__(self, root: Path | None = None, size: int = 3) -> None:
        super().__init__(root)
        self.cluster = EmbeddedNatsCluster(self.root, size)

    @property
    def nats_url(self) -> str:
        return self.cluster.url

    async def _start_nats(self) -> None:
        await asyncio.to_thread(self.cluster.start)
        await wait_jetstream(self.nats_url, timeout=60.0)

    def _stop_nats(self) -> None:
        self.cluster.stop()


async def wait_jetstream(url: str, timeout: float) -> None:
    """Until JetStream answers API calls (a cluster has elected its meta leader)."""

    async def quiet(exc: Exception) -> None:
        pass

    nc = await nats.connect(nats_servers(url), error_cb=quiet, max_reconnect_attempts=-1)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        while True:
            try:
                await js.account_info()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.25)
    finally:
        await nc.close()


def child_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment without any REPLYLINE_* of the developer, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLYLINE_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(overrides)
    return env


def common_env(infra: Infra, **extra: str) -> dict[str, str]:
    env = {
        "REPLYLINE_NATS_URL": infra.nats_url,
        "REPLYLINE_DATABASE_URL": infra.database_url,
        "REPLYLINE_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "REPLYLINE_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "REPLYLINE_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "REPLYLINE_OWNER_NUMBERS": OWNER,
        "REPLYLINE_BUSINESS_NUMBER": BUSINESS,
        "REPLYLINE_LOG_LEVEL": "WARNING",
        "REPLYLINE_LOG_FORMAT": "json",
    }
    env.update(extra)
    return env


class ServiceProcess:
    """One service as a child process; logs go to ``<log_dir>/<name>.log`` (appended)."""

    def __init__(self, name: str, env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.health_port = free_port()
        self.env = dict(env)
        self.env["REPLYLINE_HEALTH_PORT"] = str(self.health_port)
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        log.write(f"--- start #{self.starts + 1} at {time.time():.3f}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            cwd=REPO,
            env=child_env(self.env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.starts += 1

    async def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until ``/health/ready`` answers 200; raises if the process dies first."""
        started = time.monotonic()
        url = f"http://127.0.0.1:{self.health_port}/health/ready"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                if not self.alive():
                    raise RuntimeError(f"{self.name} exited during start-up; see {self.log_path}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            return time.monotonic() - started
                if time.monotonic() - started > timeout:
                    raise TimeoutError(f"{self.name} not ready in {timeout}s; see {self.log_path}")
                await asyncio.sleep(0.05)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    async def stop(self, grace: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(self.proc.wait), grace)
            except TimeoutError:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    async def restart_after_kill(self, timeout: float = 60.0) -> float:
        self.kill9()
        self.start()
        return await self.wait_ready(timeout)


class Stack:
    """Several services over one Infra; ``per_service`` adds variables to one service."""

    def __init__(
        self,
        infra: Infra,
        services: tuple[str, ...] | list[str],
        per_service: Mapping[str, Mapping[str, str]] | None = None,
        common: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.infra = infra
        self.log_dir = log_dir or infra.root / "logs"
        self.procs: dict[str, ServiceProcess] = {}
        base = common_env(infra, **dict(common or {}))
        for name in [s for s in START_ORDER if s in services]:
            env = {**base, **dict((per_service or {}).get(name, {}))}
            self.procs[name] = ServiceProcess(name, env, self.log_dir)

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.procs[name]

    async def start(self, timeout: float = 90.0) -> dict[str, float]:
        """Start in dependency order, one at a time (migrations take an advisory lock anyway)."""
        ready: dict[str, float] = {}
        for name, proc in self.procs.items():
            proc.start()
            ready[name] = await proc.wait_ready(timeout)
        return ready

    async def stop(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        for name in reversed(list(self.procs)):
            codes[name] = await self.procs[name].stop()
        return codes

    def crashed(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.proc is not None and not p.alive()]


def cleanup(work: Path, ok: bool) -> None:
    """Delete a run's folder (servers' data, service logs) unless the run failed."""
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"run failed: servers' data and service logs kept in {work}", flush=True)


def ingest_env(port: int, **extra: str) -> dict[str, str]:
    return {"REPLYLINE_HTTP_PORT": str(port), **extra}
