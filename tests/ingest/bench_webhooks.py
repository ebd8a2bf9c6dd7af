"""Webhook latency and throughput of a real ingest (embedded NATS and Postgres).

    /tmp/v/bin/python -m tests.ingest.bench_webhooks --count 1000 --concurrency 1 10

Each request is a new signed inbound SMS, so each one is a Postgres transaction plus
a JetStream publish acked to disk; the client runs in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from libs.embedded import EmbeddedNats, EmbeddedPostgres
from libs.logging import configure
from libs.settings import load
from services.ingest.settings import IngestSettings
from tests.ingest.running import PUBLIC, start_ingest
from testsupport.webhooks import AUTH_TOKEN, inbound_form, signed


async def run(count: int, concurrencies: list[int]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    nats, pg = EmbeddedNats(tmp / "nats"), EmbeddedPostgres(tmp / "pg")
    nats.start()
    pg.start()
    settings = load(
        IngestSettings,
        env={},
        overrides={
            "nats_url": nats.url, "database_url": pg.url, "http_port": 0,
            "twilio_auth_token": AUTH_TOKEN, "public_base_url": PUBLIC, "log_level": "WARNING",
            "db_pool_max": 20,
        },
    )  # fmt: skip
    service, url = await start_ingest(settings)
    try:
        async with aiohttp.ClientSession() as session:
            for concurrency in concurrencies:
                forms = [inbound_form(f"message {i}") for i in range(count)]
                latencies: list[float] = []
                queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
                for form in forms:
                    queue.put_nowait(form)

                async def worker(
                    queue: asyncio.Queue[dict[str, str]], latencies: list[float]
                ) -> None:
                    while not queue.empty():
                        form = queue.get_nowait()
                        headers = signed(PUBLIC + "/twilio/sms", form)
                        started = time.perf_counter()
                        async with session.post(
                            url + "/twilio/sms", data=form, headers=headers
                        ) as resp:
                            assert resp.status == 200, resp.status
                            await resp.read()
                        latencies.append(time.perf_counter() - started)

                started = time.perf_counter()
                await asyncio.gather(*(worker(queue, latencies) for _ in range(concurrency)))
                elapsed = time.perf_counter() - started
                q = statistics.quantiles(latencies, n=100)
                print(
                    f"concurrency {concurrency:3d}: {count} webhooks in {elapsed:.2f}s = "
                    f"{count / elapsed:.0f}/s; latency p50 {q[49] * 1000:.1f} ms, "
                    f"p95 {q[94] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms"
                )
    finally:
        await service.stop()
        nats.stop()
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()
    configure("bench", level="WARNING", fmt="console")
    asyncio.run(run(args.count, args.concurrency))


if __name__ == "__main__":
    main()
