"""Contacts in: `replyline contacts import` and POST /api/contacts/import, through the scheduler
(NATS request/reply) into its contacts, on the real NATS and Postgres."""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from libs import contact_csv
from libs.bus import Bus
from libs.contact_import_client import import_contacts
from libs.events import ContactOptout, OutboundRequested
from replyline.cli import main
from services.sender.service import MIGRATIONS as SENDER_MIGRATIONS
from services.sender.service import build as sender_build
from services.sender.settings import SenderSettings
from tests.harness import EventCollector, eventually, start_service
from tests.scheduler.conftest import Schedulers
from tests.scheduler.test_workflow_api import (  # noqa: F401 (start_api is a fixture)
    StartIngest,
    admin_token,
    start_api,
)

pytestmark = pytest.mark.timeout(180)

GOOD = """\
Phone,First Name,Last Name,Email,Tags,Opted Out,source,budget
(212) 555-0101,Ana,Lopez,ana@example.com,vip;spring,no,facebook_ad,500
+1 212 555 0102,Ben,,ben@example.com,,yes,,
212-555-0101,,,,returning,,,800
2125550103,Cara,Diaz,,,,referral,
"""

BAD = """\
phone,first_name,email,consent
2125550101,Ana,ana@example.com,yes
not a number,Ben,,
2125550104,Cara,cara-at-example,
2125550105,Dan,,maybe
"""


@pytest.fixture
def cli_env(
    nats_url: str, database_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {"NATS_URL": nats_url, "DATABASE_URL": database_url, "NAMESPACE": namespace}.items():
        monkeypatch.setenv(f"REPLYLINE_{key}", value)
    monkeypatch.delenv("REPLYLINE_CONFIG", raising=False)
    monkeypatch.setenv("REPLYLINE_DEFAULT_REGION", "US")


async def contacts(pool: asyncpg.Pool) -> dict[str, asyncpg.Record]:
    return {r["phone"]: r for r in await pool.fetch("SELECT * FROM contacts ORDER BY phone")}


async def cli(*args: str) -> int:
    return int(await asyncio.to_thread(main, ["contacts", "import", *args]))


async def test_invalid_rows_are_reported_and_nothing_is_imported(
    schedulers: Schedulers,
    cli_env: None,
    tmp_path: Path,
    pool: asyncpg.Pool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await schedulers.start()
    path = tmp_path / "bad.csv"
    path.write_text(BAD)
    assert await cli(str(path), "--no-progress") == 1
    err = capsys.readouterr().err
    assert f"{path}:3: phone 'not a number' is not a phone number" in err
    assert f"{path}:4: email 'cara-at-example' is not an email address" in err
    assert f"{path}:5: consent 'maybe' is not yes/no/opted_out" in err
    assert "3 invalid row(s); nothing was imported" in err
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 0  # line 2 was valid, still nothing

    path.write_text("name,email\nAna,a@example.com\n")
    assert await cli(str(path), "--no-progress") == 1
    assert ":1: line 1: no phone column" in capsys.readouterr().err


async def test_import_merges_duplicates_honours_opt_outs_and_is_idempotent(
    schedulers: Schedulers,
    cli_env: None,
    tmp_path: Path,
    pool: asyncpg.Pool,
    bus: Bus,
    collector: EventCollector,
    make_settings: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    await schedulers.start()
    sender = await start_service(
        make_settings(SenderSettings, owner_numbers=["+15550000001"]),
        name="sender", build=sender_build, migrations=SENDER_MIGRATIONS,
    )  # fmt: skip
    try:
        # Someone who opted out earlier and whom the file lists as consenting: stays opted out.
        await pool.execute(
            "INSERT INTO contacts (thread, phone, first_name, opted_out) VALUES ('12125550103', '+12125550103', '', true)"
        )
        path = tmp_path / "leads.csv"
        path.write_text(GOOD)
        assert await cli(str(path), "--json") == 0
        out, err = capsys.readouterr()
        result = json.loads(out)
        assert {k: result[k] for k in ("rows", "contacts", "created", "updated", "duplicates", "opted_out")} == {
            "rows": 4, "contacts": 3, "created": 2, "updated": 1, "duplicates": 1, "opted_out": 1,
        }  # fmt: skip
        assert "importing [" in err  # the progress bar

        rows = await contacts(pool)
        ana = rows["+12125550101"]
        assert (ana["first_name"], ana["last_name"], ana["email"]) == ("Ana", "Lopez", "ana@example.com")
        assert sorted(ana["tags"]) == ["returning", "spring", "vip"]
        assert ana["fields"] == {"source": "facebook_ad", "budget": "800"}  # the later line wins
        assert ana["opted_out"] is False
        assert rows["+12125550102"]["opted_out"] is True
        cara = rows["+12125550103"]
        assert cara["opted_out"] is True and cara["first_name"] == "Cara"

        # The opt-out reaches the sender's consent projection through contact.optout.
        [optout] = await collector.wait_for(ContactOptout, lambda e: e.number == "+12125550102")
        assert optout.keyword == "IMPORT"

        async def in_consent() -> bool:
            return bool(
                await pool.fetchval("SELECT opted_out FROM consent WHERE number = '+12125550102'")
            )

        await eventually(in_consent, timeout=10)

        async def scheduler_saw_it() -> bool:  # its own contact.optout handler touches the row
            row = (await contacts(pool))["+12125550102"]
            return bool(row["updated_at"] > row["created_at"])

        await eventually(scheduler_saw_it, timeout=10)

        # The same file again: nothing changes, no new opt-out event.
        before = {p: r["updated_at"] for p, r in (await contacts(pool)).items()}
        assert await cli(str(path), "--json", "--no-progress") == 0
        again = json.loads(capsys.readouterr().out)
        assert (again["created"], again["updated"], again["unchanged"], again["opted_out"]) == (0, 0, 3, 0)
        assert {p: r["updated_at"] for p, r in (await contacts(pool)).items()} == before
        await collector.assert_none(ContactOptout, lambda e: e.id != optout.id, within=0.5)
        audit = await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'contacts.imported'")
        assert audit == 2
    finally:
        await sender.stop()


async def test_api_import_and_contact_created_workflows(
    start_api: StartIngest,  # noqa: F811
    schedulers: Schedulers,
    database_url: str,
    pool: asyncpg.Pool,
    collector: EventCollector,
) -> None:
    await schedulers.start()
    api = await start_api()
    token = await admin_token(database_url)

    async def post(body: str, query: str = "") -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}
        async with api.session.post(
            f"{api.url}/api/contacts/import{query}", data=body.encode(), headers=headers
        ) as resp:
            return resp.status, await resp.json()

    status, body = await post(BAD)
    assert status == 400 and body["error_count"] == 3
    assert [i["line"] for i in body["issues"]] == [3, 4, 5]

    # Off by default: imported contacts do not start contact_created workflows.
    status, body = await post("phone,first_name,source\n2125550111,Eve,facebook_ad\n")
    assert status == 200 and body["created"] == 1
    await collector.assert_none(OutboundRequested, within=1.0)
    # With fire_workflows=true, the welcome workflow (source facebook_ad) starts for new contacts.
    status, body = await post("phone,first_name,source\n2125550112,Fay,facebook_ad\n", "?fire_workflows=true")
    assert status == 200 and body["created"] == 1
    [welcome] = await collector.wait_for(OutboundRequested, lambda e: e.to_number == "+12125550112")
    assert welcome.body.startswith("Hi Fay,")
    status, _ = await api.request("POST", "/api/contacts/import", data=b"phone\n1\n")
    assert status == 401


def generated(path: Path, rows: int) -> None:
    with path.open("w") as out:
        out.write("phone,first_name,last_name,email,tags,opted_out,source\n")
        for n in range(rows):
            out.write(f"+1212{2000000 + n:07d},First{n},Last{n},p{n}@example.com,t{n % 7},{'yes' if n % 50 == 0 else 'no'},csv\n")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def test_ten_thousand_rows(
    schedulers: Schedulers, cli_env: None, tmp_path: Path, pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    """The 100,000-row case is bench/bench_contact_import.py; this is its 10k sibling."""
    await schedulers.start()
    path = tmp_path / "big.csv"
    generated(path, 10_000)
    started = time.perf_counter()
    assert await cli(str(path), "--json") == 0
    elapsed = time.perf_counter() - started
    result = json.loads(capsys.readouterr().out)
    assert (result["created"], result["opted_out"]) == (10_000, 200)
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 10_000
    print(f"\n10,000 rows imported in {elapsed:.1f}s, peak RSS {peak_rss_mb():.0f} MB")
    assert elapsed < 60


async def test_each_row_is_parsed_once_and_the_file_read_once(
    schedulers: Schedulers, bus: Bus, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pass 1 validates and spools the normalised rows; pass 2 sends the spool (docs/contacts.md)."""
    await schedulers.start()
    parsed: list[str] = []
    real = contact_csv.normalise_phone

    def counting(raw: str, region: str) -> str:
        parsed.append(raw)
        return real(raw, region)

    monkeypatch.setattr(contact_csv, "normalise_phone", counting)
    opened = 0

    def open_lines() -> list[str]:
        nonlocal opened
        opened += 1
        return GOOD.splitlines(keepends=True)

    async def call(method: str, payload: dict[str, Any]) -> dict[str, Any]:
        reply = await bus.nc.request(
            f"{bus.prefix}rpc.scheduler.contacts.{method}", json.dumps(payload).encode(), timeout=30
        )
        answer: dict[str, Any] = json.loads(reply.data)
        return answer

    report = await import_contacts(open_lines, call, region="US", source="test")
    assert report.ok and report.result["contacts"] == 3, report
    assert opened == 1
    assert len(parsed) == 4  # one parse per data row, not two
    assert len(await contacts(pool)) == 3
