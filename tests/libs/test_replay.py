from collections.abc import Callable
from typing import Any

from libs.bus import Bus
from libs.consumer import Delivery, Drop
from libs.events import InboundReceived
from libs.health import dlq_depth
from libs.replay import replay_dlq, replay_range
from libs.service import ServiceContext
from tests.harness import eventually, start_service, stays
from tests.libs.test_bus import inbound


async def test_dlq_entry_is_replayed_to_its_service_once(make_settings: Callable[..., Any], bus: Bus) -> None:
    broken = True
    handled: list[tuple[str, str]] = []

    async def handle(event: InboundReceived, d: Delivery) -> Drop | None:
        if broken:
            return Drop("classifier config missing")
        handled.append((event.message_sid, d.subject))
        return None

    async def build(ctx: ServiceContext[Any]) -> dict[type, Any]:
        return {InboundReceived: handle}

    svc = await start_service(make_settings(), name="router", build=build, migrations=None)
    await bus.publish(inbound("SM-dlq"))
    await eventually(lambda: dlq_depth(bus))
    broken = False  # the operator fixed the cause

    dry = await replay_dlq(bus, dry_run=True)
    assert [(r.consumer, r.original_subject) for r in dry] == [("router", "inbound.received.15551234567")]
    assert await dlq_depth(bus) == 1  # a dry run changes nothing

    [done] = await replay_dlq(bus)
    assert done.reason == "classifier config missing" and not done.duplicate
    await eventually(lambda: handled)
    assert handled == [("SM-dlq", "replay.router.inbound.received.15551234567")]
    assert await dlq_depth(bus) == 0
    assert await replay_dlq(bus) == []
    await svc.stop()


async def test_range_replay_targets_one_consumer_and_is_idempotent(
    make_settings: Callable[..., Any], bus: Bus
) -> None:
    seen: dict[str, list[str]] = {"router": [], "drafter": []}

    def build_for(name: str) -> Any:
        async def handle(event: InboundReceived, d: Delivery) -> None:
            seen[name].append(event.message_sid)

        async def build(ctx: ServiceContext[Any]) -> dict[type, Any]:
            return {InboundReceived: handle}

        return build

    router = await start_service(make_settings(), name="router", build=build_for("router"), migrations=None)
    drafter = await start_service(
        make_settings(), name="drafter", build=build_for("drafter"), migrations=None
    )
    for i in range(3):
        await bus.publish(inbound(f"SM{i}"))
    await eventually(lambda: len(seen["router"]) == 3 and len(seen["drafter"]) == 3)

    first = await replay_range(bus, consumer="router", subject="inbound.received.>", start_seq=2)
    assert [r.original_seq for r in first] == [2, 3] and not any(r.duplicate for r in first)
    again = await replay_range(bus, consumer="router", subject="inbound.received.>", start_seq=2)
    assert all(r.duplicate for r in again)  # stored once: replaying twice is harmless
    await eventually(lambda: len(seen["router"]) == 5)
    await stays(lambda: len(seen["router"]) == 5 and len(seen["drafter"]) == 3, within=0.3)
    await router.stop()
    await drafter.stop()
    assert seen["router"] == ["SM0", "SM1", "SM2", "SM1", "SM2"]
    assert seen["drafter"] == ["SM0", "SM1", "SM2"]  # other services are not disturbed
