"""The lead messages a draft answers, as the drafting modules pass them around."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import msgspec

from libs.events import InboundRouted
from services.drafter.store import BurstMessage


class LeadMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One routed lead message waiting for (or answered by) a draft; its fields are named
    as the ``inbound.routed`` event's, which ``message_of`` copies by name."""

    message_sid: str
    body: str
    stream_seq: int = 0
    intent: str | None = None
    language: str | None = None


def message_of(event: InboundRouted) -> LeadMessage:
    return msgspec.convert(event, LeadMessage, from_attributes=True)


def held_message(m: BurstMessage) -> LeadMessage:
    """A message held in a burst: its row's ``seq`` is the event's ``stream_seq``."""
    return LeadMessage(
        message_sid=m.message_sid, body=m.body, stream_seq=m.seq, intent=m.intent, language=m.language
    )


@dataclass(frozen=True)
class BurstToken:
    """The burst being drafted, as read when its timer fired: drafting commits only if
    no message joined it since (a newer message re-armed the timer and drafts then)."""

    burst_id: str
    fire_at: datetime
