"""A small local server speaking the OpenAI chat-completions wire protocol.

Tests point the real ``openai.AsyncOpenAI`` client at it (``base_url=fake.base_url``)
so request building, retries, timeouts and response parsing are the library's own.

Behaviour is scripted per request: queued steps are consumed first-in first-out, and
when the queue is empty the default responder answers. Every request is recorded.

    async with FakeOpenAI() as fake:
        fake.fail(500)                          # next request: HTTP 500
        fake.reply("Hi! We open at 8.")         # the one after: this content
        client = AsyncOpenAI(base_url=fake.base_url, api_key="x", max_retries=0)
        ...
        assert fake.requests[-1].body["model"] == "gpt-4o-mini"

Steps: ``reply(content)``, ``fail(status)`` (500, 429, ...), ``delay(seconds)`` (answer
late, to trigger client timeouts), ``malformed(kind)`` (a 200 that is not a valid
completion). ``respond_with(fn)`` replaces the default responder with ``fn(request) ->
str`` (e.g. a classifier keyed on the user message). With ``response_format`` of type
``json_schema`` and no scripted content, the default responder returns a minimal JSON
object valid for the schema.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Responder = Callable[["RecordedRequest"], str]
MalformedKind = Literal["not_json", "no_choices", "empty_content", "wrong_types"]


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    def text(self) -> str:
        """All message contents joined, handy for asserting what the prompt contained."""
        return "\n".join(_content_text(m.get("content")) for m in self.messages)


@dataclass(frozen=True)
class _Reply:
    content: str
    usage: dict[str, int] | None = None
    finish_reason: str = "stop"


@dataclass(frozen=True)
class _Fail:
    status: int
    message: str
    retry_after_ms: int | None


@dataclass(frozen=True)
class _Delay:
    seconds: float
    then: _Reply | None


@dataclass(frozen=True)
class _Malformed:
    kind: MalformedKind


_Step = _Reply | _Fail | _Delay | _Malformed


@dataclass
class FakeOpenAI:
    """The fake server. ``base_url`` ends in ``/v1`` like the real API's."""

    host: str = "127.0.0.1"
    default_content: str = "Thanks for reaching out! We'll get back to you shortly."
    requests: list[RecordedRequest] = field(default_factory=list)
    _steps: deque[_Step] = field(default_factory=deque)
    _responder: Responder | None = None
    _runner: web.AppRunner | None = None
    _port: int = 0
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _recorded: asyncio.Condition = field(default_factory=asyncio.Condition)  # a request arrived
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # --- lifecycle -------------------------------------------------------

    async def start(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        # handler_cancellation: a client that timed out disconnects; stop its delayed handler.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}/v1"

    # --- scripting -------------------------------------------------------

    def reply(
        self,
        content: str,
        *,
        times: int = 1,
        usage: dict[str, int] | None = None,
        finish_reason: str = "stop",
    ) -> FakeOpenAI:
        """Answer the next ``times`` requests with ``content`` (usage computed unless given)."""
        for _ in range(times):
            self._steps.append(_Reply(content, usage, finish_reason))
        return self

    def fail(
        self,
        status: int = 500,
        *,
        times: int = 1,
        message: str = "fake server error",
        retry_after_ms: int | None = 0,
    ) -> FakeOpenAI:
        """Answer the next ``times`` requests with an OpenAI-style error body.

        ``retry_after_ms`` is sent as the ``retry-after-ms`` header (the client honours it),
        so tests that let the client retry do not wait for its default backoff.
        """
        for _ in range(times):
            self._steps.append(_Fail(status, message, retry_after_ms))
        return self

    def delay(
        self, seconds: float, *, times: int = 1, then: str | None = None
    ) -> FakeOpenAI:
        """Hold the next ``times`` requests for ``seconds`` before answering."""
        for _ in range(times):
            self._steps.append(_Delay(seconds, _Reply(then) if then is not None else None))
        return self

    def malformed(self, kind: MalformedKind = "not_json", *, times: int = 1) -> FakeOpenAI:
        """Answer 200 with a body that is not a usable completion."""
        for _ in range(times):
            self._steps.append(_Malformed(kind))
        return self

    def respond_with(self, responder: Responder | None) -> FakeOpenAI:
        """Default answer for unscripted requests, computed from the request."""
        self._responder = responder
        return self

    def clear(self) -> None:
        self._steps.clear()
        self.requests.clear()

    @property
    def pending_steps(self) -> int:
        return len(self._steps)

    async def wait_for_requests(self, count: int, within: float = 5.0) -> list[RecordedRequest]:
        """Wait until at least ``count`` requests were recorded."""
        try:
            async with asyncio.timeout(within), self._recorded:
                await self._recorded.wait_for(lambda: len(self.requests) >= count)
        except TimeoutError:
            raise TimeoutError(f"expected {count} requests, got {len(self.requests)}") from None
        return list(self.requests)

    # --- handlers --------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "request body is not JSON", "invalid_request_error")
        if not isinstance(body, dict) or "model" not in body or "messages" not in body:
            return _error(400, "'model' and 'messages' are required", "invalid_request_error")
        recorded = RecordedRequest(
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            received_at=time.time(),
        )
        async with self._recorded:
            self.requests.append(recorded)
            self._recorded.notify_all()

        step = self._steps.popleft() if self._steps else None
        if isinstance(step, _Delay):
            try:
                await asyncio.wait_for(self._closing.wait(), timeout=step.seconds)
                return _error(503, "server closing", "server_error")
            except TimeoutError:
                pass
            step = step.then
        if isinstance(step, _Fail):
            headers = {}
            if step.retry_after_ms is not None:
                headers["retry-after-ms"] = str(step.retry_after_ms)
            kind = "rate_limit_exceeded" if step.status == 429 else "server_error"
            return _error(step.status, step.message, kind, headers)
        if isinstance(step, _Malformed):
            return self._malformed(step.kind, body)
        if isinstance(step, _Reply):
            return web.json_response(self._completion(body, step))
        return web.json_response(self._completion(body, _Reply(self._default(recorded))))

    def _default(self, recorded: RecordedRequest) -> str:
        if self._responder is not None:
            return self._responder(recorded)
        schema = _json_schema_of(recorded.body.get("response_format"))
        if schema is not None:
            return json.dumps(example_for_schema(schema))
        return self.default_content

    def _completion(self, body: dict[str, Any], step: _Reply) -> dict[str, Any]:
        prompt_tokens = sum(count_tokens(_content_text(m.get("content"))) for m in body["messages"])
        completion_tokens = count_tokens(step.content)
        usage = step.usage or {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        return {
            "id": f"chatcmpl-fake{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": step.content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": step.finish_reason,
                }
            ],
            "usage": usage,
        }

    def _malformed(self, kind: MalformedKind, body: dict[str, Any]) -> web.Response:
        if kind == "not_json":
            return web.Response(text="<html>upstream proxy error</html>", content_type="text/html")
        if kind == "no_choices":
            return web.json_response({"id": "chatcmpl-bad", "object": "chat.completion",
                                      "model": body["model"], "created": 0})
        if kind == "empty_content":
            return web.json_response(self._completion(body, _Reply("")))
        return web.json_response({"id": 5, "object": "chat.completion", "model": body["model"],
                                  "created": 0, "choices": "nope", "usage": "none"})


def _error(
    status: int, message: str, kind: str, headers: dict[str, str] | None = None
) -> web.Response:
    payload = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
    return web.json_response(payload, status=status, headers=headers)


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _json_schema_of(response_format: Any) -> dict[str, Any] | None:
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    schema = response_format.get("json_schema", {}).get("schema")
    return schema if isinstance(schema, dict) else None


def example_for_schema(schema: dict[str, Any]) -> Any:
    """A minimal value valid for a (simple) JSON schema: first enum value, zeros, empties."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return example_for_schema(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        required = schema.get("required", list(props))
        return {name: example_for_schema(props[name]) for name in required if name in props}
    if kind == "array":
        return []
    if kind == "string":
        return "fake"
    if kind in ("number", "integer"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None
