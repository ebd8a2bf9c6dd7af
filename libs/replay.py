"""Re-deliver events to one service's consumer: from the DLQ, or a subject range of PIPELINE.

A replayed event is published on ``replay.<service>.<original subject>``, which
only that service's durable consumer reads. Its Nats-Msg-Id is derived from the
original stream sequence, so replaying the same event twice inside the duplicate
window stores it once; beyond that window the handlers' own idempotency (unique
MessageSid, outbox rows, draft versions) applies. It also carries
``Replyline-Replay-Seq``, the sequence of the first publication, which the
consumer exposes as ``Delivery.seq``: per-thread order and consent decisions use
it, so a START replayed from the DLQ after a newer STOP is still the older one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import msgspec
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs import bus as busmod
from libs.bus import Bus


class Replayed(msgspec.Struct, frozen=True, kw_only=True):
    consumer: str
    original_subject: str
    original_seq: int
    replay_subject: str
    duplicate: bool
    reason: str = ""


async def read_current(
    bus: Bus, stream: str, subject: str, config: ConsumerConfig, *, batch: int = 100
) -> AsyncIterator[Any]:
    """Every message currently in ``stream`` matching ``subject`` (no durable left behind).

    Also what `replyline thread` reads a thread's events with."""
    config.ack_policy = AckPolicy.NONE
    config.inactive_threshold = 30.0
    sub = await bus.js.pull_subscribe(subject, stream=stream, config=config)
    try:
        while True:
            try:
                msgs = await sub.fetch(batch=batch, timeout=1.0)
            except (NatsTimeoutError, TimeoutError):
                return
            for msg in msgs:
                yield msg
            if msgs and msgs[-1].metadata.num_pending == 0:
                return
    finally:
        await sub.unsubscribe()


def _first_seq(headers: dict[str, str], subject: str, seq: int) -> int:
    """The sequence the event had when first published: consumers order and decide
    consent by it (libs/consumer.py ``Delivery.seq``), not by the replay's new one."""
    raw = headers.get(busmod.H_REPLAY_SEQ, "")
    if ".replay." in f".{subject}" and raw.isdigit() and 0 < int(raw) < seq:
        return int(raw)
    return seq


def _clean_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if not k.startswith("Replyline-") and k != "Nats-Msg-Id"}


async def replay_dlq(
    bus: Bus, *, consumer: str | None = None, dry_run: bool = False, keep: bool = False
) -> list[Replayed]:
    """Re-deliver dead letters to the consumer that dropped them; remove them from the DLQ."""
    subject = f"{bus.prefix}dlq.{consumer or '*'}.>"
    done: list[Replayed] = []
    config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    async for msg in read_current(bus, bus.dlq_stream, subject, config):
        headers = dict(msg.headers or {})
        target = headers.get(busmod.H_DLQ_CONSUMER, "")
        original = headers.get(busmod.H_DLQ_SUBJECT, "")
        seq = int(headers.get(busmod.H_DLQ_SEQ, "0"))
        if not target or not original:
            continue
        # A replay that died again carries the first publication's sequence: keep it.
        first_seq = _first_seq(headers, original, seq)
        replay_subject = bus.replay_subject(target, original)
        duplicate = False
        if not dry_run:
            ack = await bus.js.publish(
                replay_subject,
                msg.data,
                headers={
                    **_clean_headers(headers),
                    "Nats-Msg-Id": f"replay:dlq:{target}:{seq}",
                    busmod.H_REPLAY_SEQ: str(first_seq),
                },
            )
            duplicate = ack.duplicate or False
            if not keep:
                await bus.js.delete_msg(bus.dlq_stream, msg.metadata.sequence.stream)
        done.append(
            Replayed(
                consumer=target,
                original_subject=bus.unprefixed(original),
                original_seq=seq,
                replay_subject=replay_subject,
                duplicate=duplicate,
                reason=headers.get(busmod.H_DLQ_REASON, ""),
            )
        )
    return done


async def replay_range(
    bus: Bus,
    *,
    consumer: str,
    subject: str,
    since: datetime | None = None,
    start_seq: int | None = None,
    end_seq: int | None = None,
    dry_run: bool = False,
) -> list[Replayed]:
    """Re-deliver PIPELINE events matching ``subject`` (e.g. ``inbound.received.>``) to ``consumer``."""
    if since is not None:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since)
    elif start_seq is not None:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)
    else:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    done: list[Replayed] = []
    async for msg in read_current(bus, bus.stream, bus.prefix + subject, config):
        seq = msg.metadata.sequence.stream
        if end_seq is not None and seq > end_seq:
            break
        replay_subject = bus.replay_subject(consumer, msg.subject)
        duplicate = False
        if not dry_run:
            original_headers = dict(msg.headers or {})
            headers = {
                **_clean_headers(original_headers),
                "Nats-Msg-Id": f"replay:{consumer}:{seq}",
                busmod.H_REPLAY_SEQ: str(_first_seq(original_headers, msg.subject, seq)),
            }
            ack = await bus.js.publish(replay_subject, msg.data, headers=headers)
            duplicate = ack.duplicate or False
        done.append(
            Replayed(
                consumer=consumer,
                original_subject=bus.unprefixed(msg.subject),
                original_seq=seq,
                replay_subject=replay_subject,
                duplicate=duplicate,
            )
        )
    return done
