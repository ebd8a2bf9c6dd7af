"""A local fake of Twilio's 2010 Messages API for tests, driven by the real `twilio` client.

Point a client at it with ``client.api.base_url = fake.base_url`` (what
``TwilioTransport`` does with ``twilio_api_base_url``). Every request is checked
against the official OpenAPI description (see :mod:`testsupport.fakes.twilio_spec`);
a violation answers 400 and is kept in :attr:`FakeTwilio.violations`, so a test
can assert the client spoke the real protocol.

Behaviour a test can program:

- ``fail_to(number, error, times=None)``: creates to that number fail.
- ``queue_errors(*errors)``: the next create requests fail in order, whatever the number.
- ``hold_creates()`` / ``release_creates()``: create requests wait before anything is
  stored (the list does not show them) until released, like a create still in flight
  inside Twilio; ``wait_for_held(n)``. A held request whose client gave up is still
  processed on release, as Twilio would.
- ``on_create``: an async callback run after a message is accepted and before the
  response is written, e.g. to SIGKILL the sender between the API call and its
  recording of the result.
- ``send_status(sid, status, error_code=None)``: POST a signed status callback to the
  message's StatusCallback URL, as Twilio does.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from testsupport.fakes.twilio_spec import MESSAGES_PATH, TwilioSpec

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-auth-token-0123456789abcdef"
MESSAGE_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json"


@dataclass(frozen=True)
class TwilioError:
    """An error response in Twilio's JSON error shape."""

    http_status: int
    code: int
    message: str

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.http_status,
        }


ERRORS: dict[int, TwilioError] = {
    e.code: e
    for e in (
        TwilioError(429, 20429, "Too Many Requests"),
        TwilioError(500, 20500, "Internal Server Error"),
        TwilioError(503, 20503, "Service Unavailable"),
        TwilioError(400, 21610, "Attempt to send to unsubscribed recipient"),
        TwilioError(400, 21211, "Invalid 'To' Phone Number"),
        TwilioError(400, 21614, "'To' number is not a valid mobile number"),
        TwilioError(400, 21408, "Permission to send an SMS has not been enabled for the region"),
        TwilioError(400, 30004, "Message blocked"),
        TwilioError(400, 30005, "Unknown destination handset"),
        TwilioError(400, 30006, "Landline or unreachable carrier"),
        TwilioError(400, 30007, "Message filtered"),
        TwilioError(400, 30034, "Message from an unregistered number"),
    )
}


def error(code: int) -> TwilioError:
    return ERRORS[code]


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: list[tuple[str, str]]
    form: list[tuple[str, str]]
    violations: list[str]
    status: int = 0


@dataclass
class _Failure:
    error: TwilioError
    remaining: int | None  # None: every time


@dataclass
class _Stored:
    resource: dict[str, Any]
    created: datetime
    status_callback: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC))


def _parse_filter(value: str) -> datetime | date:
    if "T" in value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return date.fromisoformat(value)


def _matches_date(sent: datetime, op: str, value: datetime | date) -> bool:
    if isinstance(value, datetime):
        left: datetime | date = sent
    else:
        left = sent.date()
    if op == ">":
        return left >= value
    if op == "<":
        return left <= value
    return left == value


class FakeTwilio:
    def __init__(
        self,
        *,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        spec: TwilioSpec | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.spec = spec or TwilioSpec()
        self.requests: list[RecordedRequest] = []
        self.stored: list[_Stored] = []
        self.creates: list[dict[str, list[str]]] = []  # every create request, failed ones too
        self.on_create: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self._per_number: dict[str, _Failure] = {}
        self._queue: list[TwilioError] = []
        self._changed = asyncio.Condition()
        self._gate: asyncio.Event | None = None
        self.held = 0  # create requests that reached the gate while creates were held
        self._runner: web.AppRunner | None = None
        self._callback_session: aiohttp.ClientSession | None = None
        self.base_url = ""
        self.callback_responses: list[int] = []

    # --- lifecycle ---------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        bound = sockets[0].getsockname()[1]
        self.base_url = f"http://{host}:{bound}"
        return self.base_url

    async def close(self) -> None:
        if self._callback_session is not None:
            await self._callback_session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeTwilio:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- programming -------------------------------------------------------

    def fail_to(self, number: str, err: TwilioError, times: int | None = None) -> None:
        self._per_number[number] = _Failure(err, times)

    def queue_errors(self, *errors: TwilioError) -> None:
        self._queue.extend(errors)

    def hold_creates(self) -> None:
        self._gate = asyncio.Event()

    def release_creates(self) -> None:
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    async def wait_for_held(self, count: int, timeout: float = 10.0) -> None:
        """Wait until at least ``count`` create requests are (or were) held at the gate."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.held >= count)

    @property
    def violations(self) -> list[str]:
        return [f"{r.method} {r.path}: {v}" for r in self.requests for v in r.violations]

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every message Twilio accepted, oldest first, in the spec's resource shape."""
        return [s.resource for s in self.stored]

    def messages_to(self, number: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["to"] == number]

    async def wait_for_creates(self, count: int, timeout: float = 10.0) -> None:
        """Wait until at least ``count`` create requests arrived (accepted or not)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.creates) >= count)

    # --- status callbacks --------------------------------------------------

    async def send_status(self, sid: str, status: str, error_code: int | None = None) -> int:
        """Update a message and POST a signed status callback to its StatusCallback URL."""
        stored = next(s for s in self.stored if s.resource["sid"] == sid)
        stored.resource["status"] = status
        stored.resource["error_code"] = error_code
        stored.resource["date_updated"] = _rfc2822(datetime.now(UTC))
        if not stored.status_callback:
            raise ValueError(f"message {sid} has no StatusCallback")
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "From": stored.resource["from"] or "",
            "To": stored.resource["to"],
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
        }
        if stored.resource["messaging_service_sid"]:
            params["MessagingServiceSid"] = stored.resource["messaging_service_sid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        signature = RequestValidator(self.auth_token).compute_signature(
            stored.status_callback, params
        )
        if self._callback_session is None:
            self._callback_session = aiohttp.ClientSession()
        async with self._callback_session.post(
            stored.status_callback, data=params, headers={"X-Twilio-Signature": signature}
        ) as resp:
            self.callback_responses.append(resp.status)
            return resp.status

    # --- HTTP --------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        form: list[tuple[str, str]] = []
        if request.method in ("POST", "PUT"):
            body = await request.post()
            form = [(k, str(v)) for k, v in body.items()]
        query = list(request.query.items())
        checked = self.spec.check(
            method=request.method,
            path=request.path,
            headers=dict(request.headers),
            query=query,
            form=form,
            account_sid=self.account_sid,
            auth_token=self.auth_token,
        )
        record = RecordedRequest(request.method, request.path, query, form, checked.violations)
        self.requests.append(record)
        if checked.violations:
            resp = self._error(TwilioError(400, 20001, "; ".join(checked.violations)))
        else:
            op = checked.operation
            assert op is not None
            key = (op.method, op.template)
            if key == ("POST", MESSAGES_PATH):
                resp = await self._create(request, form)
            elif key == ("GET", MESSAGES_PATH):
                resp = self._list(request, query)
            elif key == ("GET", MESSAGE_PATH):
                resp = self._fetch(checked.path_values["Sid"])
            else:
                resp = self._error(TwilioError(501, 20501, f"fake does not implement {key}"))
        record.status = resp.status
        return resp

    def _error(self, err: TwilioError) -> web.Response:
        return web.json_response(err.body(), status=err.http_status)

    def _next_failure(self, to: str) -> TwilioError | None:
        if self._queue:
            return self._queue.pop(0)
        failure = self._per_number.get(to)
        if failure is None:
            return None
        if failure.remaining is not None:
            failure.remaining -= 1
            if failure.remaining <= 0:
                del self._per_number[to]
        return failure.error

    async def _create(self, request: web.Request, form: list[tuple[str, str]]) -> web.Response:
        fields: dict[str, list[str]] = {}
        for name, value in form:
            fields.setdefault(name, []).append(value)
        gate = self._gate
        async with self._changed:
            self.creates.append(fields)
            if gate is not None:
                self.held += 1
            self._changed.notify_all()
        if gate is not None:
            await gate.wait()
        first = {name: values[0] for name, values in fields.items()}
        failure = self._next_failure(first["To"])
        if failure is not None:
            return self._error(failure)
        now = datetime.now(UTC)
        media = fields.get("MediaUrl", [])
        sid = ("MM" if media else "SM") + secrets.token_hex(16)
        service = first.get("MessagingServiceSid")
        resource: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": first.get("Body", ""),
            "date_created": _rfc2822(now),
            "date_sent": _rfc2822(now),
            "date_updated": _rfc2822(now),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": first.get("From"),
            "messaging_service_sid": service,
            "num_media": str(len(media)),
            "num_segments": str(max(1, -(-len(first.get("Body", "")) // 153))),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service and "From" not in first else "queued",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
            "to": first["To"],
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        problems = self.spec.check_message_resource(resource)
        assert not problems, problems
        stored = _Stored(resource, now, first.get("StatusCallback"))
        async with self._changed:
            self.stored.append(stored)
            self._changed.notify_all()
        if self.on_create is not None:
            await self.on_create(resource)
        return web.json_response(resource, status=201)

    def _fetch(self, sid: str) -> web.Response:
        for s in self.stored:
            if s.resource["sid"] == sid:
                return web.json_response(s.resource)
        return self._error(TwilioError(404, 20404, f"The requested resource {sid} was not found"))

    def _list(self, request: web.Request, query: list[tuple[str, str]]) -> web.Response:
        params = dict(query)
        rows = list(reversed(self.stored))  # Twilio lists newest first
        if "To" in params:
            rows = [s for s in rows if s.resource["to"] == params["To"]]
        if "From" in params:
            rows = [s for s in rows if s.resource["from"] == params["From"]]
        for name, op in (("DateSent", "="), ("DateSent>", ">"), ("DateSent<", "<")):
            if name in params:
                bound = _parse_filter(params[name])
                rows = [s for s in rows if _matches_date(s.created, op, bound)]
        page_size = int(params.get("PageSize", "50"))
        page = int(params.get("Page", "0"))
        chunk = rows[page * page_size : (page + 1) * page_size]
        base = {k: v for k, v in query if k not in ("Page", "PageToken")}

        def uri(n: int) -> str:
            extra = {"Page": str(n), "PageSize": str(page_size)}
            if n:
                extra["PageToken"] = f"PASM{n}"
            return f"{request.path}?{urlencode({**base, **extra})}"

        has_next = (page + 1) * page_size < len(rows)
        body = {
            "messages": [s.resource for s in chunk],
            "end": page * page_size + max(len(chunk) - 1, 0),
            "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1) if has_next else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
            "start": page * page_size,
            "uri": uri(page),
        }
        return web.json_response(body)
