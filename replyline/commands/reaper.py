"""The dev launcher's reaper: stops what `replyline dev` started if the launcher dies uncleanly.

On Linux the children also get PR_SET_PDEATHSIG (libs.embedded.die_with_parent);
this process is the fallback that works everywhere and the only thing that stops
the embedded Postgres (pg_ctl daemonizes it, so no death signal reaches it).

The launcher starts ``python -m replyline.commands.reaper`` in its own session
with a pipe as stdin and writes one line per change:

    pid <n>     a child (session leader: its process group is <n>) to stop
    gone <n>    that child exited (its pid may be reused: forget it)
    pg <dir>    the embedded Postgres data directory to stop
    done        the launcher cleaned up itself: exit without doing anything

End of input without ``done`` means the launcher died (kill -9, crash): every
group gets SIGTERM, then SIGKILL after a short grace, then Postgres is stopped.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

GRACE_S = 3.0


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _stop_postgres(data_dir: Path, timeout_s: float = 10.0) -> None:
    """Fast shutdown by signal, as pg_ctl does it: SIGINT to the postmaster, SIGQUIT if it lingers.

    Signalling the pid in ``postmaster.pid`` needs no import and no helper process, so it
    still works on a machine too loaded to start pg_ctl in time.
    """
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return  # not running (or never started)
    for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGQUIT, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
    print(f"reaper: postgres {pid} in {data_dir} did not stop", file=sys.stderr)


def reap(pids: set[int], pg_dirs: list[Path], grace_s: float = GRACE_S) -> None:
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    _signal_all({p for p in pids if _alive(p)}, signal.SIGKILL)
    for data_dir in pg_dirs:
        _stop_postgres(data_dir)


def main() -> int:
    # Ctrl-C or a hang-up meant for the launcher must not stop the reaper.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    pids: set[int] = set()
    pg_dirs: list[Path] = []
    for line in sys.stdin:
        kind, _, value = line.strip().partition(" ")
        if kind == "done":
            return 0
        if kind == "pid":
            pids.add(int(value))
        elif kind == "gone":
            pids.discard(int(value))
        elif kind == "pg":
            pg_dirs.append(Path(value))
    print(f"reaper: the launcher died; stopping {sorted(pids)} and {len(pg_dirs)} Postgres", file=sys.stderr)
    reap(pids, pg_dirs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
