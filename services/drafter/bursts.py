"""One draft per burst: a lead's messages that arrive close together get one reply.

A draftable message does not draft at once (unless ``burst_debounce_s`` is 0): it
joins the thread's open burst (or opens one) in Postgres, and the burst's durable
scheduler timer (``timer.set`` kind ``burst_debounce``, id ``burst_debounce:<id>``)
is set to ``debounce`` after this message, but never later than ``max_wait`` after
the burst's first message. When it fires, services/drafter/replying.py drafts one
reply to all of them. Both the burst (rows) and the timer (the scheduler's KV) are
durable, so a restart of the drafter or the scheduler mid-debounce loses nothing.

Routing still applies per message: a message that needs review puts its whole
burst in review (nothing of it is drafted; messages that join it later in the
window go to review too), and an opt-out or a paused thread drops the burst.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import structlog

from libs.consumer import Delivery, Drop, Retry
from libs.events import InboundRouted, TimerFired, TimerSet, utcnow
from services.drafter import owner_texts
from services.drafter.deps import Deps
from services.drafter.ids import burst_timer_id
from services.drafter.lead_messages import BurstToken, held_message, message_of
from services.drafter.replying import Replier
from services.drafter.review import is_stale, skip_stale, to_review
from services.drafter.store import (
    Burst,
    Q,
    burst_messages_of,
    burst_of,
    thread_ref,
)
from services.drafter.withdrawal import (
    DROP_REASONS,
    LEAD_WROTE,
    PAUSED,
    REVIEW,
    drop_open_burst,
    give_up,
    withdraw,
)
from services.drafter.work import Unit

log = structlog.get_logger("drafter")

#: Router decisions after which a thread's open burst is not drafted: the lead opted
#: out (the STOP itself acts at once in ingest), or the thread is paused / a person
#: handles it. A new "a human has the thread" decision belongs here too.
DROPS_BURST = frozenset({"opt_out", "log_only"})

#: The rule shown to the owner for a message that joined a burst in review.
BURST_RULE = "same burst as a message that needs review"


@dataclass
class Bursts:
    deps: Deps
    replier: Replier

    @property
    def on(self) -> bool:
        return self.deps.settings.burst_debounce_s > 0

    def _fire_at(self, first_at: datetime, now: datetime) -> datetime:
        s = self.deps.settings
        return min(
            now + timedelta(seconds=s.burst_debounce_s), first_at + timedelta(seconds=s.burst_max_wait_s)
        )

    async def _join(
        self, conn: asyncpg.Connection, event: InboundRouted, *, review: str = ""
    ) -> tuple[Burst, bool]:
        """Add the message to the thread's open burst (a new one if none); the burst after it,
        and whether it was in review before this message."""
        now = utcnow()
        row = burst_of(await conn.fetchrow(Q.open_burst, event.thread))
        if row is None:
            values = {
                "burst_id": uuid.uuid4(),
                "thread": event.thread,
                "number": event.from_number,
                "status": "review" if review else "open",
                "now": now,
                "fire_at": self._fire_at(now, now),
                "reason": review,
            }
            row = Burst(**dict(await conn.fetchrow(Q.insert_burst.sql, *Q.insert_burst.bind(values))))
            was_review = False
        else:
            was_review = row.status == "review"
            fire_at = self._fire_at(row.first_at, now)
            row = Burst(**dict(await conn.fetchrow(Q.extend_burst, row.burst_id, now, fire_at)))
        m = message_of(event)
        values = {
            "message_sid": m.message_sid,
            "burst_id": row.burst_id,
            "body": m.body,
            "seq": m.stream_seq,
            "intent": m.intent,
            "language": m.language,
            "decision": event.decision,
            "rule": event.rule,
        }
        await conn.execute(Q.insert_burst_message.sql, *Q.insert_burst_message.bind(values))
        return row, was_review

    @staticmethod
    def _set_timer(u: Unit, row: Burst) -> None:
        """The burst's debounce timer, set once the burst's rows are committed."""
        burst_id = str(row.burst_id)
        u.emit(
            TimerSet(
                thread=row.thread,
                timer_id=burst_timer_id(burst_id),
                kind="burst_debounce",
                fire_at=row.fire_at,  # same id: replaces the previous fire_at
                payload={"burst_id": burst_id, "to_number": row.number},
            )
        )

    # --- inbound.routed ------------------------------------------------------

    async def collect(self, event: InboundRouted) -> None:
        """A draftable message: hold it in the thread's burst until the timer fires."""
        dr = self.deps
        async with dr.outbox.unit() as u:
            conn = u.conn
            await conn.execute(Q.lock_thread, event.thread)
            if await conn.fetchrow(Q.burst_of_message, event.message_sid) is not None:
                return  # redelivered after the commit (its timer went out with it)
            if await is_stale(conn, event):
                await skip_stale(conn, event)
                return
            row, was_review = await self._join(conn, event)
            # The thread's pending draft answers a conversation that moved on: withdrawn
            # now, in the transaction that holds the message, so a YES during the
            # debounce sends nothing (the burst's draft answers its messages too).
            await withdraw(u, event.thread, REVIEW if was_review else LEAD_WROTE)
            if was_review:
                # The burst has a message that needs a person: so does this one.
                await to_review(
                    conn, event.thread, event.from_number, [message_of(event)], BURST_RULE
                )
                if dr.settings.alert_on_needs_review:
                    dr.owners.tell_all(
                        u,
                        owner_texts.needs_review(
                            event.from_number,
                            event.body,
                            BURST_RULE,
                            await thread_ref(conn, event.thread, event.from_number),
                        ),
                        f"needs_review:{event.message_sid}",
                    )
            self._set_timer(u, row)
        log.info("burst_held", message_sid=event.message_sid, burst_id=str(row.burst_id))

    async def review(self, event: InboundRouted) -> None:
        """A message that needs review: its burst (open or new) goes to review, drafts nothing.

        Its own queue item and alert come from review.needs_review; the burst's earlier
        draftable messages are queued with it (the dashboard shows them).
        """
        async with self.deps.outbox.unit() as u:
            conn = u.conn
            await conn.execute(Q.lock_thread, event.thread)
            if await conn.fetchrow(Q.burst_of_message, event.message_sid) is not None:
                return  # redelivered after the commit
            row, _ = await self._join(conn, event, review=event.rule)
            if row.status == "open":
                await conn.execute(Q.burst_to_review, row.burst_id, event.rule)
                earlier = [
                    held_message(m)
                    for m in burst_messages_of(await conn.fetch(Q.burst_messages, row.burst_id))
                    if m.decision == "draft"
                ]
                if earlier:
                    await to_review(conn, event.thread, event.from_number, earlier, BURST_RULE)
            self._set_timer(u, row)  # the window stays open: later messages go to review too
        log.info("burst_review", message_sid=event.message_sid, rule=event.rule)

    async def drop(self, thread: str, reason: str) -> None:
        """Opt-out, paused thread, a person answers: the open burst is never drafted, and drafts
        withdrawn for its messages learn that no replacement is coming."""
        async with self.deps.outbox.unit() as u:
            await give_up(u, thread, DROP_REASONS.get(reason.split(":", 1)[0], PAUSED))
            await drop_open_burst(u, thread, reason)

    # --- timer.fired ---------------------------------------------------------

    async def on_timer(self, event: TimerFired, d: Delivery) -> Drop | Retry | None:
        raw = event.payload.get("burst_id")
        try:
            burst_id = uuid.UUID(str(raw))
        except ValueError:
            return Drop(f"burst timer {event.timer_id}: bad burst_id {raw!r}")
        dr = self.deps
        async with dr.pool.acquire() as conn:
            row = burst_of(await conn.fetchrow(Q.burst_by_id, burst_id))
            if row is None:
                return Drop(f"burst timer {event.timer_id}: unknown burst {burst_id}")
            if row.status == "review":
                await conn.execute(Q.close_burst, burst_id, "closed", None, "")
                return None
            if row.status != "open":
                # Dropped or closed, or drafted (a redelivery after the draft committed:
                # its events went out with its unit).
                return None
            if event.fire_at < row.fire_at:
                log.info("burst_timer_superseded", burst_id=str(burst_id))
                return None  # a newer message moved the timer; that firing drafts
            msgs = [held_message(m) for m in burst_messages_of(await conn.fetch(Q.burst_messages, burst_id))]
        if not msgs:
            return Drop(f"burst {burst_id} has no messages")
        token = BurstToken(burst_id=str(burst_id), fire_at=row.fire_at)
        return await self.replier.draft(row.thread, row.number, msgs, d, burst=token)


__all__ = ["BURST_RULE", "DROPS_BURST", "Bursts"]
