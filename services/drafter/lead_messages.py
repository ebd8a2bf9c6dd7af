"""The lead messages a draft answers, as the drafting modules pass them around."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import msgspec

from libs.events import InboundRouted


class LeadMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One routed lead message waiting for (or answered by) a draft."""

    sid: str
    body: str
    seq: int = 0
    intent: str | None = None
    language: str | None = None


def message_of(event: InboundRouted) -> LeadMessage:
    return LeadMessage(
        sid=event.message_sid,
        body=event.body,
        seq=event.stream_seq,
        intent=event.intent,
        language=event.language,
    )


@dataclass(frozen=True)
class BurstToken:
    """The burst being drafted, as read when its timer fired: drafting commits only if
    no message joined it since (a newer message re-armed the timer and drafts then)."""

    burst_id: str
    fire_at: datetime
