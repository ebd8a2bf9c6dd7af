"""What a handler sees and answers: the delivery, the typed decisions, batching.

A handler is ``async (event, delivery) -> Decision``: ``None`` acks, ``Retry(delay)``
naks with a delay, ``Drop(reason)`` sends the event to the DLQ. ``Batched(handler)``
lets the consumer (libs/consumer.py) run it in a batch's shared transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg

from libs import bus as busmod


@dataclass(frozen=True, slots=True)
class Retry:
    """Transient failure: redeliver after ``delay`` seconds."""

    delay: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Drop:
    """Permanent failure: never redeliver; the event goes to the DLQ."""

    reason: str


Decision = Retry | Drop | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a handler may know about the message besides the event."""

    msg: Msg
    subject: str
    stream_seq: int
    num_delivered: int
    headers: Mapping[str, str]
    #: For a replayed event (``replay.<service>.<subject>``): its sequence in PIPELINE
    #: when it was first published. None for everything else.
    original_seq: int | None = None

    @property
    def seq(self) -> int:
        """The sequence ordering and consent decisions compare: the original one for a
        replay, so replaying an old START from the DLQ cannot look newer than a STOP."""
        return self.original_seq if self.original_seq is not None else self.stream_seq

    async def in_progress(self) -> None:
        """Tell JetStream we are still working (long LLM calls)."""
        await self.msg.in_progress()


Handler = Callable[[Any, Delivery], Awaitable[Decision]]


@dataclass(frozen=True, slots=True)
class Batched:
    """A handler whose events may share one transaction with others of the same fetch.

    Its writes and events go through ``outbox.unit()`` on ``u.conn`` as its LAST step:
    nothing after the unit may assume the commit happened (it happens when the batch
    ends). ``HANDLERS = {InboundReceived: Batched(router.on_received)}``.
    """

    handler: Handler

    async def __call__(self, event: Any, delivery: Delivery) -> Decision:
        return await self.handler(event, delivery)


def original_seq(subject: str, headers: Mapping[str, str], stream_seq: int) -> int | None:
    """The original sequence a replayed event carries (``Replyline-Replay-Seq``).

    Trusted only on ``replay.*`` subjects, which only the operator's credentials may
    publish (docs/operations.md), and only when it is older than the copy itself.
    """
    if not subject.startswith("replay."):
        return None
    raw = headers.get(busmod.H_REPLAY_SEQ, "")
    if not raw.isdigit():
        return None
    seq = int(raw)
    return seq if 0 < seq < stream_seq else None
