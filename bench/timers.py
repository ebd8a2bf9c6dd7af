"""Timers benchmark: 1,000,000 pending timers in the scheduler (NATS KV bucket ``timers``).

    python -m bench.timers                    # 1,000,000 pending, restart from the view snapshot
    python -m bench.timers --full-load        # the same, snapshots off: restart reads every key
    python -m bench.timers --timers 100000 --seed events   # the pre-1M way: all through timer.set

The scheduler runs as a child process on a private nats-server and Postgres.

1. Load: ``--timers`` timers due hours to days ahead (draft expiries). With
   ``--seed kv`` (default) all but ``--via-events`` of them are written straight
   into the bucket, exactly as the scheduler writes them (same key, same JSON
   record), because storing a million through ``timer.set`` takes 10+ minutes on
   2 cores; the last ``--via-events`` go through ``timer.set`` events (as the
   drafter and sender publish them) and give the storing rate. ``--seed events``
   sends all of them as events. Then the scheduler's RSS, and (unless
   ``--full-load``) a wait for its periodic view snapshot to cover them all, as
   it would on a scheduler that has been running for a minute.
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

import aiohttp
import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from bench.stats import say, summary_ms, verdict, write_result
from libs.events import TimerFired, TimerKind, TimerSet, encode
from services.scheduler.timers import TimerRecord, key_for
from testsupport.observe import EventTap
from testsupport.stack import Infra, Stack, cleanup

_encode_record = msgspec.json.Encoder().encode

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


async def seed_kv(nc: NATS, js: JetStreamContext, prefix: str, fire_ats: list[datetime]) -> float:
    """Write timers straight into the bucket as the scheduler's ``set`` does; returns seconds.

    Core publishes (no ack each) in windows, each window waited for in the stream."""
    started = time.monotonic()
    base = await kv_pending(js)
    now = datetime.now(UTC)
    window = 5000
    for first in range(0, len(fire_ats), window):
        last = min(first + window, len(fire_ats))
        for i in range(first, last):
            record = TimerRecord(timer_id=f"{prefix}-{i}", kind=KIND, fire_at=fire_ats[i],
                                 thread=f"1555{i % 1000:07d}", payload={"draft_id": f"d-{prefix}-{i}"},
                                 set_at=now)  # fmt: skip
            await nc.publish(f"$KV.timers.{key_for(record.timer_id)}", _encode_record(record))
        await nc.flush()
        while await kv_pending(js) < base + last:  # noqa: ASYNC110 - the server's count, no event to wait on
            await asyncio.sleep(0.02)
    return time.monotonic() - started


def snapshot_lines(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if '"timers_snapshot_saved"' in line:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


async def wait_snapshot(log: Path, count: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        saved = [s for s in snapshot_lines(log) if s.get("pending", 0) >= count]
        if saved:
            return saved[-1]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no snapshot of {count} timers within {timeout}s")
        await asyncio.sleep(0.5)


async def wait_view(health_port: int, count: int, timeout: float) -> float:
    """Until the scheduler's pending gauge (its view, not the bucket) reaches ``count``."""
    started = time.monotonic()
    url = f"http://127.0.0.1:{health_port}/metrics"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(url) as resp:
                    text = await resp.text()
                held = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                           if line.startswith("replyline_timers_pending{"))  # fmt: skip
                if held >= count:
                    return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"scheduler view below {count} timers after {timeout}s")
            await asyncio.sleep(1.0)


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
    env = {"REPLYLINE_LOG_LEVEL": "INFO"}
    if args.full_load:
        env["REPLYLINE_TIMER_SNAPSHOT_INTERVAL_S"] = "0"
    stack = Stack(infra, ["scheduler"], per_service={"scheduler": env})
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
        via_events = far if args.seed == "events" else far[len(far) - min(args.via_events, len(far)) :]
        direct = far[: len(far) - len(via_events)]
        # timer.set first, on an idle scheduler: the storing rate is that of a scheduler
        # keeping up (the direct writes below then queue up in its bucket follower).
        say(f"publishing {len(via_events)} timer.set events")
        pub_s = await publish_timers(js, "ev", via_events)
        say(f"published in {pub_s:.1f}s; waiting for the scheduler to store them")
        store_s = await wait_stored(js, len(via_events), args.timeout)
        seed_s = 0.0
        if direct:
            say(f"writing {len(direct)} timers straight into the bucket")
            seed_s = await seed_kv(nc, js, "far", direct)
            say(f"written in {seed_s:.1f}s; waiting for the scheduler's view to hold them all")
        view_s = await wait_view(sched.health_port, args.timers, args.timeout)
        rss_loaded = rss_mb(sched.pid)
        say(f"{args.timers} pending; scheduler RSS {rss_empty} -> {rss_loaded} MB")
        result["load"] = {"timers": args.timers, "seed": args.seed, "written_direct": len(direct),
                          "direct_write_s": round(seed_s, 1), "view_caught_up_after_s": round(view_s, 1),
                          "via_events": len(via_events), "publish_s": round(pub_s, 1),
                          "stored_all_after_s": round(pub_s + store_s, 1),
                          "stored_per_s": round(len(via_events) / (pub_s + store_s), 0),
                          "rss_mb_empty": rss_empty, "rss_mb_loaded": rss_loaded}  # fmt: skip
        if not args.full_load:
            say("waiting for the scheduler's view snapshot to cover every timer")
            snap = await wait_snapshot(sched.log_path, args.timers, args.timeout)
            result["snapshot"] = {k: snap.get(k) for k in ("pending", "bytes", "seconds")}
            say(f"snapshot: {result['snapshot']}")

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
    p.add_argument("--timers", type=int, default=1_000_000, help="pending timers")
    p.add_argument(
        "--seed",
        choices=("kv", "events"),
        default="kv",
        help="kv: write all but --via-events straight into the bucket; events: all as timer.set",
    )
    p.add_argument(
        "--via-events",
        type=int,
        default=20_000,
        help="with --seed kv: this many go through timer.set (the storing rate)",
    )
    p.add_argument(
        "--full-load",
        action="store_true",
        help="scheduler snapshots off: the restart reads every pending key",
    )
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
        f"pending {load['timers']} ({load['via_events']} via timer.set, stored at "
        f"{load['stored_per_s']:.0f}/s); scheduler RSS "
        f"{load['rss_mb_empty']} MB empty -> {load['rss_mb_loaded']} MB loaded"
    )
    print(
        f"restart after kill -9 ({(rec['timers_loaded_log'] or {}).get('source', '?')} load): "
        f"ready in {rec['ready_after_s']:.2f} s (target < "
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
