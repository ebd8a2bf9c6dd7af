"""A drafter handler's unit of work (libs/event_outbox.py) and what many handlers do in it.

Every handler opens one unit (``async with deps.outbox.unit() as u``) and passes it down:
its rows, its audit entries and the events they mean commit together, and the events
are published after the commit (never before: a decision can never name a draft that
is not committed). ``record`` is the "audit row + the events of the same fact" pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from libs.db import audit
from libs.event_outbox import Unit
from libs.events import Event, TimerCancel
from services.drafter.ids import derived_id, expiry_timer_id
from services.drafter.store import Draft

#: The service name in audit rows.
SERVICE = "drafter"


async def record(
    u: Unit,
    action: str,
    thread: str | None,
    details: Mapping[str, Any],
    *,
    actor: str = "SYSTEM",
    emit: Sequence[Event] = (),
) -> None:
    """One audit entry and the events of the same fact, in the caller's unit."""
    await audit(u.conn, service=SERVICE, action=action, thread=thread, actor=actor, details=details)
    for event in emit:
        u.emit(event)


def cancel_expiry(draft: Draft, why: str) -> TimerCancel:
    """The ``timer.cancel`` of a version's expiry timer (decided, withdrawn, superseded).

    ``why`` is part of the event id, so a redelivered handler emits the same event."""
    return TimerCancel(
        thread=draft.thread,
        id=derived_id(why, draft.draft_id, draft.version),
        timer_id=expiry_timer_id(draft.draft_id),
    )


__all__ = ["SERVICE", "Unit", "cancel_expiry", "record"]
