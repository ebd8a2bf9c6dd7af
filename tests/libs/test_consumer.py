import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig

from libs import bus as busmod
from libs.bus import Bus
from libs.consumer import Delivery, Drop, Retry
from libs.events import ContactOptout, InboundReceived, decode
from libs.service import ServiceContext
from tests.harness import eventually, start_service, stays
from tests.libs.test_bus import inbound


async def run_handlers(make_settings: Callable[..., Any], handlers: dict[type, Any], **overrides: Any) -> Any:
    async def build(ctx: ServiceContext[Any]) -> dict[type, Any]:
        return handlers

    return await start_service(make_settings(**overrides), name="router", build=build, migrations=None)


async def dlq_messages(bus: Bus, expected: int, timeout: float = 10.0) -> list[Any]:
    sub = await bus.js.pull_subscribe(f"{bus.prefix}dlq.>", stream=bus.dlq_stream)
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        try:
            got += await sub.fetch(batch=10, timeout=0.5)
        except Exception:
            pass
    for m in got:
        await m.ack()
    await sub.unsubscribe()
    return got


async def test_retry_naks_with_delay_then_succeeds(make_settings: Callable[..., Any], bus: Bus) -> None:
    calls: list[tuple[int, float]] = []
    done = asyncio.Event()

    async def handle(event: InboundReceived, d: Delivery) -> Retry | None:
        calls.append((d.num_delivered, time.monotonic()))
        if d.num_delivered < 3:
            return Retry(0.3, "not yet")
        done.set()
        return None

    svc = await run_handlers(make_settings, {InboundReceived: handle})
    await bus.publish(inbound("SM1"))
    await asyncio.wait_for(done.wait(), 10)
    await svc.stop()
    assert [n for n, _ in calls] == [1, 2, 3]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(calls)]
    assert all(g >= 0.25 for g in gaps), gaps


async def test_exception_is_retried_with_configured_backoff(
    make_settings: Callable[..., Any], bus: Bus
) -> None:
    calls: list[float] = []
    done = asyncio.Event()

    async def handle(event: InboundReceived, d: Delivery) -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise ConnectionError("postgres restarting")
        done.set()

    svc = await run_handlers(make_settings, {InboundReceived: handle}, backoff_s=[0.6, 1.0])
    await bus.publish(inbound("SM1"))
    await asyncio.wait_for(done.wait(), 10)
    await svc.stop()
    assert calls[1] - calls[0] >= 0.5


async def test_poison_event_goes_to_dlq_with_headers(make_settings: Callable[..., Any], bus: Bus) -> None:
    handled: list[str] = []

    async def handle(event: InboundReceived, d: Delivery) -> None:
        handled.append(event.message_sid)

    svc = await run_handlers(make_settings, {InboundReceived: handle})
    subject = bus.subject_for("inbound.received", "15551234567")
    await bus.js.publish(
        subject,
        b"{not json",
        headers={
            "Nats-Msg-Id": "poison-1",
            "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        },
    )
    await bus.publish(inbound("SM-after-poison"))
    [copy] = await dlq_messages(bus, 1)
    await eventually(lambda: handled == ["SM-after-poison"])
    await stays(lambda: handled == ["SM-after-poison"], within=0.3)  # the poison is never handled
    await svc.stop()
    assert handled == ["SM-after-poison"]  # the poison did not block the thread
    assert copy.data == b"{not json"
    h = copy.headers
    assert h[busmod.H_DLQ_REASON].startswith("malformed event")
    assert h[busmod.H_DLQ_SUBJECT] == subject
    assert h[busmod.H_DLQ_CONSUMER] == "router"
    assert h["traceparent"].startswith("00-" + "a" * 32)
    assert h["Replyline-Original-Msg-Id"] == "poison-1"
    info = await bus.js.consumer_info(bus.stream, "router")
    assert info.num_ack_pending == 0 and info.num_redelivered == 0  # terminated, not redelivered


async def test_handler_drop_and_exhausted_retries_reach_dlq(
    make_settings: Callable[..., Any], bus: Bus
) -> None:
    deliveries: dict[str, int] = {}

    async def handle(event: InboundReceived, d: Delivery) -> Retry | Drop:
        deliveries[event.message_sid] = d.num_delivered
        if event.message_sid == "SM-drop":
            return Drop("owner number unknown")
        raise RuntimeError("always fails")

    svc = await run_handlers(make_settings, {InboundReceived: handle}, backoff_s=[0.1], max_deliver=3)
    await bus.publish(inbound("SM-drop", thread="15550001111"))
    await bus.publish(inbound("SM-fail", thread="15550002222"))
    copies = await dlq_messages(bus, 2)
    await svc.stop()
    reasons = {decode(c.data).message_sid: c.headers[busmod.H_DLQ_REASON] for c in copies}  # type: ignore[attr-defined]
    assert reasons["SM-drop"] == "owner number unknown"
    assert reasons["SM-fail"].startswith("deliveries exhausted: RuntimeError")
    assert deliveries == {"SM-drop": 1, "SM-fail": 3}


async def test_advisory_forwarder_dead_letters_a_crash_loop(
    make_settings: Callable[..., Any], bus: Bus
) -> None:
    """A consumer that never acks (the process dies every time) still ends in the DLQ."""

    async def handle(event: InboundReceived, d: Delivery) -> None:
        return None

    svc = await run_handlers(make_settings, {InboundReceived: handle})  # starts the forwarder for 'router'
    await svc.stop()
    # Simulate the crashing replica: fetch without ever acking until max_deliver.
    await bus.js.add_consumer(
        bus.stream,
        ConsumerConfig(durable_name="router", filter_subjects=[bus.subject_for("inbound.received", ">")],
                       ack_policy=AckPolicy.EXPLICIT, ack_wait=0.3, max_deliver=2),
    )  # fmt: skip
    await bus.publish(inbound("SM-crash"))
    sub = await bus.js.pull_subscribe_bind("router", bus.stream)
    for _ in range(2):
        await sub.fetch(batch=1, timeout=3)  # delivered, never acked
    # The thing under test: the last delivery's ack_wait (0.3 s) runs out while no replica
    # runs. The server shows nothing to wait on (the advisory is only sent at the next
    # pull), so this sleep outlasts it.
    await asyncio.sleep(0.6)
    svc = await run_handlers(
        make_settings, {InboundReceived: handle}, ack_wait_s=0.3, max_deliver=2, backoff_s=[0.1]
    )
    [copy] = await dlq_messages(bus, 1)
    await svc.stop()
    assert decode(copy.data).message_sid == "SM-crash"  # type: ignore[attr-defined]
    assert copy.headers[busmod.H_DLQ_REASON] == "max_deliveries"
    assert copy.headers["Replyline-Original-Msg-Id"] == "inbound.received:SM-crash"


async def test_one_thread_in_order_threads_in_parallel(make_settings: Callable[..., Any], bus: Bus) -> None:
    log: list[tuple[str, str, str]] = []
    all_done = asyncio.Event()

    async def handle(event: InboundReceived, d: Delivery) -> None:
        log.append(("start", event.thread, event.message_sid))
        await asyncio.sleep(0.3 if event.body == "slow" else 0.01)  # handler work: A1 is slow
        log.append(("end", event.thread, event.message_sid))
        if len(log) == 8:
            all_done.set()

    svc = await run_handlers(make_settings, {InboundReceived: handle})
    await bus.publish(inbound("A1", thread="15550000011", body="slow"))
    await bus.publish(inbound("A2", thread="15550000011"))
    await bus.publish(inbound("A3", thread="15550000011"))
    await bus.publish(inbound("B1", thread="15550000022"))
    await asyncio.wait_for(all_done.wait(), 10)
    await svc.stop()
    thread_a = [(kind, sid) for kind, t, sid in log if t == "15550000011"]
    assert thread_a == [
        ("start", "A1"),
        ("end", "A1"),
        ("start", "A2"),
        ("end", "A2"),
        ("start", "A3"),
        ("end", "A3"),
    ]
    # B1 was not held behind the slow A1.
    assert log.index(("end", "15550000022", "B1")) < log.index(("end", "15550000011", "A1"))


async def test_consumer_filter_follows_the_handlers(make_settings: Callable[..., Any], bus: Bus) -> None:
    async def handle(event: InboundReceived, d: Delivery) -> None:
        return None

    svc = await run_handlers(make_settings, {InboundReceived: handle, ContactOptout: handle})
    await svc.stop()
    # A new release with fewer handlers updates the existing durable in place.
    svc = await run_handlers(make_settings, {InboundReceived: handle})
    info = await bus.js.consumer_info(bus.stream, "router")
    await svc.stop()
    assert info.config.filter_subjects == [
        bus.subject_for("inbound.received", ">"),
        f"{bus.prefix}replay.router.>",
    ]
