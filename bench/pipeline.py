"""Pipeline benchmark: inbound messages per second from the Twilio webhook to draft.created.

    python -m bench.pipeline

All five services run as child processes (``python -m services.<name>``) on a
private nats-server and Postgres; the drafter drafts from the business profile's
templates (no LLM endpoint) and the sender uses its console transport (no Twilio).
Each message is a new lead (distinct number, unique MessageSid) asking a question
the router drafts for, so each one goes ingest -> router -> drafter.

1. Throughput: a burst of ``--burst`` signed webhooks (``--concurrency`` keep-alive
   connections); msg/s = messages / (last draft.created - first webhook sent). Also
   reported: how fast ingest took the burst, and how fast drafts came out once it had.
2. Latency: an open-loop stream at ``--rate`` msg/s for ``--seconds``; per message,
   draft.created arrival (seen on the bus) minus the webhook's scheduled send time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import nats

from bench.cpu import CpuWindow
from bench.ingest import profile_cmd
from bench.openloop import Http1Pool
from bench.stats import RESULTS_DIR, say, summary_ms, verdict, write_result
from libs.embedded import free_port
from libs.events import DraftCreated, InboundRouted
from services import SERVICES
from testsupport.observe import EventTap
from testsupport.stack import Infra, Stack, cleanup, ingest_env
from testsupport.stack_webhooks import SignedRequest, signed_inbound

TARGET_RATE = 500.0


def pipeline_env(port: int) -> dict[str, dict[str, str]]:
    return {
        "ingest": ingest_env(port, REPLYLINE_DB_POOL_MAX="20"),
        "sender": {"REPLYLINE_SENDER_TRANSPORT": "console",
                   "REPLYLINE_QUIET_HOURS_START": "00:00", "REPLYLINE_QUIET_HOURS_END": "00:00"},
        # Bursts off: with the production debounce (20 s) this would measure the wait.
        "drafter": {"REPLYLINE_LLM_BASE_URL": "", "REPLYLINE_BURST_DEBOUNCE_S": "0"},
    }  # fmt: skip


async def post_all(
    port: int, reqs: list[SignedRequest], concurrency: int
) -> tuple[dict[str, float], dict[int, int]]:
    """Closed loop: ``concurrency`` workers; returns send time per sender thread, statuses."""
    pool = Http1Pool("127.0.0.1", port)
    await pool.warm(concurrency)
    host = f"127.0.0.1:{port}"
    sent: dict[str, float] = {}
    statuses: dict[int, int] = {}
    queue = list(reversed(reqs))

    async def worker() -> None:
        while queue:
            r = queue.pop()
            sent[r.from_number.lstrip("+")] = time.monotonic()
            status = await pool.send(r.raw_http(host))
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    pool.close()
    return sent, statuses


async def post_open_loop(
    port: int, reqs: list[SignedRequest], rate: float
) -> tuple[dict[str, float], dict[int, int]]:
    pool = Http1Pool("127.0.0.1", port)
    await pool.warm(16)
    host = f"127.0.0.1:{port}"
    due_at: dict[str, float] = {}
    statuses: dict[int, int] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def one(r: SignedRequest) -> None:
        status = await pool.send(r.raw_http(host))
        statuses[status] = statuses.get(status, 0) + 1

    start = time.monotonic() + 0.05
    for i, r in enumerate(reqs):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        due_at[r.from_number.lstrip("+")] = due
        task = asyncio.create_task(one(r))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    pool.close()
    return due_at, statuses


async def pg_counters(database_url: str) -> dict[str, int]:
    """Whole-database counters (all service slices share the database)."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT xact_commit AS commits, tup_inserted AS rows_inserted,"
            " tup_updated AS rows_updated, tup_returned + tup_fetched AS rows_read"
            " FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    assert row is not None
    return {k: int(v) for k, v in row.items()}


async def seq_scanned_tables(database_url: str) -> list[dict[str, object]]:
    """Tables read by sequential scans the most (a growing scan per message shows up here)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT relname, seq_scan, seq_tup_read, idx_scan, n_live_tup"
            " FROM pg_stat_user_tables ORDER BY seq_tup_read DESC LIMIT 5"
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def events_per_message(url: str, messages: int) -> dict[str, float]:
    """Stream messages per inbound message, by event type (subject minus the thread)."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info("PIPELINE", subjects_filter=">")
    finally:
        await nc.close()
    by_type: dict[str, int] = {}
    for subject, n in (info.state.subjects or {}).items():
        tag = subject.rsplit(".", 1)[0]
        by_type[tag] = by_type.get(tag, 0) + n
    return {tag: round(n / messages, 2) for tag, n in sorted(by_type.items())}


def drafts_by_thread(tap: EventTap) -> dict[str, float]:
    first: dict[str, float] = {}
    for s in tap.of_type(DraftCreated):
        first.setdefault(s.event.thread, s.at)
    return first


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="replyline-bench-pipeline-"))
    infra = Infra(work / "infra")
    say("starting nats-server and Postgres")
    await infra.start()
    port = free_port()
    stack = Stack(infra, list(SERVICES),
                  per_service=pipeline_env(port))  # fmt: skip
    result: dict[str, Any] = {"work_dir": str(work)}
    ok = False
    tap: EventTap | None = None
    try:
        ready = await stack.start()
        say("services ready: " + ", ".join(f"{k} {v:.1f}s" for k, v in ready.items()))
        tap = await EventTap.connect(infra.nats.url, ["draft.created.>", "inbound.routed.>"])
        total = args.warmup + args.burst + int(args.rate * args.seconds)
        t0 = time.monotonic()
        reqs = signed_inbound(total)
        say(f"generated {total} signed webhooks in {time.monotonic() - t0:.1f}s")
        warm, burst, steady = (reqs[: args.warmup], reqs[args.warmup : args.warmup + args.burst],
                               reqs[args.warmup + args.burst :])  # fmt: skip

        say(f"warm-up: {len(warm)} messages")
        await post_all(port, warm, 8)
        if not await tap.wait_count(DraftCreated, len(warm), 60):
            raise RuntimeError(f"warm-up: only {len(tap.of_type(DraftCreated))} drafts "
                               f"for {len(warm)} messages; see {stack.log_dir}")  # fmt: skip
        routed_warm = {e.rule for e in tap.events(InboundRouted)}
        say(f"warm-up drafted every message (router rules seen: {sorted(routed_warm)})")

        base = len(tap.of_type(DraftCreated))
        profilers = []
        if args.profile:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            for name, proc in stack.procs.items():
                assert proc.pid is not None
                profilers.append(
                    profile_cmd(proc.pid, args.profile, RESULTS_DIR / f"pipeline-profile-{name}.txt")
                )
        window = CpuWindow(
            {name: [p.pid] for name, p in stack.procs.items() if p.pid is not None}
            | {"nats-server": [infra.nats.proc.pid] if infra.nats.proc else []},
            pg_data=infra.pg.data_dir,
        )
        window.begin()
        pg_before = await pg_counters(infra.database_url)
        say(f"burst: {len(burst)} webhooks over {args.concurrency} connections")
        sent, statuses = await post_all(port, burst, args.concurrency)
        accepted_at = time.monotonic()
        first_sent = min(sent.values())
        ok = await tap.wait_count(DraftCreated, base + len(burst), args.timeout)
        cpu = window.end(len(burst))
        pg_after = await pg_counters(infra.database_url)
        cpu["postgres_per_msg"] = {k: round((pg_after[k] - pg_before[k]) / len(burst), 1) for k in pg_after}
        say(f"Postgres work per message: {cpu['postgres_per_msg']}")
        result["seq_scanned_tables"] = await seq_scanned_tables(infra.database_url)
        say(f"most sequentially scanned tables: {result['seq_scanned_tables']}")
        for prof in profilers:
            prof.wait(timeout=120)
        drafts = drafts_by_thread(tap)
        burst_threads = {r.from_number.lstrip("+") for r in burst}
        done = [drafts[t] for t in burst_threads if t in drafts]
        last = max(done) if done else time.monotonic()
        rate = len(done) / (last - first_sent)
        ingest_rate = len(burst) / (accepted_at - first_sent)
        drain_rate = (
            len(done) / (last - first_sent)
            if last <= accepted_at
            else (len([d for d in done if d > accepted_at]) / (last - accepted_at))
        )
        lat = [drafts[t] - sent[t] for t in burst_threads if t in drafts]
        say(
            f"burst: {len(done)}/{len(burst)} drafted, {rate:.0f} msg/s end to end "
            f"(ingest accepted {ingest_rate:.0f}/s)"
        )
        result["burst"] = {
            "messages": len(burst), "drafted": len(done), "complete": ok,
            "statuses": {str(k): v for k, v in statuses.items()},
            "end_to_end_msg_per_s": round(rate, 1),
            "ingest_accept_msg_per_s": round(ingest_rate, 1),
            "drain_after_ingest_msg_per_s": round(drain_rate, 1),
            "seconds": round(last - first_sent, 2),
            "latency_under_burst": summary_ms(lat),
            "cpu": cpu,
        }  # fmt: skip

        base = len(tap.of_type(DraftCreated))
        say(f"steady: {args.rate:.0f} msg/s open loop for {args.seconds:.0f}s")
        due, statuses = await post_open_loop(port, steady, args.rate)
        ok = await tap.wait_count(DraftCreated, base + len(steady), args.timeout)
        drafts = drafts_by_thread(tap)
        lat = [drafts[t] - due[t] for t in due if t in drafts]
        result["steady"] = {
            "rate": args.rate, "seconds": args.seconds, "messages": len(steady),
            "drafted": len(lat), "complete": ok,
            "statuses": {str(k): v for k, v in statuses.items()}, "latency": summary_ms(lat),
        }  # fmt: skip
        say(
            f"steady: p50 {result['steady']['latency']['p50_ms']} ms, "
            f"p99 {result['steady']['latency']['p99_ms']} ms"
        )
        result["events_per_message"] = await events_per_message(
            infra.nats.url, args.warmup + len(burst) + len(steady)
        )
        say(f"events per inbound message: {result['events_per_message']}")
        result["crashed"] = stack.crashed()
        # An incomplete run keeps its logs (cleanup): its figures mean nothing.
        ok = bool(result["burst"]["complete"] and result["steady"]["complete"] and not result["crashed"])
    finally:
        if tap is not None:
            with contextlib.suppress(Exception):
                await tap.close()
        await stack.stop()
        infra.stop()
        cleanup(work, ok)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--burst", type=int, default=3000, help="messages in the throughput burst")
    p.add_argument("--concurrency", type=int, default=64, help="connections for the burst")
    p.add_argument("--rate", type=float, default=50.0, help="steady open-loop msg/s")
    p.add_argument("--seconds", type=float, default=20.0, help="steady phase length")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--timeout", type=float, default=300.0, help="max wait for the drafts")
    p.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="py-spy every service for SECONDS from the burst's start "
        "(bench/results/pipeline-profile-<service>.txt, collapsed stacks)",
    )
    args = p.parse_args(argv)
    started = time.monotonic()
    result = asyncio.run(run(args))
    rate = result["burst"]["end_to_end_msg_per_s"]
    lat = result["steady"]["latency"]
    print("\n== pipeline: webhook -> draft.created, all five services (2 cores) ==")
    print(
        f"throughput  {rate:8.0f} msg/s end to end  (target >= {TARGET_RATE:.0f}: "
        f"{verdict(rate, TARGET_RATE, higher_is_better=True)}); ingest took the burst at "
        f"{result['burst']['ingest_accept_msg_per_s']:.0f}/s, "
        f"{result['burst']['drafted']}/{result['burst']['messages']} drafted"
    )
    cpu = result["burst"]["cpu"]
    per = cpu["cpu_ms_per_msg"]
    print(
        "CPU ms per message: "
        + ", ".join(f"{k} {v:.2f}" for k, v in per.items() if not k.startswith("bench"))
    )
    total = sum(v for k, v in per.items() if not k.startswith("bench"))
    print(
        f"  = {total:.1f} CPU ms per message -> at most {2000 / total:.0f} msg/s on 2 idle cores;"
        f" other work on the machine took {cpu['cpu_s_other_work']:.1f} of "
        f"{cpu['cpu_s_machine_capacity']:.1f} CPU s during the burst"
    )
    result["summary_cpu_ms_per_msg"] = round(total, 2)
    print(
        f"latency at {args.rate:.0f} msg/s: p50 {lat['p50_ms']:.0f} ms  p99 {lat['p99_ms']:.0f} ms"
        f"  max {lat['max_ms']:.0f} ms  ({result['steady']['drafted']}/"
        f"{result['steady']['messages']} drafted)"
    )
    result["summary"] = {
        "msg_per_s": rate,
        "target": TARGET_RATE,
        "met": rate >= TARGET_RATE,
        "steady_p50_ms": lat["p50_ms"],
        "steady_p99_ms": lat["p99_ms"],
    }
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    print(f"\nresults: {write_result('pipeline', result)}")


if __name__ == "__main__":
    main()
