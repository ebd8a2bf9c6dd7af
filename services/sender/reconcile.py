"""Reconciliation: did an interrupted attempt reach the provider?

Runs only under the row's lease, and a SENDING row's lease outlives its call, so
the attempt being reconciled has ended (its fate is unknown) and nobody else is
acting on the row (docs/sender.md, "The send lease").
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from services.sender.rows import OutboxRow
from services.sender.store import Leased, Q, audit_row
from services.sender.transport import ProviderMessage, Transport

log = structlog.get_logger("sender.outbox")  # same logger as before the split


class LookupFailed(Exception):
    """The provider's message list could not be read: try again later, never resend blind."""


async def find_interrupted_attempt(
    leased: Leased, row: OutboxRow, transport: Transport, slack_s: float
) -> ProviderMessage | None:
    """The provider's message the interrupted attempt created, or None (row back to PENDING).

    Twilio's Messages API has no idempotency key, and the list resource does not
    show a message's StatusCallback, so matching is by To/From, creation time,
    body, and a sid no other outbox row owns. A match is audited here and recorded
    SENT by the caller.
    """
    if row.status == "SENDING":
        await leased.write(Q.mark_unknown, error_message="attempt interrupted")
    started = row.sending_started_at or row.created_at
    since = started - timedelta(seconds=slack_s)
    try:
        found = await transport.find_sent(to=row.to_number, since=since)
    except Exception as exc:
        log.warning("reconcile_lookup_failed", outbox_id=str(row.id), error=repr(exc))
        raise LookupFailed(repr(exc)) from exc
    # Compare modulo surrounding whitespace, which carriers and Twilio may trim.
    candidates = [m for m in found if m.body.strip() == row.body.strip()]
    in_use = await leased.conn.fetch(Q.sids_in_use, [m.sid for m in candidates])
    taken = {r["provider_sid"] for r in in_use}
    # Oldest first: the interrupted attempt is the earliest unclaimed match.
    match = next((m for m in reversed(candidates) if m.sid not in taken), None)
    if match is not None:
        await audit_row(leased.conn, row, "outbound.reconciled", {"provider_sid": match.sid})
        return match
    await audit_row(leased.conn, row, "outbound.reconciled_not_found", {"since": since.isoformat()})
    log.info("reconcile_not_found", outbox_id=str(row.id))
    await leased.write(Q.mark_pending)
    return None
