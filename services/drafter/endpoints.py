"""The drafter's request/reply endpoints (libs/rpc.py): the owner API on ingest asks, it never
reads our tables.

``DRAFTS_PENDING`` -> the pending drafts, oldest first; ``MANUAL_QUEUE`` -> the open
manual-intervention items. Registered on the ``replyline-drafter`` micro service.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from libs import rpc
from services.drafter.store import Q, draft_of, manual_item


def endpoints(pool: asyncpg.Pool) -> list[rpc.Served[Any, Any]]:
    async def pending(request: rpc.Listing) -> rpc.PendingDrafts:
        rows = await pool.fetch(Q.pending_drafts, request.limit)
        drafts = [draft_of(r) for r in rows]
        return rpc.PendingDrafts(drafts=[d.summary() for d in drafts if d is not None])

    async def queue(request: rpc.Listing) -> rpc.ManualQueue:
        rows = await pool.fetch(Q.open_manual_items, request.limit)
        return rpc.ManualQueue(items=[manual_item(r) for r in rows])

    return [rpc.serve(rpc.DRAFTS_PENDING, pending), rpc.serve(rpc.MANUAL_QUEUE, queue)]
