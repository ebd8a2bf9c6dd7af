"""``GET /api/export``: conversations out (libs/conversation.py), admin token.

Query: ``thread``, ``since``, ``until``, ``outcome``, ``format=csv|jsonl`` (csv by
default). The answer is streamed row by row from a server-side cursor (chunked
transfer), never built in memory. Filter errors answer 400 before anything is sent;
a failure after the first byte can only cut the body short (the log says so).
The dashboard's download link (dashboard/views.py) streams through ``stream_export``.
"""

from __future__ import annotations

from contextlib import aclosing
from datetime import UTC, datetime

import asyncpg
import structlog
from aiohttp import web

from libs.conversation import CONTENT_TYPES, FORMATS, ExportError, Filters, Format, parse_time, render
from services.ingest.api import number_and_thread
from services.ingest.http_common import authenticate, json_error
from services.ingest.twilio_payload import PayloadError

log = structlog.get_logger("ingest.export")

EXPORT_POOL_KEY = web.AppKey("export_pool", asyncpg.Pool)


def filters_from_query(request: web.Request) -> tuple[Filters, Format]:
    """Raises ExportError / PayloadError for a bad parameter."""
    query = request.query
    fmt = query.get("format", "csv")
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}")
    thread = number_and_thread(query["thread"])[1] if query.get("thread") else None
    filters = Filters(
        thread=thread,
        since=parse_time(query["since"], "since") if query.get("since") else None,
        until=parse_time(query["until"], "until") if query.get("until") else None,
        outcome=query.get("outcome") or None,
    )
    return filters, fmt


async def stream_export(
    request: web.Request, pool: asyncpg.Pool, filters: Filters, fmt: Format, *, who: str
) -> web.StreamResponse:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"replyline-{filters.thread or 'conversations'}-{stamp}.{fmt}"
    response = web.StreamResponse(
        headers={
            "Content-Type": f"{CONTENT_TYPES[fmt]}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        }
    )
    response.enable_chunked_encoding()
    chunks_sent = 0
    async with pool.acquire() as conn, aclosing(render(conn, filters, fmt)) as chunks:
        try:
            first = await anext(chunks, None)
        except ExportError as exc:
            return json_error(400, str(exc))
        await response.prepare(request)
        if first is not None:
            await response.write(first.encode("utf-8"))
            chunks_sent += 1
        async for chunk in chunks:
            await response.write(chunk.encode("utf-8"))
            chunks_sent += 1
    await response.write_eof()
    log.info("export_streamed", who=who, thread=filters.thread, format=fmt, chunks=chunks_sent)
    return response


async def get_export(request: web.Request) -> web.StreamResponse:
    principal = await authenticate(request, "admin")
    try:
        filters, fmt = filters_from_query(request)
    except (ExportError, PayloadError) as exc:
        return json_error(400, str(exc))
    return await stream_export(request, request.app[EXPORT_POOL_KEY], filters, fmt, who=principal.name)


def add_export_routes(app: web.Application, pool: asyncpg.Pool) -> None:
    app[EXPORT_POOL_KEY] = pool
    app.router.add_get("/api/export", get_export)
