"""The sender's sweep: rows whose event was lost, or whose drive stopped half-way
(PENDING past its grace, SENDING / UNKNOWN with an expired lease, DEFERRED past
due), are driven again. It recovers lost drives, not lost events: outcome events
commit with their rows (libs/event_outbox.py)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from services.sender.outbox import Outbox
from services.sender.rows import CONNECTION_ERRORS
from services.sender.store import Q

log = structlog.get_logger("sender")


async def sweep_once(outbox: Outbox) -> int:
    """Re-drive rows whose event was lost; returns how many were looked at."""
    settings = outbox.settings
    rows = await outbox.pool.fetch(Q.sweep_candidates, settings.sweep_grace_s, settings.deferred_grace_s, 100)
    for r in rows:
        try:
            await outbox.drive(r["id"])
        except CONNECTION_ERRORS as exc:  # e.g. our session was terminated mid-drive
            log.warning("sweep_drive_failed", outbox_id=str(r["id"]), error=repr(exc))
    if rows:
        log.info("sweep", rows=len(rows))
    return len(rows)


async def sweep_forever(outbox: Outbox, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=outbox.settings.sweep_interval_s)
        if stop.is_set():
            return
        try:
            await sweep_once(outbox)
        except CONNECTION_ERRORS as exc:
            log.warning("sweep_failed", error=repr(exc))
