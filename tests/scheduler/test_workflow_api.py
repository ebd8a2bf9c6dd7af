"""Workflow import/export through the owner API: ingest -> NATS request/reply -> scheduler -> Postgres."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml

from replyline.cli import main
from services.ingest.auth import create_token
from services.ingest.service import QUERIES
from services.ingest.settings import IngestSettings
from services.scheduler.workflow.definition import load_text
from tests.ingest.running import PUBLIC, Ingest, start_ingest
from tests.scheduler.conftest import Schedulers
from testsupport.webhooks import AUTH_TOKEN

REPO = Path(__file__).resolve().parents[2]
WELCOME = REPO / "workflows" / "new_lead_welcome.yaml"
YAML = "application/yaml"

StartIngest = Callable[[], Awaitable[Ingest]]


def imported_yaml() -> str:
    """The reference sequence under another name and version, so it is not the one loaded at start."""
    text = WELCOME.read_text()
    assert text.startswith("name: New lead welcome\nversion: 1\n")
    return text.replace("name: New lead welcome\nversion: 1\n", "name: Spring promo\nversion: 3\n", 1)


def plain(text: str) -> Any:
    """A definition as the JSON/YAML data an export should parse back to (lists, not tuples)."""
    return json.loads(json.dumps(load_text(text, "expected.yaml").to_builtins()))


@pytest.fixture
async def start_api(make_settings: Callable[..., Any]) -> AsyncIterator[StartIngest]:
    running: list[Ingest] = []

    async def start() -> Ingest:
        settings: IngestSettings = make_settings(
            IngestSettings,
            http_port=0,
            twilio_auth_token=AUTH_TOKEN,
            public_base_url=PUBLIC,
            drafter_rpc_timeout_s=2.0,
        )
        service, url = await start_ingest(settings)
        ingest = Ingest(url, PUBLIC, settings, aiohttp.ClientSession(), service)
        running.append(ingest)
        return ingest

    yield start
    for ingest in running:
        await ingest.session.close()
        await ingest.service.stop()


async def post(
    api: Ingest, path: str, text: str, content_type: str, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with api.session.post(api.url + path, data=text.encode(), headers=headers) as resp:
        return resp.status, await resp.json()


async def admin_token(database_url: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return await create_token(conn, QUERIES, "workflow-tests", "admin")
    finally:
        await conn.close()


async def test_import_then_export_round_trips(
    start_api: StartIngest, schedulers: Schedulers, database_url: str
) -> None:
    _, exposed = await schedulers.start()
    api = await start_api()
    token = await admin_token(database_url)
    text = imported_yaml()

    status, body = await post(api, "/api/workflows", text, YAML, token)
    assert (status, body) == (201, {"name": "Spring promo", "version": 3})
    # Stored like the files of workflows/ at start, and active in the engine that answered.
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT name, trigger_type FROM workflow_definitions WHERE workflow_key = $1 AND version = $2",
            "spring_promo",
            3,
        )
    finally:
        await conn.close()
    assert row is not None and (row["name"], row["trigger_type"]) == ("Spring promo", "contact_created")
    assert exposed["engine"].active["spring_promo"].version == 3

    expected = plain(text)
    status, exported = await api.request("GET", "/api/workflows/spring_promo?format=json", token=token)
    assert status == 200 and exported == expected
    status, exported_yaml = await api.request("GET", "/api/workflows/Spring promo", token=token)
    assert status == 200 and yaml.safe_load(exported_yaml) == expected

    status, listing = await api.request("GET", "/api/workflows", token=token)
    assert status == 200
    names = {(w["name"], w["version"]) for w in listing["workflows"]}
    assert {("Spring promo", 3), ("New lead welcome", 1)} <= names

    status, missing = await api.request("GET", "/api/workflows/nope", token=token)
    assert status == 404 and "nope" in missing["error"]


async def test_an_api_import_stays_active_after_a_restart(
    start_api: StartIngest, schedulers: Schedulers, database_url: str
) -> None:
    first, _ = await schedulers.start()
    api = await start_api()
    token = await admin_token(database_url)
    status, _ = await post(api, "/api/workflows", imported_yaml(), YAML, token)
    assert status == 201
    await schedulers.stop(first)
    # A new replica (or the same one restarted) enrolls in the stored workflow too,
    # although no file for it exists in workflows/.
    _, exposed = await schedulers.start()
    assert exposed["engine"].active["spring_promo"].version == 3
    assert "new_lead_welcome" in exposed["engine"].active


async def test_a_json_import_is_parsed_as_json(
    start_api: StartIngest, schedulers: Schedulers, database_url: str
) -> None:
    await schedulers.start()
    api = await start_api()
    token = await admin_token(database_url)
    data = load_text(imported_yaml(), "x.yaml").to_builtins()
    data["version"] = 4
    status, body = await post(api, "/api/workflows", json.dumps(data), "application/json", token)
    assert (status, body) == (201, {"name": "Spring promo", "version": 4})


async def test_a_broken_workflow_is_refused_with_line_and_reason(
    start_api: StartIngest, schedulers: Schedulers, database_url: str
) -> None:
    await schedulers.start()
    api = await start_api()
    token = await admin_token(database_url)
    broken = imported_yaml().replace("next: wait_two_days", "next: wait_3_days")
    line = broken.splitlines().index("    next: wait_3_days") + 1

    status, body = await post(api, "/api/workflows?source=promo.yaml", broken, YAML, token)
    assert status == 400
    assert body == {
        "error": "invalid",
        "issues": [
            {
                "source": "promo.yaml",
                "line": line,
                "reason": "step 'reminder' goes to unknown step 'wait_3_days'",
            }
        ],
    }
    status, _ = await api.request("GET", "/api/workflows/spring_promo", token=token)
    assert status == 404  # nothing was stored

    status, body = await post(api, "/api/workflows", "name: x\n", "text/plain", token)
    assert status == 400 and "Content-Type" in body["error"]


async def test_the_api_needs_an_admin_token(start_api: StartIngest, schedulers: Schedulers) -> None:
    await schedulers.start()
    api = await start_api()
    status, _ = await post(api, "/api/workflows", imported_yaml(), YAML)
    assert status == 401
    status, _ = await api.request("GET", "/api/workflows", token="not-a-token")
    assert status == 401


async def test_no_scheduler_is_503(start_api: StartIngest, database_url: str) -> None:
    api = await start_api()
    token = await admin_token(database_url)
    status, body = await post(api, "/api/workflows", imported_yaml(), YAML, token)
    assert status == 503 and "scheduler" in body["error"]
    status, _ = await api.request("GET", "/api/workflows", token=token)
    assert status == 503


async def test_cli_imports_and_exports_over_the_api(
    start_api: StartIngest,
    schedulers: Schedulers,
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await schedulers.start()
    api = await start_api()
    token = await admin_token(database_url)
    source = tmp_path / "promo.yaml"
    source.write_text(imported_yaml())
    out = tmp_path / "out.json"
    remote = ["--api", api.url, "--token", token]

    # The CLI is blocking (urllib): run it off the loop that serves ingest and the scheduler.
    assert await asyncio.to_thread(main, ["workflows", "import", str(source), *remote]) == 0
    assert "'Spring promo' v3" in capsys.readouterr().out
    code = await asyncio.to_thread(
        main, ["workflows", "export", "spring_promo", "--format", "json", "-o", str(out), *remote]
    )
    assert code == 0
    assert json.loads(out.read_text()) == plain(imported_yaml())

    source.write_text(imported_yaml().replace("type: delay", "type: dleay", 1))
    assert await asyncio.to_thread(main, ["workflows", "import", str(source), *remote]) == 1
    assert "promo.yaml:" in capsys.readouterr().err
