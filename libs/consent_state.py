"""A number's consent as the stream says right now (the newest contact.optout / optin).

The sender's consent gate at send time is the one that counts (docs/sender.md); this
read lets the places that *ask* for a human reply (ingest's API and dashboard, the
drafter's SEND) refuse an opted-out lead at once, with a clear message, instead of
only learning it from the sender's outbound.failed a moment later.
"""

from __future__ import annotations

from datetime import datetime

from nats.js.errors import NotFoundError

from libs.bus import Bus
from libs.events import ContactOptin, ContactOptout, decode, thread_of


async def last_consent_events(bus: Bus, number: str) -> list[ContactOptout | ContactOptin]:
    """The stream's last contact.optout and last contact.optin of the number (those there).

    Raises the NATS error when the stream cannot be asked: callers must not guess.
    """
    found: list[ContactOptout | ContactOptin] = []
    for cls in (ContactOptout, ContactOptin):
        subject = bus.subject_for(str(cls.__struct_config__.tag), thread_of(number))
        try:
            raw = await bus.js.get_last_msg(bus.stream, subject)
        except NotFoundError:
            continue
        event = decode(raw.data or b"")
        if isinstance(event, ContactOptout | ContactOptin):
            found.append(event)
    return found


async def opted_out(bus: Bus, number: str) -> bool:
    """True when the newest consent event of the number (by the lead's SMS time) is a STOP.

    Raises the NATS error when the stream cannot be asked: callers must not guess.
    """
    newest: tuple[datetime, bool] | None = None
    for event in await last_consent_events(bus, number):
        at = event.received_at or event.occurred_at
        if newest is None or at > newest[0]:
            newest = (at, isinstance(event, ContactOptout))
    return bool(newest and newest[1])
