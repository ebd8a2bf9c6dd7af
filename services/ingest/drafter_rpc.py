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

from services.ingest.nats_rpc import NatsRpc, RpcError, RpcUnavailable

PENDING = "pending"
QUEUE = "queue"


class DrafterUnavailable(RpcUnavailable):
    """No drafter answered (not running, NATS down, or too slow): the API answers 503."""


class DrafterError(RpcError):
    """The drafter answered with an error or something that is not the agreed shape."""


class DrafterApi(Protocol):
    async def call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]: ...


def rpc_subject(prefix: str, method: str) -> str:
    return f"{prefix}{NatsDrafterApi.subject_root}.{method}"


class NatsDrafterApi(NatsRpc):
    peer = "drafter"
    subject_root = "rpc.drafter"
    unavailable = DrafterUnavailable
    error = DrafterError
