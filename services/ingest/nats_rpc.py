"""Core NATS request/reply with JSON bodies, for asking another service about its own tables.

One client per peer service (drafter, scheduler): the subject is
``<prefix><subject_root>.<method>``, the reply a JSON object, and ``{"error": ...}``
in a reply is a failure unless the error is one of the peer's agreed answers
(``answers``, e.g. "not_found"), which the caller maps to an HTTP status.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
import nats.errors
from nats.aio.client import Client as NATS


class RpcUnavailable(Exception):
    """No peer answered (not running, NATS down, or too slow): the API answers 503."""


class RpcError(Exception):
    """The peer failed or answered something that is not the agreed shape."""


class NatsRpc:
    peer: ClassVar[str]
    subject_root: ClassVar[str]
    unavailable: ClassVar[type[RpcUnavailable]] = RpcUnavailable
    error: ClassVar[type[RpcError]] = RpcError
    answers: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, nc: NATS, prefix: str, timeout_s: float) -> None:
        self._nc = nc
        self._prefix = prefix
        self._timeout = timeout_s

    def subject(self, method: str) -> str:
        return f"{self._prefix}{self.subject_root}.{method}"

    async def call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        subject = self.subject(method)
        try:
            reply = await self._nc.request(subject, msgspec.json.encode(payload), timeout=self._timeout)
        except nats.errors.NoRespondersError:
            raise self.unavailable(f"the {self.peer} is not running (no responder on {subject})") from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise self.unavailable(
                f"the {self.peer} did not answer on {subject} within {self._timeout:g}s"
            ) from None
        except nats.errors.Error as exc:
            raise self.unavailable(f"cannot reach the {self.peer} over NATS: {exc}") from None
        try:
            data = msgspec.json.decode(reply.data)
        except msgspec.DecodeError as exc:
            raise self.error(f"the {self.peer}'s reply is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise self.error(f"the {self.peer}'s reply is not a JSON object")
        if "error" in data and data["error"] not in self.answers:
            raise self.error(str(data["error"]))
        return data
