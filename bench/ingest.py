"""Ingest benchmark: signed Twilio webhooks per second through the real ingest service.

    python -m bench.ingest            # ~2 minutes; wrk is apt-installed on first use

What runs: a private nats-server and Postgres, ``python -m services.ingest`` as a
child process (signature check, Postgres row + audit, JetStream publish acked,
commit, per request), and the baseline ``bench/baselines/flask_sqlite.py`` under
gunicorn with 2 sync workers. Every request is a distinct pre-generated, signed
inbound SMS (unique MessageSid), so each one is a real new message; afterwards the
stored rows are counted against the 200s.

Figures: peak throughput with wrk (closed loop, C), and latency p50/p99 at a fixed
open-loop rate (bench/openloop.py, separate process, latency from the scheduled
send time) for ingest and the baseline, plus the ratio ingest/baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.cpu import CpuWindow, children_of
from bench.stats import RESULTS_DIR, say, verdict, write_result
from bench.wrk import WrkResult, ensure_wrk, run_wrk
from libs.embedded import free_port, wait_for_port
from testsupport.stack import (
    AUTH_TOKEN,
    PUBLIC_BASE_URL,
    Infra,
    ServiceProcess,
    cleanup,
    common_env,
    ingest_env,
)
from testsupport.stack_webhooks import SMS_PATH, signed_inbound, write_wrk_file

TARGET_RATE = 3000.0
TARGET_RATIO = 4.0
TARGET_P99_MS = 20.0


def request_file(count: int, workdir: Path, label: str) -> Path:
    """``count`` fresh signed webhooks (new MessageSids every run)."""
    path = workdir / f"{label}.tsv"
    started = time.monotonic()
    write_wrk_file(signed_inbound(count), path)
    say(f"generated {count} signed webhooks for {label} in {time.monotonic() - started:.1f}s")
    return path


async def stored_rows(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM inbound_messages"))
    finally:
        await conn.close()


def baseline_rows(db: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM inbound_messages").fetchone()[0])
    finally:
        conn.close()


def open_loop(port: int, requests: Path, rate: float, duration: float, out: Path) -> dict[str, Any]:
    subprocess.run(
        [sys.executable, "-m", "bench.openloop", "--port", str(port), "--rate", str(rate),
         "--duration", str(duration), "--requests", str(requests), "--out", str(out)],
        check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def wrk_dict(r: WrkResult) -> dict[str, Any]:
    return {
        "requests": r.requests, "seconds": round(r.seconds, 2), "non_2xx": r.non_2xx,
        "socket_errors": r.socket_errors, "rate_2xx_per_s": round(r.rate, 1),
        "closed_loop_p50_ms": r.p50_ms, "closed_loop_p99_ms": r.p99_ms,
        "wraparounds": r.wraparounds,
    }  # fmt: skip


def profile_cmd(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy (sampling, no restart needed) over the running ingest; collapsed stacks."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        sys.exit(f"--profile needs py-spy next to {sys.executable}: pip install py-spy")
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(seconds)),
         "--format", "raw", "--rate", "200", "--nonblocking", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def bench_ingest(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    infra = Infra(work / "infra")
    say("starting nats-server and Postgres")
    await infra.start()
    port = free_port()
    env = common_env(
        infra,
        **ingest_env(
            port,
            REPLYLINE_DB_POOL_MAX=str(args.pool),
            REPLYLINE_LOG_LEVEL="ERROR",
            # Several processes on the one port: port sharing must be asked for.
            REPLYLINE_HTTP_REUSE_PORT="true" if args.ingest_procs > 1 else "false",
            REPLYLINE_EVENT_LOOP=args.event_loop,
        ),
    )
    procs = [ServiceProcess("ingest", env, work / "logs") for _ in range(args.ingest_procs)]
    ingest = procs[0]
    result: dict[str, Any] = {}
    try:
        for proc in procs:
            proc.start()
            took = await proc.wait_ready()
            say(f"ingest ready in {took:.1f}s (pid {proc.pid}, http port {port})")
        url = f"http://127.0.0.1:{port}"
        warm = request_file(args.warmup_requests, work, "ingest-warmup")
        say("warm-up (3 s)")
        run_wrk(url, SMS_PATH, warm, duration_s=3, connections=args.connections, workdir=work)
        before = await stored_rows(infra.database_url)
        reqs = request_file(args.requests, work, "ingest-peak")
        say(f"peak: wrk -c{args.connections} for {args.duration:.0f}s")
        prof = None
        if args.profile:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            assert ingest.pid is not None
            prof = profile_cmd(ingest.pid, args.duration, RESULTS_DIR / "ingest-profile.txt")
        window = CpuWindow(
            {"ingest": [p.pid for p in procs if p.pid],
             "nats-server": [infra.nats.proc.pid] if infra.nats.proc else []},
            pg_data=infra.pg.data_dir,
        )  # fmt: skip
        window.begin()
        peak = run_wrk(
            url, SMS_PATH, reqs, duration_s=args.duration, connections=args.connections,
            workdir=work,
        )  # fmt: skip
        cpu = window.end(peak.requests - peak.non_2xx, "req")
        if prof is not None:
            prof.wait(timeout=60)
        stored = await stored_rows(infra.database_url) - before
        say(
            f"ingest peak: {peak.rate:.0f} req/s, stored {stored} new rows for "
            f"{peak.requests - peak.non_2xx} 2xx"
        )
        result["peak"] = {**wrk_dict(peak), "new_rows_stored": stored, "cpu": cpu}
        say(
            f"CPU ms per request: {cpu['cpu_ms_per_req']}; other work on the machine: "
            f"{cpu['cpu_s_other_work']} of {cpu['cpu_s_machine_capacity']} CPU s"
        )
        result["open_loop_other_rates"] = []
        for n, rate in enumerate(args.rate):
            ol_reqs = request_file(int(rate * args.ol_duration), work, f"ingest-openloop-{n}")
            say(f"open loop: {rate:.0f} req/s for {args.ol_duration:.0f}s")
            ol = open_loop(port, ol_reqs, rate, args.ol_duration, work / f"ingest-ol-{n}.json")
            say(
                f"ingest open loop {rate:.0f}/s: p50 {ol['latency']['p50_ms']} ms, "
                f"p99 {ol['latency']['p99_ms']} ms"
            )
            if n == 0:
                result["open_loop"] = ol
            else:
                result["open_loop_other_rates"].append(ol)
            await asyncio.sleep(2)  # let a backlog from an overloaded rate drain
        result["crashed"] = [p.pid for p in procs if not p.alive()]
    finally:
        for proc in procs:
            await proc.stop()
        infra.stop()
    return result


def start_gunicorn(port: int, db: Path, work: Path) -> subprocess.Popen[bytes]:
    env = {
        "BASELINE_DB": str(db), "BASELINE_AUTH_TOKEN": AUTH_TOKEN,
        "BASELINE_PUBLIC_URL": PUBLIC_BASE_URL, "PYTHONPATH": str(Path.cwd()),
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
    }  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{port}",
         "--log-level", "warning", "bench.baselines.flask_sqlite:app"],
        env=env, stdout=subprocess.DEVNULL, stderr=(work / "gunicorn.log").open("wb"),
    )  # fmt: skip


async def bench_baseline(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    port = free_port()
    db = work / "baseline.sqlite"
    gunicorn = start_gunicorn(port, db, work)
    result: dict[str, Any] = {}
    try:
        await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 30)
        url = f"http://127.0.0.1:{port}"
        warm = request_file(min(args.warmup_requests, 3000), work, "baseline-warmup")
        say("baseline warm-up (3 s)")
        run_wrk(url, SMS_PATH, warm, duration_s=3, connections=args.connections, workdir=work)
        before = baseline_rows(db)
        reqs = request_file(args.baseline_requests, work, "baseline-peak")
        say(f"baseline peak: wrk -c{args.connections} for {args.duration:.0f}s")
        window = CpuWindow({"gunicorn": [gunicorn.pid, *children_of(gunicorn.pid)]})
        window.begin()
        peak = run_wrk(
            url, SMS_PATH, reqs, duration_s=args.duration, connections=args.connections,
            workdir=work,
        )  # fmt: skip
        cpu = window.end(peak.requests - peak.non_2xx, "req")
        stored = baseline_rows(db) - before
        say(f"baseline peak: {peak.rate:.0f} req/s, stored {stored} new rows")
        result["peak"] = {**wrk_dict(peak), "new_rows_stored": stored, "cpu": cpu}
        if not args.skip_baseline_open_loop:
            rate = args.rate[0]
            ol_reqs = request_file(int(rate * args.ol_duration), work, "baseline-openloop")
            say(f"baseline open loop: {rate:.0f} req/s for {args.ol_duration:.0f}s")
            ol = open_loop(port, ol_reqs, rate, args.ol_duration, work / "baseline-ol.json")
            say(f"baseline open loop: p50 {ol['latency']['p50_ms']} ms, p99 {ol['latency']['p99_ms']} ms")
            result["open_loop"] = ol
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=15)
    return result


def report(ingest: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    rate = ingest["peak"]["rate_2xx_per_s"]
    base_rate = baseline["peak"]["rate_2xx_per_s"]
    ratio = rate / base_rate if base_rate else float("inf")
    p99 = ingest["open_loop"]["latency"]["p99_ms"]
    print("\n== ingest: signed Twilio webhooks (2 cores, loopback) ==")
    print(
        f"peak throughput   ingest   {rate:8.0f} req/s   (target >= {TARGET_RATE:.0f}: "
        f"{verdict(rate, TARGET_RATE, higher_is_better=True)})"
    )
    print(f"                  baseline {base_rate:8.0f} req/s   (Flask + SQLite, 2 sync workers)")
    print(
        f"                  ratio    {ratio:8.2f}x        (target >= {TARGET_RATIO:.0f}x: "
        f"{verdict(ratio, TARGET_RATIO, higher_is_better=True)})"
    )
    lat = ingest["open_loop"]["latency"]
    print(
        f"open loop {ingest['open_loop']['rate_target']:.0f}/s  ingest   p50 {lat['p50_ms']:.1f} ms"
        f"  p99 {lat['p99_ms']:.1f} ms  max {lat['max_ms']:.1f} ms  statuses "
        f"{ingest['open_loop']['statuses']}  (p99 target < {TARGET_P99_MS:.0f} ms: "
        f"{verdict(p99, TARGET_P99_MS, higher_is_better=False)})"
    )
    for label, part in (("ingest", ingest), ("baseline", baseline)):
        cpu = part["peak"].get("cpu")
        if cpu:
            per = {k: v for k, v in cpu["cpu_ms_per_req"].items() if not k.startswith("bench")}
            print(
                f"CPU per request   {label:8s} "
                + ", ".join(f"{k} {v:.2f} ms" for k, v in per.items())
                + f"; other work on the machine took {cpu['cpu_s_other_work']:.1f}"
                f" of {cpu['cpu_s_machine_capacity']:.1f} CPU s"
            )
    for other in ingest.get("open_loop_other_rates", []):
        o = other["latency"]
        print(
            f"open loop {other['rate_target']:.0f}/s  ingest   p50 {o['p50_ms']:.1f} ms  "
            f"p99 {o['p99_ms']:.1f} ms  max {o['max_ms']:.1f} ms  statuses {other['statuses']}"
        )
    if "open_loop" in baseline:
        bl = baseline["open_loop"]["latency"]
        print(
            f"                  baseline p50 {bl['p50_ms']:.1f} ms  p99 {bl['p99_ms']:.1f} ms"
            f"  max {bl['max_ms']:.1f} ms  statuses {baseline['open_loop']['statuses']}"
        )
    return {
        "ingest_rate": rate, "baseline_rate": base_rate, "ratio": round(ratio, 2),
        "ingest_open_loop_p50_ms": lat["p50_ms"], "ingest_open_loop_p99_ms": p99,
        "targets": {"rate": TARGET_RATE, "ratio": TARGET_RATIO, "p99_ms": TARGET_P99_MS},
        "met": {
            "rate": rate >= TARGET_RATE, "ratio": ratio >= TARGET_RATIO, "p99": p99 < TARGET_P99_MS,
        },
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--duration", type=float, default=10.0, help="seconds of peak load (wrk)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections")
    p.add_argument(
        "--requests",
        type=int,
        default=40000,
        help="pre-generated webhooks for the ingest peak run (more than it can send)",
    )
    p.add_argument("--baseline-requests", type=int, default=15000)
    p.add_argument("--warmup-requests", type=int, default=8000)
    p.add_argument(
        "--rate",
        type=float,
        nargs="+",
        default=[1000.0, 500.0],
        help="open-loop rates, req/s; the first is the target's (1,000) and the "
        "only one also run against the baseline",
    )
    p.add_argument("--ol-duration", type=float, default=10.0, help="open-loop seconds")
    p.add_argument("--pool", type=int, default=20, help="ingest REPLYLINE_DB_POOL_MAX")
    p.add_argument(
        "--ingest-procs",
        type=int,
        default=1,
        help="ingest processes on the one port (sets REPLYLINE_HTTP_REUSE_PORT; "
        "see docs/benchmarks.md)",
    )
    p.add_argument(
        "--event-loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="ingest's REPLYLINE_EVENT_LOOP (the default is production's)",
    )
    p.add_argument("--skip-baseline", action="store_true", help="measure ingest only")
    p.add_argument("--skip-baseline-open-loop", action="store_true")
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the ingest process during the peak run "
        "(bench/results/ingest-profile.txt, collapsed stacks)",
    )
    args = p.parse_args(argv)
    ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="replyline-bench-ingest-"))
    started = time.monotonic()
    ok = False
    try:
        ingest = asyncio.run(bench_ingest(args, work))
        baseline = {} if args.skip_baseline else asyncio.run(bench_baseline(args, work))
        ok = True
    finally:
        cleanup(work, ok)
    out: dict[str, Any] = {"ingest": ingest, "baseline": baseline,
                           "settings": vars(args) | {"work_dir": str(work)}}  # fmt: skip
    if baseline:
        out["summary"] = report(ingest, baseline)
    else:
        print(json.dumps(ingest, indent=2))
    out["wall_seconds"] = round(time.monotonic() - started, 1)
    path = write_result("ingest", out)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
