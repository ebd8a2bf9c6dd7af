"""Lead-controlled data against workflow steps (issue 11, items 10-13), on real NATS, Postgres and SMTP.

A step fails (recorded, failure path taken) instead of crashing the event into
the DLQ; side effects are not repeated on redelivery; http steps encode what
they substitute and never reach internal hosts unless allowed; send_email mails
one address; YAML alias bombs are refused before they expand.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from libs import rpc
from libs.bus import Bus
from libs.events import LeadCreated
from services.scheduler.engine import INTERRUPTED
from tests.harness import eventually, stays
from tests.scheduler.conftest import Inbox, Schedulers

PHONE = "+15551234567"
THREAD = "15551234567"

Calls = list[web.Request]


def lead(**overrides: Any) -> LeadCreated:
    values: dict[str, Any] = {
        "thread": THREAD,
        "lead_id": "lead-1",
        "phone": PHONE,
        "first_name": "Ana",
        "last_name": "Lopez",
        "email": "ana@example.com",
        "source": "web",
    }
    values.update(overrides)
    return LeadCreated(**values)


def only(folder: Path, **files: str) -> None:
    """Replace the welcome sequence by these workflow files."""
    (folder / "new_lead_welcome.yaml").unlink()
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)


async def enrollment(pool: asyncpg.Pool, workflow: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT * FROM workflow_enrollments WHERE workflow_key = $1 AND thread = $2",
        workflow,
        THREAD,
    )


async def finished(pool: asyncpg.Pool, workflow: str) -> asyncpg.Record | None:
    row = await enrollment(pool, workflow)
    return row if row is not None and row["status"] in ("completed", "ended") else None


async def execution(pool: asyncpg.Pool, step_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM workflow_executions WHERE step_id = $1", step_id)


@pytest.fixture
async def hook_server(unused_tcp_port: int) -> AsyncIterator[tuple[Calls, Callable[..., None], int]]:
    """A fake webhook on 127.0.0.1: records requests; ``respond(fn)`` sets the answer."""
    calls: Calls = []
    answer: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}

    async def default(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def handle(request: web.Request) -> web.StreamResponse:
        calls.append(request)
        return await answer.get("fn", default)(request)

    def respond(fn: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        answer["fn"] = fn

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    yield calls, respond, unused_tcp_port
    await runner.cleanup()


def http_workflow(url: str, *, on_error: str = "") -> str:
    """An http step, then the tag ``called``; ``on_error: failed`` tags ``hook_failed`` instead."""
    text = f"""
name: Hook
trigger: {{type: contact_created}}
steps:
  - id: call
    type: http
    config: {{url: "{url}", method: GET, timeout: 2, retries: 0}}
    {f"on_error: {on_error}" if on_error else ""}
  - id: done
    type: add_tag
    config: {{tag: called}}
    next: end
"""
    if on_error == "failed":
        text += """  - id: failed
    type: add_tag
    config: {tag: hook_failed}
"""
    return text


# --- item 10: failures are recorded, not crashes; effects are not repeated ------------


async def test_newline_in_a_name_cannot_break_the_email_subject(
    schedulers: Schedulers,
    bus: Bus,
    pool: asyncpg.Pool,
    workflow_dir: Path,
    smtp_inbox: tuple[Inbox, int],
) -> None:
    only(
        workflow_dir,
        mail="""
name: Mail
trigger: {type: contact_created}
steps:
  - id: hello
    type: send_email
    config: {subject: "Hi {{first_name}}", body: "Welcome"}
""",
    )
    await schedulers.start()
    await bus.publish(lead(first_name="Ana\r\nBcc: victim@example.net"))
    row = await eventually(lambda: finished(pool, "mail"))
    assert row["status"] == "completed"
    inbox = smtp_inbox[0]
    [message] = inbox.messages
    assert message["Subject"] == "Hi Ana Bcc: victim@example.net"
    assert message["Bcc"] is None and message["To"] == "ana@example.com"


async def test_http_answer_that_is_not_utf8_is_recorded_and_called_once(
    schedulers: Schedulers,
    bus: Bus,
    pool: asyncpg.Pool,
    workflow_dir: Path,
    hook_server: tuple[Calls, Callable[..., None], int],
) -> None:
    calls, respond, port = hook_server

    async def latin(request: web.Request) -> web.Response:
        return web.Response(body=b"caf\xe9 \xff\xfe", content_type="text/plain", charset="utf-8")

    respond(latin)
    only(workflow_dir, hook=http_workflow(f"http://127.0.0.1:{port}/hook"))
    await schedulers.start(http_step_allow=("127.0.0.1",))
    await bus.publish(lead())
    row = await eventually(lambda: finished(pool, "hook"))
    assert row["status"] == "completed"
    step = await execution(pool, "call")
    assert step["output"]["status"] == 200 and step["output"]["body"].startswith("caf\ufffd")
    assert len(calls) == 1
    # The key names the step execution: enrollment and sequence number.
    assert calls[0].headers["Idempotency-Key"] == f"wf:{row['id']}:{step['seq']}"


async def test_http_call_is_not_repeated_when_the_step_is_redelivered(
    schedulers: Schedulers,
    bus: Bus,
    pool: asyncpg.Pool,
    workflow_dir: Path,
    hook_server: tuple[Calls, Callable[..., None], int],
) -> None:
    """The step's transaction dies after the webhook ran (failover, network blip): the
    event is redelivered, and the open execution row stops a second call."""
    calls, respond, port = hook_server

    async def kill_the_step_transaction(request: web.Request) -> web.Response:
        killed = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND state = 'idle in transaction' "
            "AND pid <> pg_backend_pid()"
        )
        assert killed == 1
        return web.Response(text="ok")

    respond(kill_the_step_transaction)
    only(workflow_dir, hook=http_workflow(f"http://127.0.0.1:{port}/hook", on_error="failed"))
    await schedulers.start(http_step_allow=("127.0.0.1",))
    await bus.publish(lead())
    row = await eventually(lambda: finished(pool, "hook"), timeout=20)
    assert len(calls) == 1
    step = await execution(pool, "call")
    assert step["error"] == INTERRUPTED and step["completed_at"] is not None
    # Outcome unknown: the failure path is taken.
    assert "hook_failed" in await pool.fetchval("SELECT tags FROM contacts")
    assert row["status"] == "completed"


async def test_failed_step_takes_on_error_and_other_workflows_still_enroll(
    schedulers: Schedulers,
    bus: Bus,
    pool: asyncpg.Pool,
    workflow_dir: Path,
) -> None:
    only(
        workflow_dir,
        hook=http_workflow("http://10.0.0.1/never", on_error="failed"),
        stop=http_workflow("http://10.0.0.1/never", on_error="end").replace("Hook", "Stop"),
        other="""
name: Other
trigger: {type: contact_created}
steps:
  - id: tag
    type: add_tag
    config: {tag: other}
""",
    )
    await schedulers.start()
    await bus.publish(lead())
    for workflow in ("hook", "stop", "other"):
        await eventually(lambda w=workflow: finished(pool, w))  # type: ignore[misc]
    hook = await enrollment(pool, "hook")
    stop = await enrollment(pool, "stop")
    assert hook is not None and hook["status"] == "completed"
    assert stop is not None and (stop["status"], stop["ended_reason"]) == ("ended", "step_failed")
    tags = await pool.fetchval("SELECT tags FROM contacts")
    assert "hook_failed" in tags and "called" not in tags and "other" in tags
    failures = await pool.fetch(
        "SELECT details FROM audit_log WHERE action = 'workflow_step_failed' ORDER BY id"
    )
    assert sorted(f["details"]["workflow"] for f in failures) == ["hook", "stop"]
    assert all("internal" in f["details"]["error"] for f in failures)


# --- item 11: URL encoding and internal destinations ---------------------------------------


async def test_http_url_values_are_encoded_per_component(
    schedulers: Schedulers,
    bus: Bus,
    pool: asyncpg.Pool,
    workflow_dir: Path,
    hook_server: tuple[Calls, Callable[..., None], int],
) -> None:
    calls, _, port = hook_server
    only(
        workflow_dir, hook=http_workflow(f"http://127.0.0.1:{port}/leads/{{{{ref}}}}?ref={{{{ref}}}}&src=wf")
    )
    await schedulers.start(http_step_allow=("127.0.0.1",))
    await bus.publish(lead(fields={"ref": "../admin?x=1&src=evil#frag"}))
    await eventually(lambda: finished(pool, "hook"))
    [call] = calls
    assert call.raw_path.split("?")[0] == "/leads/%2E%2E%2Fadmin%3Fx%3D1%26src%3Devil%23frag"
    assert list(call.query.items()) == [("ref", "../admin?x=1&src=evil#frag"), ("src", "wf")]


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/hook",
        "http://localhost:{port}/hook",  # resolved, then refused
        "http://[::1]:{port}/hook",
        "http://[::ffff:127.0.0.1]:{port}/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
    ],
)
async def test_internal_destinations_are_refused_without_the_allow_list(
    schedulers: Schedulers,
    bus: Bus,
    pool: asyncpg.Pool,
    workflow_dir: Path,
    hook_server: tuple[Calls, Callable[..., None], int],
    target: str,
) -> None:
    calls, _, port = hook_server
    only(workflow_dir, hook=http_workflow(target.format(port=port)))
    await schedulers.start()
    started = time.monotonic()
    await bus.publish(lead())
    row = await eventually(lambda: finished(pool, "hook"))
    assert time.monotonic() - started < 5  # refused before connecting, no timeout waited out
    step = await execution(pool, "call")
    assert "is internal" in step["error"] and step["output"] is None
    assert row["status"] == "completed" and calls == []


async def test_redirects_are_not_followed(
    schedulers: Schedulers,
    bus: Bus,
    pool: asyncpg.Pool,
    workflow_dir: Path,
    hook_server: tuple[Calls, Callable[..., None], int],
) -> None:
    calls, respond, port = hook_server

    async def redirect(request: web.Request) -> web.Response:
        # localhost is not on the allow-list (only 127.0.0.1 is): following would be refused too.
        return web.Response(status=302, headers={"Location": f"http://localhost:{port}/inside"})

    respond(redirect)
    only(workflow_dir, hook=http_workflow(f"http://127.0.0.1:{port}/hook"))
    await schedulers.start(http_step_allow=("127.0.0.1",))
    await bus.publish(lead())
    await eventually(lambda: finished(pool, "hook"))
    step = await execution(pool, "call")
    assert step["output"]["status"] == 302 and len(calls) == 1


# --- item 12: one address per email ---------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    ["ana@example.com, boss@example.net", "ana@example.com;boss@example.net", "ana@example.com boss@x.net"],
)
async def test_a_lead_email_with_several_addresses_is_a_step_failure(
    schedulers: Schedulers,
    bus: Bus,
    pool: asyncpg.Pool,
    workflow_dir: Path,
    smtp_inbox: tuple[Inbox, int],
    email: str,
) -> None:
    only(
        workflow_dir,
        mail="""
name: Mail
trigger: {type: contact_created}
steps:
  - id: hello
    type: send_email
    config: {subject: "Hi", body: "Welcome"}
  - id: after
    type: add_tag
    config: {tag: mailed}
""",
    )
    await schedulers.start()
    await bus.publish(lead(email=email))
    row = await eventually(lambda: finished(pool, "mail"))
    step = await execution(pool, "hello")
    assert "not exactly one valid email address" in step["error"]
    assert row["status"] == "completed"  # no on_error: the sequence goes on
    await stays(lambda: smtp_inbox[0].messages == [], within=0.2)


# --- item 13: YAML alias bomb through the API ---------------------------------------------

BILLION_LAUGHS = """name: lol
trigger: {type: contact_created}
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
steps: *i
"""


async def test_yaml_alias_bomb_import_is_refused_at_once(schedulers: Schedulers, bus: Bus) -> None:
    await schedulers.start()
    started = time.monotonic()
    client = rpc.RpcClient(bus.nc, bus.prefix, 5)
    with pytest.raises(rpc.Refused) as refused:
        await client.call(rpc.WORKFLOW_IMPORT, rpc.ImportWorkflow(text=BILLION_LAUGHS, source="lol.yaml"))
    assert time.monotonic() - started < 2
    assert (refused.value.code, refused.value.reason) == (400, rpc.INVALID)
    assert refused.value.details == {
        "issues": [
            {"source": "lol.yaml", "line": 4, "reason": "YAML aliases (*a) are not allowed in workflows"}
        ],
    }
    # The scheduler still answers.
    listed = await client.call(rpc.WORKFLOW_LIST, rpc.ListWorkflows())
    assert isinstance(listed.workflows, list)
