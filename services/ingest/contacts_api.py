"""``POST /api/contacts/import`` (admin): a CSV body imported into the scheduler's contacts.

The body is spooled to a temporary file (never held in memory), every row is
validated (libs/contact_csv.py), and only a fully valid file is staged and committed
through the scheduler over NATS request/reply (``rpc.scheduler.contacts.*``,
services/scheduler/contact_import.py). Query: ``fire_workflows=true`` starts
``contact_created`` workflows for new contacts; ``region=GB`` overrides
``REPLYLINE_DEFAULT_REGION``. Answers 200 with the counts, or 400 with every invalid
line (``{"error": "invalid", "error_count", "issues": [{"line", "reason"}]}``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import structlog
from aiohttp import web

from libs.contact_import_client import ImportFailed, import_contacts
from services.ingest.http_common import DEPS_KEY, SETTINGS_KEY, Unavailable, authenticate, json_error
from services.ingest.nats_rpc import NatsRpc, RpcError, RpcUnavailable
from services.ingest.twilio_payload import PayloadError

log = structlog.get_logger("ingest")

#: A CSV of a few hundred thousand contacts is tens of MB; anything beyond this is refused.
MAX_CSV_BYTES = 200 * 1024 * 1024
_CSV_TYPES = frozenset({"text/csv", "application/csv", "text/plain", "application/octet-stream"})


class SchedulerContactsApi(NatsRpc):
    peer = "scheduler"
    subject_root = "rpc.scheduler.contacts"
    answers = frozenset({"invalid", "incomplete"})


def _lines(path: str) -> Iterator[str]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        yield from handle


async def import_csv(request: web.Request) -> web.Response:
    principal = await authenticate(request, "admin")
    if request.content_type not in _CSV_TYPES:
        raise PayloadError(f"Content-Type must be text/csv, got {request.content_type or 'none'}")
    api = request.app[DEPS_KEY].contacts
    if api is None:
        raise Unavailable("no scheduler API is configured")
    settings = request.app[SETTINGS_KEY]
    region = (request.query.get("region") or settings.default_region).upper()
    fire = request.query.get("fire_workflows", "false").lower() in ("1", "true", "yes")
    handle, path = tempfile.mkstemp(prefix="replyline-import-", suffix=".csv")
    try:
        size = 0
        with os.fdopen(handle, "wb") as out:
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > MAX_CSV_BYTES:
                    return json_error(413, f"the CSV is larger than {MAX_CSV_BYTES // 2**20} MB")
                out.write(chunk)
        source = request.query.get("source", "api.csv")[:200]

        async def call(method: str, payload: dict[str, Any]) -> dict[str, Any]:
            return await api.call(method, payload)

        try:
            report = await import_contacts(
                lambda: _lines(path), call, region=region, source=source, fire_workflows=fire
            )
        except UnicodeDecodeError as exc:
            raise PayloadError(f"the CSV is not UTF-8: {exc}") from None
        except RpcUnavailable as exc:
            raise Unavailable(str(exc)) from exc
        except (ImportFailed, RpcError) as exc:
            return json_error(502, f"scheduler: {exc}; nothing was imported")
    finally:
        os.unlink(path)
    if not report.ok:
        return web.json_response(report.to_json(), status=400)
    details = {"token": principal.name, **report.to_json()}
    try:
        await request.app[DEPS_KEY].audit("contacts.imported", None, "HUMAN", details)
    except Exception:
        log.exception("api_audit_failed", action="contacts.imported")
    return web.json_response(report.to_json())


def add_contacts_routes(app: web.Application) -> None:
    app.router.add_post("/api/contacts/import", import_csv)
