"""`replyline workflows validate|test|import|export`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from replyline.cli import main

REPO = Path(__file__).resolve().parents[2]
WELCOME = REPO / "workflows" / "new_lead_welcome.yaml"


def test_validate_ok_and_broken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(WELCOME.read_text().replace("next: wait_two_days", "next: wait_3_days"))
    assert main(["workflows", "validate", str(WELCOME)]) == 0
    assert main(["workflows", "validate", str(WELCOME), str(broken)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{broken}:29: step 'reminder' goes to unknown step 'wait_3_days'"]


def test_dry_run_prints_the_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    contact = json.dumps({"first_name": "Ana", "phone": "+15551234567", "source": "facebook_ad"})
    code = main(
        ["workflows", "test", str(WELCOME), "--contact", contact, "--start", "2026-03-02T09:00:00+00:00"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "dry run, nothing is sent" in out
    assert "'Hi Ana, thanks for reaching out to us!" in out
    assert "wait 1d until 2026-03-03T09:00:00+00:00" in out
    assert "last_sms_reply exists -> false" in out
    assert out.strip().splitlines()[-1].startswith("T+3d")


def test_export_json_then_import_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exported = tmp_path / "welcome.json"
    assert main(["workflows", "export", str(WELCOME), "-o", str(exported)]) == 0
    data = json.loads(exported.read_text())
    assert data["name"] == "New lead welcome" and len(data["steps"]) == 7
    target = tmp_path / "flows"
    assert main(["workflows", "import", str(exported), "--dir", str(target)]) == 0
    imported = target / "new_lead_welcome.yaml"
    assert main(["workflows", "export", str(imported)]) == 0
    capsys.readouterr()
    assert main(["workflows", "export", str(imported)]) == 0
    assert json.loads(capsys.readouterr().out) == data
    # Importing again does not overwrite without --force.
    assert main(["workflows", "import", str(exported), "--dir", str(target)]) == 1
