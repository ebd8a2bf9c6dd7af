"""Timers benchmark: 100,000 pending timers in the scheduler (NATS KV bucket ``timers``).

    python -m bench.timers

The scheduler runs as a child process on a private nats-server and Postgres.
This process publishes ``timer.set`` events exactly as the drafter and sender do;
the scheduler stores each in the KV bucket and keeps an in-memory heap.

1. Load: ``--timers`` timers due hours to days ahead (draft expiries); how fast
   they are stored, and the scheduler's RSS before and after.
2. Recovery: SIGKILL the scheduler and start it again; the time until it is ready
   (its readiness check includes "every pending timer loaded"), and its RSS.
3. Lateness: with the 100k still pending, ``--firing`` more timers come due at
   ``--fire-rate`` per second; lateness = arrival of ``timer.fired`` on the bus
   minus its ``fire_at``, p50/p99/max. Optionally (``--burst``) that many timers
   all due at the same instant (the "everything is overdue after an outage" case).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
from nats.js import JetStreamContext

from bench.stats import say, summary_ms, verdict, write_result
from libs.events import TimerFired, TimerKind, TimerSet, encode
from testsupport.observe import EventTap
from testsupport.stack import Infra, Stack, cleanup

TARGET_LATENESS_P99_S = 1.0
TARGET_RECOVERY_S = 10.0
KIND: TimerKind = "draft_expiry"


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def publish_timers(
    js: JetStreamContext, prefix: str, fire_ats: list[datetime], window: int = 1000
) -> float:
    """timer.set events, ``window`` publishes in flight; returns seconds taken."""
    started = time.monotonic()
    for first in range(0, len(fire_ats), window):
        batch = []
        for i in range(first, min(first + window, len(fire_ats))):
            event = TimerSet(thread=f"1555{i % 1000:07d}", timer_id=f"{prefix}-{i}", kind=KIND,
                             fire_at=fire_ats[i], payload={"draft_id": f"d-{prefix}-{i}"})  # fmt: skip
            batch.append(js.publish(
                f"timer.set.{event.thread}", encode(event),
                headers={"Nats-Msg-Id": f"timer.set:{event.timer_id}:{event.fire_at.isoformat()}"},
            ))  # fmt: skip
        await asyncio.gather(*batch)
    return time.monotonic() - started


async def kv_pending(js: JetStreamContext) -> int:
    # KV bucket stream: one live message per pending timer once the purges are compacted.
    info = await js.stream_info("KV_timers")
    return int(info.state.messages)


async def wait_stored(js: JetStreamContext, count: int, timeout: float) -> float:
    started = time.monotonic()
    last = -1
    while True:
        n = await kv_pending(js)
        if n >= count:
            return time.monotonic() - started
        if n != last and int(time.monotonic() - started) % 5 == 0:
            say(f"  stored {n}/{count}")
        last = n
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"only {n}/{count} timers stored after {timeout}s")
        await asyncio.sleep(0.5)


def loaded_lines(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if '"timers_loaded"' in line:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


async def lateness(
    js: JetStreamContext, tap: EventTap, prefix: str, fire_ats: list[datetime], timeout: float
) -> dict[str, Any]:
    await publish_timers(js, prefix, fire_ats)
    last_due = max(fire_ats).timestamp()
    wait = max(0.0, last_due - time.time()) + timeout

    def mine() -> list[tuple[TimerFired, float]]:
        return [
            (s.event, s.wall)
            for s in tap.of_type(TimerFired)
            if isinstance(s.event, TimerFired) and s.event.timer_id.startswith(prefix + "-")
        ]

    await tap.wait_until(lambda: len({e.timer_id for e, _ in mine()}) >= len(fire_ats), wait)
    seen = mine()
    first: dict[str, float] = {}
    for event, wall in seen:
        first.setdefault(event.timer_id, wall - event.fire_at.timestamp())
    late = list(first.values())
    return {"timers": len(fire_ats), "fired": len(first), "fired_events": len(seen),
            "lateness": summary_ms(late)}  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="replyline-bench-timers-"))
    infra = Infra(work / "infra")
    say("starting nats-server and Postgres")
    await infra.start()
    stack = Stack(infra, ["scheduler"], per_service={"scheduler": {"REPLYLINE_LOG_LEVEL": "INFO"}})
    sched = stack["scheduler"]
    result: dict[str, Any] = {"work_dir": str(work)}
    ok = False
    nc = None
    tap = None
    try:
        await stack.start()
        nc = await nats.connect(infra.nats.url)
        js = nc.jetstream()
        tap = await EventTap.connect(infra.nats.url, ["timer.fired.>"])
        rss_empty = rss_mb(sched.pid)
        now = datetime.now(UTC)
        # Due between 2 hours and 3 days ahead: pending for the whole run.
        far = [now + timedelta(hours=2) + timedelta(seconds=i * 3 * 86400 / args.timers)
               for i in range(args.timers)]  # fmt: skip
        say(f"publishing {args.timers} timer.set events")
        pub_s = await publish_timers(js, "far", far)
        say(f"published in {pub_s:.1f}s; waiting for the scheduler to store them")
        store_s = await wait_stored(js, args.timers, args.timeout)
        await asyncio.sleep(2)  # let the follower's heap catch up with the bucket
        rss_loaded = rss_mb(sched.pid)
        say(f"{args.timers} pending; scheduler RSS {rss_empty} -> {rss_loaded} MB")
        result["load"] = {"timers": args.timers, "publish_s": round(pub_s, 1),
                          "stored_all_after_s": round(pub_s + store_s, 1),
                          "stored_per_s": round(args.timers / (pub_s + store_s), 0),
                          "rss_mb_empty": rss_empty, "rss_mb_loaded": rss_loaded}  # fmt: skip

        say("kill -9 the scheduler and start it again")
        sched.kill9()
        started = time.monotonic()
        sched.start()
        ready_s = await sched.wait_ready(args.timeout)
        loaded = loaded_lines(sched.log_path)
        result["recovery"] = {
            "ready_after_s": round(ready_s, 2),
            "timers_loaded_log": loaded[-1] if loaded else None,
            "rss_mb_after_restart": rss_mb(sched.pid),
            "process_start_to_ready_s": round(time.monotonic() - started, 2),
        }
        say(f"ready again in {ready_s:.2f}s (log: {loaded[-1] if loaded else 'n/a'})")

        soon = datetime.now(UTC) + timedelta(seconds=5)
        due = [soon + timedelta(seconds=i / args.fire_rate) for i in range(args.firing)]
        say(f"lateness: {args.firing} timers due at {args.fire_rate:.0f}/s with {args.timers} pending")
        result["steady"] = await lateness(js, tap, "due", due, 30.0)
        result["steady"]["fire_rate"] = args.fire_rate
        say(f"steady lateness: {result['steady']['lateness']}")
        if args.burst:
            at = datetime.now(UTC) + timedelta(seconds=5)
            say(f"burst: {args.burst} timers all due at the same instant")
            result["burst"] = await lateness(js, tap, "burst", [at] * args.burst, 60.0)
            say(f"burst lateness: {result['burst']['lateness']}")
        result["crashed"] = stack.crashed()
        ok = True
    finally:
        if tap is not None:
            with contextlib.suppress(Exception):
                await tap.close()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        await stack.stop()
        infra.stop()
        cleanup(work, ok)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.timers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--timers", type=int, default=100_000, help="pending timers")
    p.add_argument("--firing", type=int, default=3000, help="timers coming due in the run")
    p.add_argument("--fire-rate", type=float, default=100.0, help="due timers per second")
    p.add_argument("--burst", type=int, default=2000, help="timers due at one instant (0 = skip)")
    p.add_argument("--timeout", type=float, default=600.0)
    args = p.parse_args(argv)
    result = asyncio.run(run(args))
    load, rec, st = result["load"], result["recovery"], result["steady"]
    lat = st["lateness"]
    print("\n== timers: scheduler with pending timers in NATS KV (2 cores) ==")
    print(
        f"pending {load['timers']}: stored at {load['stored_per_s']:.0f}/s; scheduler RSS "
        f"{load['rss_mb_empty']} MB empty -> {load['rss_mb_loaded']} MB loaded"
    )
    print(
        f"restart after kill -9: ready in {rec['ready_after_s']:.2f} s (target < "
        f"{TARGET_RECOVERY_S:.0f} s: "
        f"{verdict(rec['ready_after_s'], TARGET_RECOVERY_S, higher_is_better=False)})"
    )
    print(
        f"lateness ({st['fired']}/{st['timers']} fired at {st['fire_rate']:.0f}/s): "
        f"p50 {lat['p50_ms']:.0f} ms  p99 {lat['p99_ms']:.0f} ms  max {lat['max_ms']:.0f} ms "
        f"(target p99 < {TARGET_LATENESS_P99_S * 1000:.0f} ms: "
        f"{verdict(lat['p99_ms'], TARGET_LATENESS_P99_S * 1000, higher_is_better=False)})"
    )
    if "burst" in result:
        b = result["burst"]["lateness"]
        print(
            f"burst of {result['burst']['timers']} due at once: {result['burst']['fired']} fired;"
            f" lateness p50 {b['p50_ms']:.0f} ms  p99 {b['p99_ms']:.0f} ms  max {b['max_ms']:.0f}"
            " ms"
        )
    result["summary"] = {
        "recovery_s": rec["ready_after_s"], "lateness_p99_ms": lat["p99_ms"],
        "rss_mb_loaded": load["rss_mb_loaded"],
        "met": {"recovery": rec["ready_after_s"] < TARGET_RECOVERY_S,
                "lateness": lat["p99_ms"] < TARGET_LATENESS_P99_S * 1000},
    }  # fmt: skip
    print(f"\nresults: {write_result('timers', result)}")


if __name__ == "__main__":
    main()
