"""Forward JetStream's MAX_DELIVERIES / MSG_TERMINATED advisories into DLQ copies.

The DLQ stream captures the advisories themselves, so none is lost while a
service is down. This forwarder, one per service consumer, turns each advisory
into a copy of the original event (looked up by stream sequence) with its
headers. A handler that drops an event has already published the same copy
(same Nats-Msg-Id) with its reason; this path covers crash loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import structlog
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from libs import bus as busmod
from libs.bus import Bus

log = structlog.get_logger("dlq")


async def forward_advisories(bus: Bus, consumer: str, stop: asyncio.Event) -> None:
    durable = f"{consumer}_dlq_forwarder"
    config = ConsumerConfig(
        durable_name=durable,
        filter_subjects=bus.advisory_subjects(consumer),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=30,
    )
    await bus.js.add_consumer(bus.dlq_stream, config)  # create-or-update
    sub = await bus.js.pull_subscribe_bind(durable, bus.dlq_stream)
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch=32, timeout=1.0)
            except (NatsTimeoutError, TimeoutError):
                continue
            except Exception as exc:
                log.warning("dlq_fetch_failed", error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                continue
            for msg in msgs:
                try:
                    await _forward(bus, consumer, msg.subject, msg.data)
                except Exception as exc:
                    log.warning("dlq_forward_failed", error=repr(exc))
                    await msg.nak(delay=2.0)
                else:
                    await msg.ack()
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def _forward(bus: Bus, consumer: str, advisory_subject: str, data: bytes) -> None:
    advisory = json.loads(data)
    seq = int(advisory["stream_seq"])
    kind = "max_deliveries" if ".MAX_DELIVERIES." in advisory_subject else "terminated"
    try:
        original = await bus.js.get_msg(bus.stream, seq)
    except NotFoundError:
        log.error("dlq_original_gone", seq=seq, kind=kind)
        return
    await publish_dlq_copy(
        bus,
        consumer=consumer,
        subject=original.subject or "",
        seq=seq,
        data=original.data or b"",
        headers=dict(original.headers or {}),
        reason=advisory.get("reason") or kind,
        deliveries=int(advisory.get("deliveries", 0)),
    )
    log.warning("dead_lettered", seq=seq, kind=kind, subject=original.subject)


async def publish_dlq_copy(
    bus: Bus,
    *,
    consumer: str,
    subject: str,
    seq: int,
    data: bytes,
    headers: dict[str, str],
    reason: str,
    deliveries: int,
) -> None:
    """Copy an event into the DLQ stream with its original headers plus ours.

    The Nats-Msg-Id makes the copy from the handler (which knows the reason) and
    the one from the advisory forwarder (which covers crashes) the same message.
    """
    original_msg_id = headers.pop("Nats-Msg-Id", "")
    headers.update(
        {
            busmod.H_DLQ_REASON: reason[:1000],
            busmod.H_DLQ_SUBJECT: subject,
            busmod.H_DLQ_SEQ: str(seq),
            busmod.H_DLQ_CONSUMER: consumer,
            busmod.H_DLQ_DELIVERIES: str(deliveries),
            "Replyline-Original-Msg-Id": original_msg_id,
            "Nats-Msg-Id": f"dlq:{consumer}:{seq}",
        }
    )
    dlq_subject = f"{bus.prefix}dlq.{consumer}.{bus.unprefixed(subject)}"
    await bus.js.publish(dlq_subject, data, headers=headers)
