"""``inbound.routed``: what the drafter does with each routed lead message.

Routing applies per message. ``draft`` is drafted (services/drafter/replying.py), or with
bursts on (``burst_debounce_s`` > 0) held until its burst's timer fires
(services/drafter/bursts.py); ``needs_review`` goes to a person
(services/drafter/review.py); ``forward`` (HUMAN_TAKEOVER) goes to the owners as it is
(services/drafter/takeover.py); an opt-out or log-only thread drafts nothing more.

Failure policy for drafting (docs/drafter.md): primary provider -> fallback provider
-> the message goes to the manual-intervention queue with an owner alert. There is
no silent path: either the owner gets an approval prompt or an alert. Templates are
used only when no endpoint is configured at all, never as an LLM fallback, because a
template answer to a question the AI was meant to handle would read as a non-answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.consumer import Delivery, Drop, Retry
from libs.events import ContactPaused, InboundRouted, thread_of
from services.drafter.after_hours import acknowledge_if_closed
from services.drafter.bursts import DROPS_BURST, Bursts
from services.drafter.deps import Deps
from services.drafter.lead_messages import message_of
from services.drafter.replying import Replier
from services.drafter.review import is_stale, needs_review, resolve_for_thread, skip_stale
from services.drafter.store import Q, draft_of
from services.drafter.takeover import Console


@dataclass(frozen=True)
class Drafting:
    deps: Deps
    replier: Replier
    bursts: Bursts
    console: Console

    async def on_routed(self, event: InboundRouted, d: Delivery) -> Drop | Retry | None:
        deps = self.deps
        if event.decision == "forward":
            # HUMAN_TAKEOVER: a person answers this thread; nothing of it is drafted.
            await self.bursts.drop(event.thread, f"{event.decision}:{event.rule}")
            await self.console.forward(event)
            return None
        if event.decision in DROPS_BURST:
            await self.bursts.drop(event.thread, f"{event.decision}:{event.rule}")
            return None
        # Before the draft: the lead hears "we're closed" first, the reply follows.
        await acknowledge_if_closed(
            event, profile=deps.profile, outbox=deps.outbox, clock=deps.clock
        )
        if event.decision == "needs_review":
            await needs_review(deps, event)
            if self.bursts.on:
                await self.bursts.review(event)
            return None
        if event.decision != "draft":
            return None  # owner commands, help, duplicates: not ours
        if self.bursts.on:
            await self.bursts.collect(event)
            return None
        async with deps.pool.acquire() as conn:
            existing = draft_of(await conn.fetchrow(Q.draft_for_inbound, event.message_sid))
            if existing is None and await is_stale(conn, event):
                await skip_stale(conn, event)
                return None
        return await self.replier.draft(event.thread, event.from_number, [message_of(event)], d)

    async def on_paused(self, event: ContactPaused, d: Delivery) -> None:
        """A paused thread drafts nothing more, so its open burst is dropped; a resumed one
        leaves the manual-intervention queue (someone handled it)."""
        if event.paused:
            await self.bursts.drop(thread_of(event.number), "paused")
            return
        await resolve_for_thread(self.deps.pool, event)
