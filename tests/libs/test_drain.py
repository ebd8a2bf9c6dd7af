import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from libs.bus import Bus
from libs.consumer import Delivery
from libs.events import InboundReceived
from libs.service import ServiceContext
from tests.harness import eventually, start_service
from tests.libs.test_bus import inbound

N = 30


async def test_graceful_drain_loses_no_in_flight_message(make_settings: Callable[..., Any], bus: Bus) -> None:
    finished: Counter[str] = Counter()
    started = asyncio.Event()

    async def handle(event: InboundReceived, d: Delivery) -> None:
        started.set()
        await asyncio.sleep(0.4)  # in flight when the stop arrives
        finished[event.message_sid] += 1

    async def build(ctx: ServiceContext[Any]) -> dict[type, Any]:
        return {InboundReceived: handle}

    settings = make_settings(max_in_flight=8, fetch_batch=8)
    for i in range(N):
        await bus.publish(inbound(f"SM{i}", thread=f"1555000{i:04d}"))
    svc = await start_service(settings, name="router", build=build, migrations=None)
    await asyncio.wait_for(started.wait(), 10)
    await svc.stop()
    # Everything fetched before the stop finished and was acked: nothing is left pending.
    info = await bus.js.consumer_info(bus.stream, "router")
    assert info.num_ack_pending == 0
    assert 0 < sum(finished.values()) < N
    assert sum(finished.values()) + info.num_pending == N
    # The rest is picked up by the next start, and nothing is handled twice.
    svc = await start_service(settings, name="router", build=build, migrations=None)
    await eventually(lambda: sum(finished.values()) >= N, timeout=20)
    await svc.stop()
    assert set(finished) == {f"SM{i}" for i in range(N)}
    assert max(finished.values()) == 1
