"""`replyline dev` as a user runs it: embedded NATS + Postgres, five services, Ctrl-C.

Runs the real launcher in a subprocess with an empty data folder, texts it with
`replyline sms`, waits for the owner prompt printed by the console transport,
then sends SIGINT and checks that everything (services, nats-server, Postgres)
stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from libs.embedded import free_port
from services import SERVICES
from tests.harness import eventually_sync

ROOT = Path(__file__).resolve().parent.parent


class Output:
    """The launcher's output, read by a thread so the pipe never fills up."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        with contextlib.suppress(OSError, ValueError):  # a test closed the pipe
            for line in proc.stdout:
                with self._cond:
                    self.lines.append(line)
                    self._cond.notify_all()

    def wait_for(self, *needles: str, timeout: float) -> str:
        """The first line holding every one of ``needles``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if all(needle in line for needle in needles):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "".join(self.lines[-40:])
                    raise AssertionError(f"{needles!r} not printed within {timeout}s:\n{tail}")
                self._cond.wait(left)


def test_dev_runs_the_whole_loop_and_stops_cleanly(tmp_path: Path) -> None:
    http_port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PYTHONPATH": str(ROOT),
        "REPLYLINE_HTTP_PORT": str(http_port),
        "REPLYLINE_DEV_NATS_PORT": str(free_port()),
        # The loop must finish now, whatever the time of day in New York.
        "REPLYLINE_QUIET_HOURS_START": "00:00",
        "REPLYLINE_QUIET_HOURS_END": "00:00",
        # The draft at once, not after the burst debounce (20 s by default).
        "REPLYLINE_BURST_DEBOUNCE_S": "0",
    }
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "replyline", "dev", "--data-dir", str(data), "--no-color"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = Output(proc)
    try:
        out.wait_for("Ctrl-C stops everything", timeout=90)
        out.wait_for("dashboard:", "/dashboard", timeout=5)
        for name in SERVICES:
            out.wait_for("service_ready", f"service={name}", timeout=60)
        sms = subprocess.run(
            [sys.executable, "-m", "replyline", "sms", "--url", f"http://127.0.0.1:{http_port}",
             "--from", "+15551234567", "Hi, how much does drain cleaning cost?"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert sms.returncode == 0, sms.stdout + sms.stderr
        prompt = out.wait_for("console_send", "body='Draft #", timeout=60)
        assert "to=+15550000001" in prompt and "Reply YES" in prompt
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("nats-server" in " ".join(c.cmdline()) for c in children)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    assert code == 0
    out.wait_for("dev       | stopped", timeout=5)
    for name in SERVICES:
        out.wait_for("service_stopped", f"service={name}", timeout=5)
    # Nothing outlives the launcher: not a service, not nats-server, not Postgres.
    leftovers = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and str(data) in " ".join(p.info["cmdline"])
    ]
    assert leftovers == []


def _alive(proc: psutil.Process) -> bool:
    # A dead child of a dead launcher may stay a zombie until init reaps it.
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[str]:
    """The command lines of ``procs`` still alive after ``timeout`` ([] once all are gone)."""
    with contextlib.suppress(AssertionError):  # the survivors, listed below, say more than a timeout
        eventually_sync(lambda: not any(_alive(p) for p in procs), timeout=timeout, interval=0.1)
    left = []
    for p in procs:
        if _alive(p):
            with contextlib.suppress(psutil.Error):
                left.append(" ".join(p.cmdline()))
    return left


def _using(data: Path) -> list[psutil.Process]:
    """Every process whose command line names the data folder (nats-server, Postgres)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if p.info["cmdline"] and str(data) in " ".join(p.info["cmdline"]):
            found.append(p)
    return found


def _start_dev(tmp_path: Path) -> tuple[subprocess.Popen[str], Output, Path]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PYTHONPATH": str(ROOT),
        "REPLYLINE_HTTP_PORT": str(free_port()),
        "REPLYLINE_DEV_NATS_PORT": str(free_port()),
    }
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "replyline", "dev", "--data-dir", str(data), "--no-color"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    out = Output(proc)
    out.wait_for("Ctrl-C stops everything", timeout=90)
    for name in SERVICES:
        out.wait_for("service_ready", f"service={name}", timeout=60)
    return proc, out, data


def test_kill_9_of_the_launcher_leaves_no_process_behind(tmp_path: Path) -> None:
    proc, _, data = _start_dev(tmp_path)
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
        # Read now: once the launcher is killed its children die and, as zombies, have
        # no command line left to read.
        cmdlines = {c.pid: " ".join(c.cmdline()) for c in children}
        names = " ".join(cmdlines.values())
        assert "nats-server" in names and names.count("-m services.") == 5, names
        postgres = [p for p in _using(data) if "nats-server" not in " ".join(p.cmdline())]
        assert postgres, "the embedded Postgres is running"
        reaper = [c for c in children if "replyline.commands.reaper" in cmdlines[c.pid]]
    finally:
        proc.kill()  # SIGKILL: no clean-up code of the launcher runs
        proc.wait(timeout=10)
    # The five services and nats-server die with it (PR_SET_PDEATHSIG, then the reaper).
    # The reaper itself is a child too: it lives until it has stopped Postgres.
    assert len(reaper) == 1, names
    assert _wait_gone([c for c in children if c not in reaper], timeout=5) == []
    # Postgres (daemonized by pg_ctl) is stopped by the reaper, which then exits.
    assert _wait_gone(postgres, timeout=15) == []
    assert _wait_gone(reaper, timeout=5) == []


def test_a_closed_stdout_still_stops_everything(tmp_path: Path) -> None:
    """`./bin/dev | tee log`, then Ctrl-C: tee is gone before the launcher prints its goodbyes."""
    proc, _, data = _start_dev(tmp_path)
    children = psutil.Process(proc.pid).children(recursive=True)
    # Close the read end while the reader thread is blocked on it: the launcher's
    # next write fails with EPIPE (nobody reads the pipe any more).
    os.close(proc.stdout.fileno())  # type: ignore[union-attr]
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=60)
    assert code in (0, 1), code
    assert _wait_gone(children, timeout=5) == []
    assert _wait_gone(_using(data), timeout=15) == []
