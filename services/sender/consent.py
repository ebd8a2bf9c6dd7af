"""The sender's consent projection (contact.optout / optin, provider 21610) and contact time zones."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from libs.bus import Bus
from libs.consent_state import last_consent_events
from libs.db import audit
from libs.events import ContactOptin, ContactOptout, thread_of
from services.sender.rows import SERVICE, contact_key
from services.sender.store import Q


async def set_consent(
    conn: asyncpg.Connection,
    number: str,
    *,
    opted_out: bool,
    keyword: str,
    source: str,
    event_id: str | None,
    at: datetime,
) -> None:
    """Record a consent change unless a newer one (by ``at``) is already recorded."""
    changed = await conn.fetchval(
        Q.upsert_consent, contact_key(number), opted_out, keyword, source, event_id, at
    )
    if changed is not None:
        await audit(
            conn,
            service=SERVICE,
            action="consent.opt_out" if opted_out else "consent.opt_in",
            thread=thread_of(number),
            details={"keyword": keyword, "source": source, "event_id": event_id},
        )


async def provider_unsubscribed(conn: asyncpg.Connection, number: str, code: int, at: datetime) -> None:
    """The provider says the recipient unsubscribed (21610): the projection learns it."""
    await set_consent(
        conn, number, opted_out=True, keyword="", source=f"provider_{code}", event_id=None, at=at
    )


async def apply_consent_event(conn: asyncpg.Connection, event: ContactOptout | ContactOptin) -> None:
    # Ordered by when the lead's SMS arrived, not when the event was published: a
    # START replayed from the DLQ, or routed late, never undoes a newer STOP.
    await set_consent(
        conn,
        event.number,
        opted_out=isinstance(event, ContactOptout),
        keyword=event.keyword,
        source="sms_keyword",
        event_id=event.id,
        at=event.received_at or event.occurred_at,
    )


async def catch_up_consent(conn: asyncpg.Connection, bus: Bus, number: str) -> None:
    """Apply the newest contact.optout / optin of the number found in PIPELINE itself.

    Ingest answers Twilio only once a STOP's contact.optout is in the stream, but
    this consumer may not have handled it yet: it may be queued behind other
    threads, nak'd for a retry (which reorders), or held by another replica. Reading
    the stream's last event per subject right before sending makes an acknowledged
    STOP win whatever the lag. Raises when NATS cannot be asked (the caller retries).
    """
    for event in await last_consent_events(bus, number):
        await apply_consent_event(conn, event)


async def is_opted_out(conn: asyncpg.Connection, number: str) -> bool:
    return bool(await conn.fetchval(Q.is_opted_out, number))


async def record_time_zone(pool: asyncpg.Pool, number: str, zone: str, at: datetime) -> None:
    await pool.execute(Q.upsert_time_zone, contact_key(number), zone, at)
