"""Draft expiry: a version undecided after ``draft_expiry_s`` goes to the manual queue.

``OwnerChannel.announce`` sets the timer (id ``draft_expiry:<draft_id>``, one per draft:
a new version replaces it); a decision cancels it (``work.cancel_expiry``). When it fires on a version still
pending, the owners are told once and the lead's message waits for a person.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from libs import metrics
from libs.consumer import Delivery, Drop
from libs.events import TimerFired
from services.drafter import owner_texts
from services.drafter.deps import Deps
from services.drafter.ids import to_uuid
from services.drafter.store import Draft, Q, draft_of, enqueue_answered
from services.drafter.work import Unit, record

log = structlog.get_logger("drafter")


@dataclass(frozen=True)
class Expiry:
    deps: Deps

    async def on_timer(self, event: TimerFired, d: Delivery) -> Drop | None:
        """``timer.fired`` kind ``draft_expiry``."""
        draft_id = event.payload.get("draft_id")
        if not isinstance(draft_id, str):
            return Drop(f"draft_expiry timer {event.timer_id} without a draft_id")
        async with self.deps.outbox.unit() as u:
            conn = u.conn
            try:
                draft = draft_of(await conn.fetchrow(Q.current_version, to_uuid(draft_id)))
            except ValueError:
                return Drop(f"draft_expiry timer {event.timer_id}: bad draft_id {draft_id!r}")
            if draft is None:
                return Drop(f"draft_expiry timer {event.timer_id}: unknown draft {draft_id}")
            version = event.payload.get("version")
            stale = isinstance(version, int) and version != draft.version
            if not draft.pending or stale:
                # Decided (or edited, which set a newer timer) in time: nothing to say.
                log.info("expiry_ignored", draft_id=draft_id, status=draft.status, stale=stale)
                return None
            if await conn.execute(Q.mark_expiry_alerted, to_uuid(draft_id), draft.version) == "UPDATE 0":
                return None  # alerted already (a redelivered or duplicate timer)
            await self._expire(u, draft_id, draft, late=event.late)
        metrics.DRAFTS_EXPIRED.inc()  # every branch that sends no alert returned above
        return None

    async def _expire(
        self, u: Unit, draft_id: str, draft: Draft, *, late: bool
    ) -> None:
        """Queue the lead's message for a person and tell the owners (``draft_id`` as the timer named it)."""
        settings = self.deps.settings
        key = f"{draft_id}:{draft.version}"
        await enqueue_answered(
            u.conn,
            draft,
            key=f"draft_expired:{key}",
            reason="draft_expired",
            detail=f"draft #{draft.ref} undecided after {settings.draft_expiry_s:g}s",
        )
        await record(
            u,
            "draft_expired",
            draft.thread,
            {"draft_id": draft_id, "ref": draft.ref, "version": draft.version, "late": late},
        )
        self.deps.owners.tell_all(
            u,
            owner_texts.draft_expired(draft.ref, draft.to_number, settings.draft_expiry_s / 3600),
            f"expired:{key}",
        )
