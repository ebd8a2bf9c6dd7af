"""Workflow API (seed 002) through the real ingest API -> NATS request/reply -> scheduler:
dry run, enrollments, deactivate/reactivate, and a removed workflow file at start-up."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest

from libs.bus import Bus
from libs.events import LeadCreated, OutboundRequested
from replyline.cli import main
from services.scheduler.workflow.definition import load_file
from services.scheduler.workflow.timeline import format_timeline, simulate
from tests.harness import EventCollector, eventually
from tests.scheduler.conftest import REPO, Schedulers
from tests.scheduler.test_workflow_api import (  # noqa: F401 (start_api is a fixture)
    YAML,
    StartIngest,
    admin_token,
    imported_yaml,
    post,
    start_api,
)

WELCOME = REPO / "workflows" / "new_lead_welcome.yaml"
CONTACT = {"first_name": "Ana", "phone": "+15551234567", "source": "facebook_ad"}
START = "2030-06-04T09:00:00+00:00"


def lead(lead_id: str, phone: str) -> LeadCreated:
    return LeadCreated(
        thread=phone.lstrip("+"), lead_id=lead_id, phone=phone, first_name="Ana", source="facebook_ad"
    )


async def test_dry_run_answers_the_cli_timeline(
    start_api: StartIngest,  # noqa: F811
    schedulers: Schedulers,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await schedulers.start()
    api = await start_api()
    token = await admin_token(database_url)

    status, body = await api.request(
        "POST",
        "/api/workflows/New lead welcome/test",
        token=token,
        json={"contact": CONTACT, "start": START},
    )
    assert status == 200, body
    start = datetime.fromisoformat(START)
    expected = simulate(load_file(WELCOME), CONTACT, start)
    assert body["text"] == format_timeline(expected, start)
    assert [r["step_id"] for r in body["timeline"]] == [e.step_id for e in expected]
    assert body["timeline"][0]["summary"].startswith("SMS to +15551234567: 'Hi Ana,")
    assert (body["name"], body["version"]) == ("New lead welcome", 1)

    # The CLI: `workflows test NAME --api` prints the same timeline as the local file run.
    remote = ["--api", api.url, "--token", token]
    args = ["--contact", json.dumps(CONTACT), "--start", START]
    assert await asyncio.to_thread(main, ["workflows", "test", str(WELCOME), *args]) == 0
    local = capsys.readouterr().out.splitlines()[1:]
    assert await asyncio.to_thread(main, ["workflows", "test", "new_lead_welcome", *args, *remote]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == local

    status, missing = await api.request("POST", "/api/workflows/nope/test", token=token, json={})
    assert status == 404 and "nope" in missing["error"]
    status, _ = await api.request("POST", "/api/workflows/new_lead_welcome/test", json={})
    assert status == 401


async def test_enrollments_and_deactivate_reactivate(
    start_api: StartIngest,  # noqa: F811
    schedulers: Schedulers,
    database_url: str,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, exposed = await schedulers.start()
    _, replica = await schedulers.start()  # a second replica must stop enrolling too
    api = await start_api()
    token = await admin_token(database_url)

    await bus.publish(lead("l1", "+15551230001"))
    await collector.wait_for(OutboundRequested, lambda e: e.to_number == "+15551230001")

    async def waiting() -> bool:
        return await pool.fetchval(
            "SELECT count(*) FROM workflow_enrollments WHERE status = 'waiting'"
        ) == 1

    await eventually(waiting, timeout=10)
    status, body = await api.request(
        "GET", "/api/workflows/new_lead_welcome/enrollments?status=waiting", token=token
    )
    assert status == 200 and body["active"] is True
    [row] = body["enrollments"]
    assert (row["phone"], row["status"], row["current_step"], row["waiting_for"], row["version"]) == (
        "+15551230001", "waiting", "wait_a_day", "delay", 1,
    )  # fmt: skip
    status, body = await api.request(
        "GET", "/api/workflows/new_lead_welcome/enrollments?status=completed", token=token
    )
    assert status == 200 and body["enrollments"] == []
    status, body = await api.request(
        "GET", "/api/workflows/new_lead_welcome/enrollments?status=bogus", token=token
    )
    assert status == 400

    # Deactivate (the CLI through the API): nobody new is enrolled, on either replica.
    remote = ["--api", api.url, "--token", token]
    assert await asyncio.to_thread(main, ["workflows", "deactivate", "New lead welcome", *remote]) == 0
    assert "inactive" in capsys.readouterr().out
    await eventually(lambda: _disabled(replica), timeout=5)
    assert "new_lead_welcome" in exposed["engine"].disabled
    for n in range(2, 5):
        await bus.publish(lead(f"l{n}", f"+1555123000{n}"))
    await collector.assert_none(
        OutboundRequested, lambda e: e.to_number in {"+15551230002", "+15551230003"}, within=1.5
    )
    assert await pool.fetchval("SELECT count(*) FROM workflow_enrollments") == 1
    status, listing = await api.request("GET", "/api/workflows", token=token)
    assert {w["key"]: w["active"] for w in listing["workflows"]}["new_lead_welcome"] is False
    actions = await pool.fetch(
        "SELECT service, actor, action FROM audit_log WHERE action LIKE 'workflow.%activated' ORDER BY id"
    )
    assert [tuple(a) for a in actions] == [
        ("scheduler", "HUMAN", "workflow.deactivated"), ("ingest", "HUMAN", "workflow.deactivated"),
    ]  # fmt: skip

    # Reactivate: enrolls again; the enrollment listing shows it.
    status, body = await api.request("POST", "/api/workflows/new_lead_welcome/reactivate", token=token)
    assert (status, body) == (200, {"name": "new_lead_welcome", "active": True})
    await eventually(lambda: _enabled(replica), timeout=5)
    await bus.publish(lead("l9", "+15551230009"))
    await collector.wait_for(OutboundRequested, lambda e: e.to_number == "+15551230009")
    assert await asyncio.to_thread(main, ["workflows", "enrollments", "new_lead_welcome", *remote]) == 0
    out = capsys.readouterr().out
    assert "+15551230009" in out and "+15551230001" in out and "2 enrollment(s)" in out

    status, _ = await api.request("POST", "/api/workflows/nope/deactivate", token=token)
    assert status == 404


async def _disabled(exposed: dict[str, object]) -> bool:
    return "new_lead_welcome" in exposed["engine"].disabled  # type: ignore[attr-defined]


async def _enabled(exposed: dict[str, object]) -> bool:
    return not await _disabled(exposed)


async def test_deactivation_survives_a_restart(
    start_api: StartIngest,  # noqa: F811
    schedulers: Schedulers,
    database_url: str,
) -> None:
    first, _ = await schedulers.start()
    api = await start_api()
    token = await admin_token(database_url)
    status, _ = await api.request("POST", "/api/workflows/new_lead_welcome/deactivate", token=token)
    assert status == 200
    await schedulers.stop(first)
    # The file is still in workflows/ and loaded again: the owner's switch wins.
    _, exposed = await schedulers.start()
    assert "new_lead_welcome" in exposed["engine"].disabled


async def test_a_removed_workflow_file_is_deactivated_at_start(
    start_api: StartIngest,  # noqa: F811
    schedulers: Schedulers,
    database_url: str,
    workflow_dir: Path,
    pool: asyncpg.Pool,
) -> None:
    first, _ = await schedulers.start()
    api = await start_api()
    token = await admin_token(database_url)
    # An API import (its source is not a file of workflows/) is left alone.
    status, _ = await post(api, "/api/workflows", imported_yaml(), YAML, token)
    assert status == 201
    await schedulers.stop(first)

    moved = workflow_dir.parent / "new_lead_welcome.yaml"
    shutil.move(workflow_dir / "new_lead_welcome.yaml", moved)
    _, exposed = await schedulers.start()
    assert exposed["engine"].disabled == {"new_lead_welcome"}
    row = await pool.fetchrow(
        "SELECT actor, details FROM audit_log WHERE action = 'workflow.deactivated' ORDER BY id DESC"
    )
    details = json.loads(row["details"]) if isinstance(row["details"], str) else row["details"]
    assert details["reason"] == "source_file_removed" and details["workflow"] == "new_lead_welcome"
    status, listing = await api.request("GET", "/api/workflows", token=token)
    active = {w["key"]: w["active"] for w in listing["workflows"]}
    assert active == {"new_lead_welcome": False, "spring_promo": True}

    # The file comes back: the workflow is active again (the owner had not switched it off).
    await schedulers.stop(schedulers.running[0])
    shutil.move(moved, workflow_dir / "new_lead_welcome.yaml")
    _, exposed = await schedulers.start()
    assert exposed["engine"].disabled == set()
