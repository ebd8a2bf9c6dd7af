"""W3C ``traceparent`` propagation through a context variable.

A consumer sets the incoming message's traceparent before calling a handler;
anything the handler publishes carries the same trace id with a new span id.
"""

from __future__ import annotations

import contextvars
import re
import secrets

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

current_traceparent: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)


def new_traceparent(trace_id: str | None = None) -> str:
    return f"00-{trace_id or secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def trace_id_of(traceparent: str | None) -> str | None:
    if not traceparent:
        return None
    match = _TRACEPARENT.match(traceparent.strip())
    return match.group(1) if match else None


def outgoing_traceparent() -> str:
    """A child of the current trace, or the root of a new one."""
    return new_traceparent(trace_id_of(current_traceparent.get()))
