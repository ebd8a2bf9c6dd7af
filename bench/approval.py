"""Approval-to-send benchmark: the owner's YES webhook to the Twilio API call.

    python -m bench.approval

All five services run as child processes; the sender's real ``twilio`` client
talks to the fake Twilio (testsupport/fakes/twilio_server.py, which checks every request
against Twilio's OpenAPI description) running in this process. For each of
``--approvals`` leads: a lead texts, the draft is created and the owner's prompt
sent; then the owner's ``YES <ref>`` webhook is posted (open loop at ``--rate``)
and the time to the Messages create call to the lead is measured.

The comparison is the polling design of the issue (a job checks for approved
drafts every 15 s): its delay is uniform over 0-15 s, so p50 7.5 s and p99 14.85 s
(computed, not run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg

from bench.cpu import CpuWindow
from bench.openloop import Http1Pool
from bench.stats import say, summary_ms, verdict, write_result
from libs.embedded import free_port
from libs.events import DraftApproved, DraftCreated, DraftDecided
from services import SERVICES
from testsupport.fakes.twilio_server import FakeTwilio
from testsupport.observe import EventTap
from testsupport.stack import ACCOUNT_SID, AUTH_TOKEN, BUSINESS, OWNER, Infra, Stack, cleanup, ingest_env
from testsupport.stack_webhooks import SignedRequest, inbound_form, new_sid, sign, signed_inbound

TARGET_P99_MS = 100.0
POLL_INTERVAL_S = 15.0


def stack_env(port: int, twilio_url: str) -> dict[str, dict[str, str]]:
    return {
        "ingest": ingest_env(port),
        "sender": {
            "REPLYLINE_SENDER_TRANSPORT": "twilio", "REPLYLINE_TWILIO_API_BASE_URL": twilio_url,
            "REPLYLINE_TWILIO_FROM_NUMBER": BUSINESS,
            # start == end: no quiet hours, so the figure is the pipeline, not the clock.
            "REPLYLINE_QUIET_HOURS_START": "00:00", "REPLYLINE_QUIET_HOURS_END": "00:00",
        },
        # Bursts off: the figure is the pipeline, not the debounce (docs/benchmarks.md).
        "drafter": {"REPLYLINE_LLM_BASE_URL": "", "REPLYLINE_BURST_DEBOUNCE_S": "0"},
    }  # fmt: skip


async def no_synchronous_commit(admin_url: str) -> None:
    """Diagnostic: commits stop waiting for the WAL fsync (shows what disk stalls cost)."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute("ALTER SYSTEM SET synchronous_commit = 'off'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def wal_counters(admin_url: str) -> dict[str, float]:
    """Commits and WAL flushes so far, server-wide: per approval, what waited for the disk."""
    conn = await asyncpg.connect(admin_url)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT sum(xact_commit) FROM pg_stat_database) AS commits, "
            "wal_sync AS wal_flushes, wal_sync_time AS wal_flush_ms FROM pg_stat_wal"
        )
        assert row is not None
        return {k: float(v or 0) for k, v in row.items()}
    finally:
        await conn.close()


def owner_yes(ref: str) -> SignedRequest:
    sid = new_sid()
    form = inbound_form(sid, OWNER, f"YES {ref}")
    return SignedRequest(sid, OWNER, urlencode(form).encode(), sign(form))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="replyline-bench-approval-"))
    infra = Infra(work / "infra")
    say("starting nats-server, Postgres and the fake Twilio")
    await infra.start()
    if args.no_sync_commit:
        await no_synchronous_commit(infra.pg.url)
    twilio = FakeTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    await twilio.start()
    creates: dict[str, float] = {}  # lead number -> monotonic time of the create call

    async def on_create(resource: dict[str, Any]) -> None:
        creates.setdefault(resource["to"], time.monotonic())

    twilio.on_create = on_create
    port = free_port()
    stack = Stack(infra, list(SERVICES),
                  per_service=stack_env(port, twilio.base_url))  # fmt: skip
    tap: EventTap | None = None
    result: dict[str, Any] = {"work_dir": str(work)}
    ok = False
    try:
        ready = await stack.start()
        say("services ready: " + ", ".join(f"{k} {v:.1f}s" for k, v in ready.items()))
        tap = await EventTap.connect(infra.nats.url, ["draft.>"])
        everyone = signed_inbound(args.warmup + args.approvals, start=7000)
        warmup, leads = everyone[: args.warmup], everyone[args.warmup :]
        pool = Http1Pool("127.0.0.1", port)
        host = f"127.0.0.1:{port}"
        say(f"{len(everyone)} leads text in; waiting for their drafts")
        for r in everyone:
            status = await pool.send(r.raw_http(host))
            if status != 200:
                raise RuntimeError(f"lead webhook answered {status}")
        if not await tap.wait_count(DraftCreated, len(everyone), 120):
            raise RuntimeError(f"only {len(tap.of_type(DraftCreated))} drafts; see {stack.log_dir}")
        refs = {e.to_number: e.ref for e in tap.events(DraftCreated)}
        # The owner's prompts are sent too; wait for them so they do not share the measured window.
        await twilio.wait_for_creates(len(everyone), timeout=120)
        if warmup:
            # Not measured: the first approvals after start-up take the owner-command path
            # for the first time in each service (cold caches, first prepared statements).
            say(f"warm-up: {len(warmup)} approvals, not measured")
            for r in warmup:
                if await pool.send(owner_yes(refs[r.from_number]).raw_http(host)) != 200:
                    raise RuntimeError("warm-up approval webhook failed")
            await twilio.wait_for_creates(2 * len(everyone) - len(leads), timeout=60)
        say(f"owner approves each draft: YES <ref> at {args.rate:.0f}/s (open loop)")
        sent_at: dict[str, float] = {}
        tasks: set[asyncio.Task[int]] = set()
        window = CpuWindow(
            {name: [p.pid] for name, p in stack.procs.items() if p.pid is not None}
            | {"nats-server": [infra.nats.proc.pid] if infra.nats.proc else []},
            pg_data=infra.pg.data_dir,
        )
        window.begin()
        wal_before = await wal_counters(infra.pg.url)
        start = time.monotonic() + 0.05
        for i, r in enumerate(leads):
            due = start + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at[r.from_number] = due
            task = asyncio.create_task(pool.send(owner_yes(refs[r.from_number]).raw_http(host)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        deadline = time.monotonic() + args.timeout
        while len([n for n in sent_at if n in creates]) < len(sent_at):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        pool.close()
        cpu = window.end(len(sent_at), "approval")
        wal_after = await wal_counters(infra.pg.url)
        # Everything in the window (prompts are done; the sender's post-call writes and
        # every service's heartbeats are in it too), per approval.
        per_approval = {k: round((wal_after[k] - wal_before[k]) / max(len(sent_at), 1), 2) for k in wal_after}
        lat = [creates[n] - sent_at[n] for n in sent_at if n in creates]
        t0 = min(sent_at.values())
        ref_of = {e.to_number: e.ref for e in tap.events(DraftCreated)}
        decided_at = {
            s.event.ref: s.at for s in tap.of_type(DraftDecided) if isinstance(s.event, DraftDecided)
        }
        approved_at = {
            s.event.to_number: s.at for s in tap.of_type(DraftApproved) if isinstance(s.event, DraftApproved)
        }

        def hops(n: str) -> dict[str, float | None]:
            """Where an approval's time went, hop by hop (arrival on the bus)."""
            d, a = decided_at.get(ref_of.get(n, "")), approved_at.get(n)
            ms = lambda x, y: round((y - x) * 1000, 1) if x and y else None  # noqa: E731
            return {
                "yes_to_draft_decided (ingest + router)": ms(sent_at[n], d),
                "to_draft_approved (drafter)": ms(d, a),
                "to_twilio_create (sender)": ms(a, creates.get(n)),
            }

        # The slowest approvals, when they were sent and which hop was slow.
        hop_ms = [hops(n) for n in sent_at if n in creates]
        hop_summary = {
            hop: summary_ms([v / 1000 for h in hop_ms if (v := h[hop]) is not None])
            for hop in (hop_ms[0] if hop_ms else {})
        }
        slowest = sorted(
            ((creates[n] - sent_at[n], sent_at[n] - t0, n) for n in sent_at if n in creates), reverse=True
        )[:8]
        approved = len(tap.of_type(DraftApproved))
        result.update({
            "approvals": len(leads), "sent_to_leads": len(lat), "draft_approved_events": approved,
            "rate": args.rate, "warmup": args.warmup, "postgres_synchronous_commit": not args.no_sync_commit,
            "latency": summary_ms(lat), "hops": hop_summary,
            "fake_twilio_violations": twilio.violations[:5],
            "slowest": [{"latency_ms": round(lat_s * 1000, 1), "sent_at_s": round(at, 2),
                         "lead": n, "hops_ms": hops(n)} for lat_s, at, n in slowest],
            "polling_design_computed": {"interval_s": POLL_INTERVAL_S,
                                        "p50_ms": POLL_INTERVAL_S * 500,
                                        "p99_ms": POLL_INTERVAL_S * 990},
            "crashed": stack.crashed(),
            # Other work on the shared machine during the window: outliers track it.
            "cpu_s_other_work": cpu["cpu_s_other_work"],
            "cpu": cpu, "postgres_per_approval": per_approval,
        })  # fmt: skip
        ok = True
    finally:
        if tap is not None:
            with contextlib.suppress(Exception):
                await tap.close()
        await stack.stop()
        await twilio.close()
        infra.stop()
        cleanup(work, ok)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.approval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--approvals", type=int, default=300, help="drafts approved (one per lead)")
    p.add_argument("--rate", type=float, default=10.0, help="owner YES webhooks per second")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="approvals sent (and sent on) before the measured ones, not measured: "
        "without them the first approvals after start-up, each service's first "
        "owner command, can make the p99 of a run",
    )
    p.add_argument(
        "--no-sync-commit",
        action="store_true",
        help="diagnostic: Postgres synchronous_commit=off (commits do not wait for "
        "the WAL fsync), to see how much of the tail is the disk",
    )
    args = p.parse_args(argv)
    result = asyncio.run(run(args))
    lat = result["latency"]
    print("\n== approval to send: owner's YES webhook -> Twilio Messages create (2 cores) ==")
    print(
        f"{result['sent_to_leads']}/{result['approvals']} approved drafts sent; "
        f"p50 {lat['p50_ms']:.1f} ms  p99 {lat['p99_ms']:.1f} ms  max {lat['max_ms']:.1f} ms "
        f"(target p99 < {TARGET_P99_MS:.0f} ms: "
        f"{verdict(lat['p99_ms'], TARGET_P99_MS, higher_is_better=False)})"
    )
    for hop, h in result["hops"].items():
        print(f"  {hop:<40} p50 {h['p50_ms']:.1f} ms  p99 {h['p99_ms']:.1f} ms  max {h['max_ms']:.1f} ms")
    pg = result["postgres_per_approval"]
    print(
        f"Postgres per approval: {pg['commits']:.1f} commits, {pg['wal_flushes']:.1f} WAL flushes "
        f"({pg['wal_flush_ms']:.2f} ms flushing; 0 with track_wal_io_timing off)"
    )
    print(
        f"other work on the machine during the approvals: {result['cpu_s_other_work']:.1f} CPU s "
        f"of {result['cpu']['cpu_s_machine_capacity']:.1f}"
    )
    poll = result["polling_design_computed"]
    ratio = poll["p99_ms"] / lat["p99_ms"] if lat["p99_ms"] else float("inf")
    print(
        f"polling every {POLL_INTERVAL_S:.0f} s (computed): p50 {poll['p50_ms']:.0f} ms, "
        f"p99 {poll['p99_ms']:.0f} ms -> {ratio:.0f}x lower p99 with events"
    )
    result["summary"] = {"p50_ms": lat["p50_ms"], "p99_ms": lat["p99_ms"],
                         "target_p99_ms": TARGET_P99_MS, "met": lat["p99_ms"] < TARGET_P99_MS,
                         "vs_polling_p99": round(ratio, 1)}  # fmt: skip
    print(f"\nresults: {write_result('approval', result)}")


if __name__ == "__main__":
    main()
