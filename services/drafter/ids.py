"""Deterministic ids shared by every drafter module (no module needs handlers.py for them).

Ids of events derived from a draft are fixed, so a retried handler publishes the same
event and JetStream's duplicate window drops the copy; timer ids name what a timer is
for, so a later ``timer.set`` / ``timer.cancel`` of the same id replaces or cancels it.
"""

from __future__ import annotations

import uuid

_EVENT_IDS = uuid.UUID("6f1d2c1e-8a43-4f7e-9a51-2d0c3b7e5a10")


def derived_id(*parts: object) -> str:
    return str(uuid.uuid5(_EVENT_IDS, ":".join(str(p) for p in parts)))


def expiry_timer_id(draft_id: str) -> str:
    return f"draft_expiry:{draft_id}"


def burst_timer_id(burst_id: str) -> str:
    return f"burst_debounce:{burst_id}"


def to_uuid(value: str) -> uuid.UUID:
    """A draft id from an event (lead- or owner-controlled): ValueError when malformed."""
    return uuid.UUID(value)
