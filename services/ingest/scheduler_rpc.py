"""Asking the scheduler to import, export and list workflows over NATS request/reply.

The contract (docs/ingest.md, answered by services/scheduler/rpc.py):

* ``<prefix>rpc.scheduler.workflows.import`` ``{"text", "source", "format"}`` ->
  ``{"name", "version"}`` or ``{"error": "invalid", "issues": [{"source", "line", "reason"}]}``;
* ``<prefix>rpc.scheduler.workflows.export`` ``{"name", "format"}`` -> ``{"text"}`` or
  ``{"error": "not_found"}``;
* ``<prefix>rpc.scheduler.workflows.list`` ``{}`` -> ``{"workflows": [{"name", "version"}]}``.

``invalid`` and ``not_found`` are answers the API turns into 400/404; any other error raises.
"""

from __future__ import annotations

from typing import Any, Protocol

from services.ingest.nats_rpc import NatsRpc, RpcError, RpcUnavailable

IMPORT = "import"
EXPORT = "export"
LIST = "list"


class SchedulerUnavailable(RpcUnavailable):
    """No scheduler answered (not running, NATS down, or too slow): the API answers 503."""


class SchedulerError(RpcError):
    """The scheduler failed or answered something that is not the agreed shape."""


class SchedulerApi(Protocol):
    async def call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]: ...


def rpc_subject(prefix: str, method: str) -> str:
    return f"{prefix}{NatsSchedulerApi.subject_root}.{method}"


class NatsSchedulerApi(NatsRpc):
    peer = "scheduler"
    subject_root = "rpc.scheduler.workflows"
    unavailable = SchedulerUnavailable
    error = SchedulerError
    #: Errors that are an answer about the request, not a failure of the scheduler.
    answers = frozenset({"invalid", "not_found"})
