"""What the ingest HTTP handlers share: their ports, app keys, errors and authentication."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from libs.events import Event
from libs.rpc import RpcClient
from services.ingest.auth import Principal, Scope, TokenVerifier, bearer_token
from services.ingest.recorder import InboundRecorder
from services.ingest.settings import IngestSettings
from services.ingest.signature import SignatureCheck

log = structlog.get_logger("ingest")

#: Publishes an event (for events that describe no row of ingest) and returns its stream sequence.
PublishFn = Callable[[Event], Awaitable[int]]

#: (action, thread, actor, details) -> one audit_log row.
AuditFn = Callable[[str, str | None, str, dict[str, Any]], Awaitable[None]]

#: (events, action, thread, actor, details) -> one audit_log row and the events it
#: records in one outbox unit: committed together, published after the commit (by the
#: sweeper if NATS is away). Raises only if nothing was committed.
AuditedFn = Callable[[Sequence[Event], str, str | None, str, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class IngestDeps:
    recorder: InboundRecorder
    publish: PublishFn
    tokens: TokenVerifier
    #: Requests to the drafter's and the scheduler's endpoints (libs/rpc.py), one client per
    #: peer for its timeout.
    drafter: RpcClient
    audit: AuditFn
    audited: AuditedFn
    scheduler: RpcClient | None = None
    #: Whether a number has opted out, as the stream says now (libs/consent_state.py);
    #: None: not known here, the drafter and the sender still refuse.
    opted_out: Callable[[str], Awaitable[bool]] | None = None
    #: The scheduler's contact-import endpoints (services/ingest/contacts_api.py): longer timeout.
    contacts: RpcClient | None = None


SETTINGS_KEY = web.AppKey("settings", IngestSettings)
DEPS_KEY = web.AppKey("deps", IngestDeps)
SIGNATURE_KEY = web.AppKey("signature", SignatureCheck)


class Unavailable(Exception):
    """A dependency (Postgres, NATS, the drafter) failed: answer 503 so the caller retries."""


#: What a token or session lookup raises when Postgres is down or slow. Anything else is
#: a bug or bad input and must not become a 503 with Retry-After (clients retry forever).
LOOKUP_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _refusal(cls: type[web.HTTPError], message: str, **headers: str) -> web.HTTPError:
    return cls(
        text=json.dumps({"error": message}), content_type="application/json", headers=headers
    )


async def authenticate(request: web.Request, scope: Scope) -> Principal:
    """The caller's principal, or a 401/403 raised as an HTTP exception."""
    token = bearer_token(request.headers.get("Authorization"))
    challenge = {"WWW-Authenticate": 'Bearer realm="replyline"'}
    if token is None:
        raise _refusal(web.HTTPUnauthorized, "missing bearer token", **challenge)
    try:
        principal = await request.app[DEPS_KEY].tokens.verify(token)
    except LOOKUP_ERRORS as exc:
        raise Unavailable(f"cannot check the token ({type(exc).__name__})") from exc
    if principal is None:
        log.warning("api_token_rejected", remote=request.remote)
        raise _refusal(web.HTTPUnauthorized, "invalid or revoked token", **challenge)
    if not principal.allows(scope):
        raise _refusal(web.HTTPForbidden, f"a {principal.scope!r} token cannot do this")
    return principal
