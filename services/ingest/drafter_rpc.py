"""Asking the drafter about its tables over NATS request/reply.

Ingest does not read the drafter's tables; the owner API asks the drafter, which
owns drafts and the manual-intervention queue. The contract (documented in
docs/ingest.md) is core NATS request/reply, outside JetStream:

* ``<prefix>rpc.drafter.pending`` request ``{"limit": N}`` -> ``{"drafts": [draft, ...]}``
  where each draft has at least ``draft_id``, ``ref``, ``version``, ``thread`` and ``body``;
* ``<prefix>rpc.drafter.queue`` request ``{"limit": N}`` -> ``{"items": [item, ...]}``;
* any reply may instead be ``{"error": "message"}``.

``<prefix>`` is the bus namespace prefix (``Bus.prefix``, empty in production).
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec
import nats.errors
from nats.aio.client import Client as NATS

PENDING = "pending"
QUEUE = "queue"


class DrafterUnavailable(Exception):
    """No drafter answered (not running, NATS down, or too slow): the API answers 503."""


class DrafterError(Exception):
    """The drafter answered with an error or something that is not the agreed shape."""


class DrafterApi(Protocol):
    async def call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]: ...


def rpc_subject(prefix: str, method: str) -> str:
    return f"{prefix}rpc.drafter.{method}"


class NatsDrafterApi:
    def __init__(self, nc: NATS, prefix: str, timeout_s: float) -> None:
        self._nc = nc
        self._prefix = prefix
        self._timeout = timeout_s

    async def call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        subject = rpc_subject(self._prefix, method)
        try:
            reply = await self._nc.request(
                subject, msgspec.json.encode(payload), timeout=self._timeout
            )
        except nats.errors.NoRespondersError:
            raise DrafterUnavailable(
                f"the drafter is not running (no responder on {subject})"
            ) from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise DrafterUnavailable(
                f"the drafter did not answer on {subject} within {self._timeout:g}s"
            ) from None
        except nats.errors.Error as exc:
            raise DrafterUnavailable(f"cannot reach the drafter over NATS: {exc}") from None
        try:
            data = msgspec.json.decode(reply.data)
        except msgspec.DecodeError as exc:
            raise DrafterError(f"the drafter's reply is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise DrafterError("the drafter's reply is not a JSON object")
        if "error" in data:
            raise DrafterError(str(data["error"]))
        return data
