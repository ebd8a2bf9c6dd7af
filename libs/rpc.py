"""Requests between services: every endpoint declared once, served as a NATS ``micro`` endpoint.

One :class:`Endpoint` names the owning service, the subject (``<prefix>rpc.<service>.<path>``),
the request and response Structs and the refusals a caller is expected to handle. The owner
serves it with :func:`serve` (registered on its ``replyline-<service>`` micro service by the
runner, so ``nats micro info`` / ``$SRV.INFO`` list it and ``$SRV.STATS`` count it); callers
ask with :class:`RpcClient`. No subject string is spelled anywhere else.

Errors use micro's convention: the ``Nats-Service-Error`` header carries a short reason and
``Nats-Service-Error-Code`` an HTTP-like code; the body of an error reply is a JSON object of
details (e.g. ``{"issues": [...]}``), possibly empty.

* A handler raises :class:`Refused` for an answer about the request (``not_found`` 404,
  ``invalid`` 400, ``incomplete`` 409, ...). If the reason is one of the endpoint's
  ``answers`` the caller gets the same :class:`Refused`; any other refusal is a failure.
* An undecodable request is answered ``400 bad request: ...``; any other exception
  ``500 <service> failed: <type>`` (and counted in micro's stats as an error).
* The caller raises :class:`RpcUnavailable` when nobody answers (service down, NATS down,
  too slow) and :class:`RpcFailed` for any failure or a reply that is not the agreed shape.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
import nats.errors
import structlog
from nats import micro
from nats.aio.client import Client as NATS
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER
from nats.micro.service import ServiceError

log = structlog.get_logger("rpc")

Req = TypeVar("Req", bound=msgspec.Struct)
Resp = TypeVar("Resp", bound=msgspec.Struct)

NOT_FOUND = "not_found"
INVALID = "invalid"
INCOMPLETE = "incomplete"
CONFLICT = "conflict"


class Refused(Exception):
    """An answer about the request, not a failure of the service (micro error headers)."""

    def __init__(self, code: int, reason: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.details = details or {}


class RpcUnavailable(Exception):
    """Nobody answered (not running, NATS down, or too slow): an HTTP API answers 503."""


class RpcFailed(Exception):
    """The service failed, refused unexpectedly, or answered something not the agreed shape."""


@dataclass(frozen=True)
class Endpoint(Generic[Req, Resp]):
    service: str
    #: The subject below ``rpc.<service>.``; also the micro endpoint's name (dots as dashes).
    path: str
    request: type[Req]
    response: type[Resp]
    #: Refusal reasons the caller handles (anything else is a failure).
    answers: frozenset[str] = field(default=frozenset())

    def subject(self, prefix: str) -> str:
        return f"{prefix}rpc.{self.service}.{self.path}"

    @property
    def name(self) -> str:
        return self.path.replace(".", "-")


# -- the drafter ------------------------------------------------------------------------

MAX_DRAFTER_LIMIT = 500


class Listing(msgspec.Struct, frozen=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_DRAFTER_LIMIT)] = 50


class PendingDrafts(msgspec.Struct, frozen=True):
    #: Oldest first; each has at least draft_id, ref, version, thread, to_number, body
    #: (services/drafter/store.py Draft.summary, docs/drafter.md).
    drafts: list[dict[str, Any]]


class ManualQueue(msgspec.Struct, frozen=True):
    items: list[dict[str, Any]]


DRAFTS_PENDING = Endpoint("drafter", "pending", Listing, PendingDrafts)
MANUAL_QUEUE = Endpoint("drafter", "queue", Listing, ManualQueue)


# -- the scheduler: workflows -----------------------------------------------------------

Format = Literal["yaml", "json"]


class ImportWorkflow(msgspec.Struct, frozen=True):
    text: str
    source: str = "api.yaml"
    format: Format = "yaml"


class Imported(msgspec.Struct, frozen=True):
    name: str
    key: str
    version: int


class ExportWorkflow(msgspec.Struct, frozen=True):
    name: str
    format: Format = "yaml"


class Exported(msgspec.Struct, frozen=True):
    text: str


class ListWorkflows(msgspec.Struct, frozen=True):
    pass


class WorkflowEntry(msgspec.Struct, frozen=True):
    name: str
    key: str
    version: int
    active: bool


class Workflows(msgspec.Struct, frozen=True):
    workflows: list[WorkflowEntry]


class TestWorkflow(msgspec.Struct, frozen=True):
    name: str
    contact: dict[str, Any] = {}
    start: str | None = None


class TimelineEntry(msgspec.Struct, frozen=True):
    at: str
    offset_s: int
    step_id: str
    step_type: str
    summary: str


class DryRun(msgspec.Struct, frozen=True):
    name: str
    version: int
    start: str
    timeline: list[TimelineEntry]
    text: str


class ListEnrollments(msgspec.Struct, frozen=True):
    name: str
    status: str | None = None
    limit: int = 200


class Enrollments(msgspec.Struct, frozen=True):
    name: str
    active: bool
    enrollments: list[dict[str, Any]]


class SwitchWorkflow(msgspec.Struct, frozen=True):
    name: str
    by: str = ""


class Switched(msgspec.Struct, frozen=True):
    name: str
    active: bool


_NF = frozenset({NOT_FOUND})
_NF_INVALID = frozenset({NOT_FOUND, INVALID})
WORKFLOW_IMPORT = Endpoint("scheduler", "workflows.import", ImportWorkflow, Imported, frozenset({INVALID}))
WORKFLOW_EXPORT = Endpoint("scheduler", "workflows.export", ExportWorkflow, Exported, _NF)
WORKFLOW_LIST = Endpoint("scheduler", "workflows.list", ListWorkflows, Workflows)
WORKFLOW_TEST = Endpoint("scheduler", "workflows.test", TestWorkflow, DryRun, _NF_INVALID)
WORKFLOW_ENROLLMENTS = Endpoint(
    "scheduler", "workflows.enrollments", ListEnrollments, Enrollments, _NF_INVALID
)
WORKFLOW_DEACTIVATE = Endpoint("scheduler", "workflows.deactivate", SwitchWorkflow, Switched, _NF)
WORKFLOW_REACTIVATE = Endpoint("scheduler", "workflows.reactivate", SwitchWorkflow, Switched, _NF)


# -- the scheduler: contact imports (libs/contact_import_client.py) ---------------------


class StagedRow(msgspec.Struct, frozen=True):
    line: int
    phone: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    tags: list[str] = []
    fields: dict[str, str] = {}
    opted_out: bool = False


class StageContacts(msgspec.Struct, frozen=True):
    import_id: uuid.UUID
    rows: list[StagedRow]
    source: str = ""


class Staged(msgspec.Struct, frozen=True):
    staged: int


class CommitContacts(msgspec.Struct, frozen=True):
    import_id: uuid.UUID
    rows: int
    fire_workflows: bool = False


class ImportResult(msgspec.Struct, frozen=True):
    rows: int
    contacts: int
    duplicates: int
    created: int
    updated: int
    unchanged: int
    opted_out: int


class AbortContacts(msgspec.Struct, frozen=True):
    import_id: uuid.UUID


class Aborted(msgspec.Struct, frozen=True):
    aborted: bool = True


_CONTACT_ANSWERS = frozenset({INVALID, INCOMPLETE, CONFLICT})
CONTACTS_STAGE = Endpoint("scheduler", "contacts.stage", StageContacts, Staged, _CONTACT_ANSWERS)
CONTACTS_COMMIT = Endpoint("scheduler", "contacts.commit", CommitContacts, ImportResult, _CONTACT_ANSWERS)
CONTACTS_ABORT = Endpoint("scheduler", "contacts.abort", AbortContacts, Aborted)

ENDPOINTS: tuple[Endpoint[Any, Any], ...] = (
    DRAFTS_PENDING,
    MANUAL_QUEUE,
    WORKFLOW_IMPORT,
    WORKFLOW_EXPORT,
    WORKFLOW_LIST,
    WORKFLOW_TEST,
    WORKFLOW_ENROLLMENTS,
    WORKFLOW_DEACTIVATE,
    WORKFLOW_REACTIVATE,
    CONTACTS_STAGE,
    CONTACTS_COMMIT,
    CONTACTS_ABORT,
)


# -- serving ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Served(Generic[Req, Resp]):
    endpoint: Endpoint[Req, Resp]
    handler: Callable[[Req], Awaitable[Resp]]


def serve(endpoint: Endpoint[Req, Resp], handler: Callable[[Req], Awaitable[Resp]]) -> Served[Req, Resp]:
    """Pair an endpoint with its handler (the runner adds it to the service's micro service)."""
    return Served(endpoint, handler)


async def add_endpoints(svc: micro.Service, prefix: str, served: Iterable[Served[Any, Any]]) -> None:
    for item in served:
        endpoint = item.endpoint
        await svc.add_endpoint(
            name=endpoint.name,
            subject=endpoint.subject(prefix),
            # Replicas of one service share each endpoint (one answer per request).
            queue_group=endpoint.service,
            handler=_micro_handler(item),
            metadata={"request": endpoint.request.__name__, "response": endpoint.response.__name__},
        )


def _micro_handler(item: Served[Any, Any]) -> Callable[[micro.Request], Awaitable[None]]:
    endpoint = item.endpoint

    async def handle(request: micro.Request) -> None:
        try:
            decoded = msgspec.json.decode(request.data or b"{}", type=endpoint.request)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ServiceError("400", f"bad request: {exc}") from None
        try:
            answer = await item.handler(decoded)
        except Refused as refusal:
            body = msgspec.json.encode(refusal.details) if refusal.details else b""
            await request.respond_error(str(refusal.code), refusal.reason, data=body)
            return
        except Exception as exc:  # the caller must get an answer, not a timeout
            log.exception("rpc_failed", endpoint=endpoint.subject(""))
            # Raised, not answered: micro counts it in $SRV.STATS (num_errors, last_error).
            raise ServiceError("500", f"{endpoint.service} failed: {type(exc).__name__}") from exc
        await request.respond(msgspec.json.encode(answer))

    return handle


# -- asking -----------------------------------------------------------------------------


class RpcClient:
    """Typed requests to other services' endpoints over one NATS connection."""

    def __init__(self, nc: NATS, prefix: str, timeout_s: float) -> None:
        self._nc = nc
        self._prefix = prefix
        self._timeout = timeout_s

    async def call(self, endpoint: Endpoint[Req, Resp], request: Req) -> Resp:
        subject = endpoint.subject(self._prefix)
        peer = endpoint.service
        try:
            reply = await self._nc.request(subject, msgspec.json.encode(request), timeout=self._timeout)
        except nats.errors.NoRespondersError:
            raise RpcUnavailable(f"the {peer} is not running (no responder on {subject})") from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise RpcUnavailable(
                f"the {peer} did not answer on {subject} within {self._timeout:g}s"
            ) from None
        except nats.errors.Error as exc:
            raise RpcUnavailable(f"cannot reach the {peer} over NATS: {exc}") from None
        headers = reply.headers or {}
        if ERROR_CODE_HEADER in headers:
            raise _refusal(endpoint, headers, reply.data)
        try:
            return msgspec.json.decode(reply.data, type=endpoint.response)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise RpcFailed(f"the {peer}'s reply is not the agreed shape: {exc}") from None


def _refusal(endpoint: Endpoint[Any, Any], headers: dict[str, str], data: bytes) -> Exception:
    reason = headers.get(ERROR_HEADER, "")
    try:
        code = int(headers.get(ERROR_CODE_HEADER, "500"))
    except ValueError:
        code = 500
    if reason not in endpoint.answers:
        return RpcFailed(reason or f"error {code}")
    try:
        details = msgspec.json.decode(data) if data else {}
    except msgspec.DecodeError:
        details = {}
    return Refused(code, reason, details if isinstance(details, dict) else {})
