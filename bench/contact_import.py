"""Contact import benchmark: ``replyline contacts import`` of a generated 100,000-row CSV.

    python -m bench.contact_import [--rows 100000]

The scheduler runs as a child process on a private nats-server and Postgres; the CLI
runs as another child process (the real command, progress bar off). Reported: wall
time of the import (validation pass + staging batches + the one-transaction commit),
the CLI's peak RSS (it streams the file: the peak must not grow with the file), and
a second run of the same file (idempotent: nothing created or updated).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testsupport.stack import Infra, Stack, child_env, cleanup, common_env


def generate(path: Path, rows: int) -> None:
    with path.open("w") as out:
        out.write("phone,first_name,last_name,email,tags,opted_out,source,budget\n")
        for n in range(rows):
            opted = "yes" if n % 50 == 0 else "no"
            out.write(
                f"+1212{2000000 + n:07d},First{n},Last{n},p{n}@example.com,t{n % 7};bulk,{opted},csv,{n}\n"
            )


def run_cli(env: dict[str, str], path: Path) -> tuple[float, dict[str, object], float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "replyline", "contacts", "import", str(path), "--json", "--no-progress"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"import failed ({done.returncode}): {done.stderr[-2000:]}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    # The result is the last line (log lines may precede it on stdout).
    return elapsed, json.loads(done.stdout.strip().splitlines()[-1]), peak_mb


async def main(rows: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="replyline-bench-contacts-"))
    infra = Infra(work / "infra")
    ok = False
    await infra.start()
    stack = Stack(infra, ["scheduler"])
    try:
        await stack.start()
        path = work / "leads.csv"
        generate(path, rows)
        env = child_env(common_env(infra))
        first, result, peak = await asyncio.to_thread(run_cli, env, path)
        print(f"{rows:,} rows: {first:.1f}s ({rows / first:,.0f} rows/s), CLI peak RSS {peak:.0f} MB")
        print(f"  result: {result}")
        again, result2, _ = await asyncio.to_thread(run_cli, env, path)
        print(f"  same file again: {again:.1f}s, created {result2['created']}, updated {result2['updated']}")
        ok = result2["created"] == 0 and result2["updated"] == 0
    finally:
        await stack.stop()
        infra.stop()
        cleanup(work, ok)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().rows))
