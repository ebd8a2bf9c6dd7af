"""Delivery status callbacks (``outbound.status``) applied to outbox rows."""

from __future__ import annotations

import asyncpg

from services.sender.consent import provider_unsubscribed
from services.sender.rows import OutboxRow
from services.sender.store import Q, audit_row
from services.sender.transport import UNSUBSCRIBED_CODES

DELIVERY_FAILED = frozenset({"failed", "undelivered"})
#: Order of Twilio delivery statuses, so a late "sent" callback never hides "delivered".
STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "partially_delivered": 4,
    "read": 5,
}


async def apply_delivery(conn: asyncpg.Connection, row: OutboxRow) -> bool:
    """Bring the row's provider status up to the best callback stored for its sid.

    A failed / undelivered callback turns a SENT row into FAILED_SEND (no lease
    needed: the send is over and the update names status 'SENT'); returns whether
    it did, so the caller emits outbound.failed in the same unit.
    """
    events = await conn.fetch(Q.delivery_events_for, row.provider_sid)
    if not events:
        return False
    best = max(events, key=lambda e: STATUS_RANK.get(e["status"], 0))
    if best["status"] != row.provider_status:
        await conn.execute(Q.set_provider_status, row.id, best["status"])
    if best["status"] in DELIVERY_FAILED and row.status == "SENT":
        code = best["error_code"]
        if code in UNSUBSCRIBED_CODES:
            await provider_unsubscribed(conn, row.to_number, code, best["occurred_at"])
        done = await conn.execute(Q.mark_undelivered, row.id, code, f"delivery {best['status']}")
        if done != "UPDATE 1":
            return False  # someone else's callback failed it first
        await audit_row(
            conn, row, "outbound.undelivered", {"error_code": code, "status": best["status"]}
        )
        return True
    return False
