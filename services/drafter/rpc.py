"""Core NATS request/reply for the owner API on ingest (it never reads our tables).

``<prefix>rpc.drafter.pending`` ``{"limit": N}`` -> ``{"drafts": [...]}`` (pending drafts)
``<prefix>rpc.drafter.queue``   ``{"limit": N}`` -> ``{"items": [...]}`` (manual queue)
Any failure answers ``{"error": "..."}``. Replicas share the subjects in one queue group.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from libs.bus import Bus
from services.drafter.store import Q, draft_of, manual_item

log = structlog.get_logger("drafter.rpc")

QUEUE_GROUP = "drafter"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def rpc_subject(prefix: str, method: str) -> str:
    return f"{prefix}rpc.drafter.{method}"


class Request(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    limit: int = DEFAULT_LIMIT


async def pending(pool: asyncpg.Pool, request: Request) -> dict[str, Any]:
    rows = await pool.fetch(Q.pending_drafts, request.limit)
    drafts = [draft_of(r) for r in rows]
    return {"drafts": [d.summary() for d in drafts if d is not None]}


async def queue(pool: asyncpg.Pool, request: Request) -> dict[str, Any]:
    rows = await pool.fetch(Q.open_manual_items, request.limit)
    return {"items": [manual_item(r) for r in rows]}


Method = Callable[[asyncpg.Pool, Request], Awaitable[dict[str, Any]]]
METHODS: dict[str, Method] = {"pending": pending, "queue": queue}


async def serve_rpc(bus: Bus, pool: asyncpg.Pool) -> list[Subscription]:
    """Subscribe the responders; the caller unsubscribes them on shutdown."""
    subs = []
    for name, method in METHODS.items():
        subs.append(
            await bus.nc.subscribe(
                rpc_subject(bus.prefix, name), queue=QUEUE_GROUP, cb=_responder(pool, name, method)
            )
        )
    return subs


def _responder(pool: asyncpg.Pool, name: str, method: Method) -> Callable[[Msg], Awaitable[None]]:
    async def respond(msg: Msg) -> None:
        try:
            request = msgspec.json.decode(msg.data or b"{}", type=Request)
            if not 1 <= request.limit <= MAX_LIMIT:
                raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
            answer = await method(pool, request)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            answer = {"error": f"bad request: {exc}"}
        except Exception as exc:  # the caller must get an answer, not a timeout
            log.exception("rpc_failed", method=name)
            answer = {"error": f"drafter failed: {type(exc).__name__}"}
        if msg.reply:
            await msg.respond(msgspec.json.encode(answer))

    return respond
