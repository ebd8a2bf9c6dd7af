from collections.abc import Callable
from typing import Any

from libs.bus import Bus
from libs.embedded import free_port
from libs.events import InboundReceived, TimerSet
from libs.tracing import current_traceparent, new_traceparent, trace_id_of
from tests.harness import EventCollector


def inbound(sid: str, thread: str = "15551234567", body: str = "hi") -> InboundReceived:
    return InboundReceived(
        thread=thread,
        message_sid=sid,
        from_number="+" + thread,
        to_number="+15550000000",
        body=body,
    )


async def test_streams_follow_the_design(bus: Bus) -> None:
    info = await bus.js.stream_info(bus.stream)
    assert info.config.duplicate_window >= 3600
    assert info.config.max_age == 30 * 86400
    assert f"{bus.prefix}inbound.>" in (info.config.subjects or [])
    dlq = await bus.js.stream_info(bus.dlq_stream)
    assert f"{bus.prefix}dlq.>" in (dlq.config.subjects or [])
    await bus.ensure_streams()  # idempotent


async def test_publish_dedups_on_the_events_own_id(bus: Bus, collector: EventCollector) -> None:
    first = await bus.publish(inbound("SM1", body="first"))
    again = await bus.publish(inbound("SM1", body="retry with a new event id"))
    other = await bus.publish(inbound("SM2"))
    assert not first.duplicate and again.duplicate and not other.duplicate
    assert again.seq == first.seq
    await collector.wait_for(InboundReceived, count=2)
    await collector.assert_none(InboundReceived, lambda e: e.body == "retry with a new event id", within=0.2)
    assert [e.message_sid for e in collector.of_type(InboundReceived)] == ["SM1", "SM2"]
    assert collector.of_type(InboundReceived)[0].body == "first"


async def test_publish_carries_traceparent_of_the_current_trace(bus: Bus, collector: EventCollector) -> None:
    parent = new_traceparent()
    token = current_traceparent.set(parent)
    try:
        await bus.publish(inbound("SM3"))
    finally:
        current_traceparent.reset(token)
    await bus.publish(inbound("SM4"))
    await collector.wait_for(InboundReceived, count=2)
    first, second = collector.headers[:2]
    assert first["Nats-Msg-Id"] == "inbound.received:SM3"
    assert trace_id_of(first["traceparent"]) == trace_id_of(parent)
    assert first["traceparent"] != parent  # a new span in the same trace
    assert trace_id_of(second["traceparent"]) not in (None, trace_id_of(parent))


async def test_namespaces_isolate_tests(
    bus: Bus, make_settings: Callable[..., Any], collector: EventCollector
) -> None:
    other = await Bus.connect(make_settings(namespace="otherns" + bus.settings.namespace), "t2")
    try:
        await other.ensure_streams()
        from datetime import UTC, datetime

        await other.publish(
            TimerSet(thread="1", timer_id="x", kind="workflow_delay", fire_at=datetime.now(UTC))
        )
        await collector.assert_none(TimerSet, within=0.5)
    finally:
        await other.js.delete_stream(other.stream)
        await other.js.delete_stream(other.dlq_stream)
        await other.close()


async def test_connects_through_a_comma_separated_server_list(
    nats_url: str, make_settings: Callable[..., Any]
) -> None:
    """REPLYLINE_NATS_URL may list a cluster's servers; one that is down is skipped."""
    dead = f"nats://127.0.0.1:{free_port()}"
    settings = make_settings(nats_url=f"{dead}, {nats_url}", nats_replicas=1)
    bus = await Bus.connect(settings, "test-server-list")
    try:
        assert bus.nc.is_connected
        assert bus.nc.connected_url is not None and bus.nc.connected_url.port == int(
            nats_url.rsplit(":", 1)[1]
        )
        assert {f"{u.hostname}:{u.port}" for u in bus.nc.servers} >= {dead[7:], nats_url[7:]}
        await bus.ensure_streams()
        info = await bus.js.stream_info(bus.stream)
        assert info.config.num_replicas == 1
    finally:
        await bus.close()
