"""A replayed event keeps its original stream sequence (Delivery.seq), and only a replay may claim one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from libs import bus as busmod
from libs.bus import Bus
from libs.consumer import Delivery, original_seq
from libs.events import InboundReceived
from libs.replay import replay_range
from libs.service import ServiceContext
from tests.harness import eventually, start_service
from tests.libs.test_bus import inbound


def test_original_sequence_is_trusted_only_on_replay_subjects() -> None:
    header = {busmod.H_REPLAY_SEQ: "7"}
    assert original_seq("replay.router.inbound.received.1555", header, 40) == 7
    # Anyone publishing an ordinary subject could forge the header: ignored.
    assert original_seq("inbound.received.1555", header, 40) is None
    # A claim newer than the copy itself, or garbage, is ignored too.
    assert original_seq("replay.router.inbound.received.1555", {busmod.H_REPLAY_SEQ: "41"}, 40) is None
    assert original_seq("replay.router.inbound.received.1555", {busmod.H_REPLAY_SEQ: "-1"}, 40) is None


async def test_range_replay_is_handled_with_its_original_sequence(
    make_settings: Callable[..., Any], bus: Bus
) -> None:
    seen: list[tuple[str, int, int]] = []

    async def handle(event: InboundReceived, d: Delivery) -> None:
        seen.append((d.subject.split(".", 1)[0], d.stream_seq, d.seq))

    async def build(ctx: ServiceContext[Any]) -> dict[type, Any]:
        return {InboundReceived: handle}

    svc = await start_service(make_settings(), name="router", build=build, migrations=None)
    ack = await bus.publish(inbound("SM-seq"))
    await eventually(lambda: seen)
    await replay_range(bus, consumer="router", subject="inbound.received.>")
    await eventually(lambda: len(seen) == 2)
    first, replayed = seen
    assert first == ("inbound", ack.seq, ack.seq)
    assert replayed[0] == "replay" and replayed[1] > ack.seq and replayed[2] == ack.seq
    await svc.stop()
