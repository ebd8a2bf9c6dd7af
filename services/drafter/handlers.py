"""The drafter's parts, and the table of which event each handler takes.

Where things live (docs/drafter.md, "Where things live"): drafting.py (inbound.routed),
replying.py and bursts.py (writing a draft), review.py (messages for a person),
decision.py and approvals.py (draft.decided), takeover.py (the console and human
replies), workflow_drafts.py (draft.requested), expiry.py (draft expiry timers),
withdrawal.py (contact.optout and withdrawn drafts), owner_channel.py (what the owners
are told).

Consistency rule for every handler: its rows and the events they mean commit in one
unit of work (libs/event_outbox.py, services/drafter/work.py); the events are published
after the commit, and a crash in between leaves them to the outbox's sweeper. An event
is therefore never on the bus before the rows it describes (no decision can name a
draft that is not committed), and a committed unit always gets its events into the
stream. Event ids stay deterministic (ids.py), so a handler that runs again emits the
same events and JetStream stores them once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from libs.consumer import Delivery, Drop, Handler, Retry
from libs.events import (
    ContactOptout,
    ContactPaused,
    DraftDecided,
    DraftRequested,
    Event,
    InboundRouted,
    OutboundFailed,
    OutboundSent,
    TimerFired,
)
from services.drafter.approvals import Approvals
from services.drafter.bursts import Bursts
from services.drafter.deps import Deps
from services.drafter.drafting import Drafting
from services.drafter.expiry import Expiry
from services.drafter.replying import Replier
from services.drafter.takeover import Console
from services.drafter.withdrawal import OptOuts
from services.drafter.workflow_drafts import WorkflowDrafts


@dataclass
class Drafter:
    """Builds every part once over the shared Deps."""

    deps: Deps

    def __post_init__(self) -> None:
        deps = self.deps
        self.console = Console(deps.settings, deps.bus, deps.outbox, deps.owners)
        self.replier = Replier(deps)
        self.bursts = Bursts(deps, self.replier)
        self.drafting = Drafting(deps, self.replier, self.bursts, self.console)
        self.approvals = Approvals(deps, self.console)
        self.workflow_drafts = WorkflowDrafts(deps)
        self.expiry = Expiry(deps)
        self.optouts = OptOuts(deps.bus, deps.outbox)

    async def on_timer(self, event: TimerFired, d: Delivery) -> Drop | Retry | None:
        """``timer.fired``: the kinds the drafter set; the scheduler's other timers are not ours."""
        if event.kind == "burst_debounce":
            return await self.bursts.on_timer(event, d)
        if event.kind == "draft_expiry":
            return await self.expiry.on_timer(event, d)
        return None

    async def on_outbound(self, event: OutboundSent | OutboundFailed, d: Delivery) -> None:
        """The delivery result of a human reply, for the owner who sent it by SMS."""
        await self.console.on_outcome(event)


def build_handlers(drafter: Drafter) -> Mapping[type[Event], Handler]:
    """HANDLERS: one handler per event type the drafter consumes."""
    return {
        InboundRouted: drafter.drafting.on_routed,
        DraftDecided: drafter.approvals.on_decided,
        DraftRequested: drafter.workflow_drafts.on_requested,
        TimerFired: drafter.on_timer,
        ContactPaused: drafter.drafting.on_paused,
        ContactOptout: drafter.optouts.on_optout,
        OutboundSent: drafter.on_outbound,
        OutboundFailed: drafter.on_outbound,
    }


__all__ = ["Drafter", "build_handlers"]
