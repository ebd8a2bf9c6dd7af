"""Workflow messages that need the owner's YES (``draft.requested``), and their NO.

The text is the workflow's, rendered by the scheduler; nothing is generated. A draft
like any other once written: the same prompt, expiry and decisions, except that a NO
ends the enrollment instead of pausing the thread (see ``reject``).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from libs import metrics
from libs.consumer import Delivery, Drop
from libs.events import DraftRejected, DraftRequested
from services.drafter.decision import Decision
from services.drafter.deps import Deps
from services.drafter.ids import derived_id
from services.drafter.new_drafts import Origin, Text, first_version
from services.drafter.store import Draft, Q
from services.drafter.work import cancel_expiry, record

log = structlog.get_logger("drafter")


@dataclass(frozen=True)
class WorkflowDrafts:
    deps: Deps

    async def on_requested(self, event: DraftRequested, d: Delivery) -> Drop | None:
        """A workflow message that needs the owner's YES: a draft like any other."""
        if not event.to_number.strip():
            return Drop(f"draft.requested {event.request_id} without a to_number")
        if not event.body.strip():
            return Drop(f"draft.requested {event.request_id} with an empty body")
        if await self.deps.pool.fetchrow(Q.draft_for_request, event.request_id) is not None:
            # Redelivered after the commit: the draft's events went out with it (outbox).
            return None
        draft = await self._create(event)
        metrics.DRAFTS_CREATED.labels(event.source).inc()
        log.info("draft_created", draft_id=draft.draft_id, ref=draft.ref, source=event.source)
        return None

    async def _create(self, event: DraftRequested) -> Draft:
        """Write version 1, audit it and announce it, in one unit of work."""
        deps = self.deps
        draft_id = derived_id("requested", event.request_id)
        # The workflow's text is never cut: too long, and it waits on the dashboard.
        text = Text(body=event.body, source=event.source)
        origin = Origin(
            request_id=event.request_id,
            workflow_enrollment_id=event.workflow_enrollment_id,
            workflow_step_id=event.step_id,
        )
        async with deps.outbox.unit() as u:
            draft = await first_version(
                deps, u, text, origin, draft_id=draft_id, thread=event.thread, to_number=event.to_number
            )
            await record(
                u,
                "draft_created",
                event.thread,
                {
                    "draft_id": draft_id,
                    "ref": draft.ref,
                    "version": 1,
                    "source": event.source,
                    "request_id": event.request_id,
                    "workflow_enrollment_id": event.workflow_enrollment_id,
                    "step_id": event.step_id,
                },
            )
            deps.owners.announce(u, draft)
        return draft


def reject(decision: Decision, draft: Draft) -> None:
    """NO to a workflow message: it is not sent and its enrollment ends (the scheduler).

    Unlike a rejected reply, the thread is neither paused nor queued: the lead asked
    nothing, and pausing would make the router log their next message without a draft.
    """
    ev = decision.event
    decision.u.emit(draft.event(DraftRejected, reviewer=ev.reviewer, reason=ev.notes))
    decision.u.emit(cancel_expiry(draft, "cancel"))
