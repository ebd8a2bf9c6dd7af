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

import msgspec
import nats.errors
from nats.aio.client import Client as NATS

IMPORT = "import"
EXPORT = "export"
LIST = "list"
#: Errors that are an answer about the request, not a failure of the scheduler.
ANSWERS = frozenset({"invalid", "not_found"})


class SchedulerUnavailable(Exception):
    """No scheduler answered (not running, NATS down, or too slow): the API answers 503."""


class SchedulerError(Exception):
    """The scheduler failed or answered something that is not the agreed shape."""


class SchedulerApi(Protocol):
    async def call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]: ...


def rpc_subject(prefix: str, method: str) -> str:
    return f"{prefix}rpc.scheduler.workflows.{method}"


class NatsSchedulerApi:
    def __init__(self, nc: NATS, prefix: str, timeout_s: float) -> None:
        self._nc = nc
        self._prefix = prefix
        self._timeout = timeout_s

    async def call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        subject = rpc_subject(self._prefix, method)
        try:
            reply = await self._nc.request(subject, msgspec.json.encode(payload), timeout=self._timeout)
        except nats.errors.NoRespondersError:
            raise SchedulerUnavailable(f"the scheduler is not running (no responder on {subject})") from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise SchedulerUnavailable(
                f"the scheduler did not answer on {subject} within {self._timeout:g}s"
            ) from None
        except nats.errors.Error as exc:
            raise SchedulerUnavailable(f"cannot reach the scheduler over NATS: {exc}") from None
        try:
            data = msgspec.json.decode(reply.data)
        except msgspec.DecodeError as exc:
            raise SchedulerError(f"the scheduler's reply is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise SchedulerError("the scheduler's reply is not a JSON object")
        if "error" in data and data["error"] not in ANSWERS:
            raise SchedulerError(str(data["error"]))
        return data
