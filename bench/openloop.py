"""Open-loop HTTP load at a fixed rate: latency measured from each request's *scheduled* time.

A closed-loop tool (wrk, ab) waits for a response before the next request on a
connection, so a slow server slows the load and hides its own latency
("coordinated omission"). Here request i is due at ``start + i / rate`` whatever
happened before; it takes an idle keep-alive connection or opens a new one, and its
latency counts from when it was due. Run in its own process (this module's
``main``) so the generator never shares an interpreter with the server it measures.

    python -m bench.openloop --port 8080 --rate 1000 --duration 10 --requests reqs.tsv
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from bench.stats import summary_ms


class Http1Pool:
    """Raw HTTP/1.1 keep-alive connections; requests are pre-built bytes."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port)

    async def warm(self, count: int) -> None:
        self.idle.extend(await asyncio.gather(*(self._connect() for _ in range(count))))

    async def send(self, raw: bytes) -> int:
        conn = self.idle.pop() if self.idle else await self._connect()
        reader, writer = conn
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        keep = True
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"connection" and value.strip().lower() == b"close":
                keep = False
        if length:
            await reader.readexactly(length)
        if keep:
            self.idle.append(conn)
        else:
            writer.close()
        return status

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def run_open_loop(
    host: str, port: int, requests: list[bytes], rate: float, warm_connections: int = 32
) -> dict[str, object]:
    pool = Http1Pool(host, port)
    await pool.warm(warm_connections)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one(raw: bytes, due: float) -> None:
        try:
            status = await pool.send(raw)
        except Exception as exc:  # a refused/reset connection is a result, not a crash
            errors.append(type(exc).__name__)
            return
        latencies.append(loop.time() - due)
        statuses[status] = statuses.get(status, 0) + 1

    start = loop.time() + 0.1
    late_starts = 0
    for i, raw in enumerate(requests):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.005:
            late_starts += 1  # the generator itself fell behind (counted, latency still from due)
        task = asyncio.create_task(one(raw, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent_in = loop.time() - start
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    pool.close()
    return {
        "rate_target": rate,
        "sent": len(requests),
        "send_seconds": round(sent_in, 3),
        "rate_achieved": round(len(requests) / sent_in, 1) if sent_in else 0.0,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "generator_late_starts": late_starts,
        "connections_opened": pool.opened,
        "latency": summary_ms(latencies),
    }


def load_requests(path: Path, host: str, url_path: str) -> list[bytes]:
    out: list[bytes] = []
    for line in path.read_bytes().splitlines():
        signature, _, body = line.partition(b"\t")
        head = (
            f"POST {url_path} HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: {signature.decode()}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/twilio/sms")
    p.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    p.add_argument(
        "--requests",
        type=Path,
        required=True,
        help="file of 'signature<TAB>urlencoded body' lines (testsupport.stack_webhooks)",
    )
    p.add_argument("--out", type=Path, help="write the JSON result here (default: stdout)")
    args = p.parse_args(argv)
    raws = load_requests(args.requests, f"{args.host}:{args.port}", args.path)
    need = int(args.rate * args.duration)
    if len(raws) < need:
        sys.exit(f"{args.requests} has {len(raws)} requests; {need} needed (no repeats allowed)")
    started = time.time()
    result = asyncio.run(run_open_loop(args.host, args.port, raws[:need], args.rate))
    result["started_at"] = started
    text = json.dumps(result)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
