"""One registry of services: everything that names the fleet names the same five.

services.SERVICES is the one list; these tests pin the places outside Python that
must follow it (compose, the NATS users, DESIGN.md's table), that each service
exports its spec, and that libs/ keeps no list of its own.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from libs.service import ServiceSpec
from replyline.services import load_spec
from services import SERVICES

ROOT = Path(__file__).resolve().parents[1]


def test_each_service_exports_its_spec() -> None:
    for name in SERVICES:
        spec = load_spec(name)
        assert isinstance(spec, ServiceSpec) and spec.name == name
        assert spec.migrations is None or spec.migrations.is_dir()
        main = (ROOT / "services" / name / "__main__.py").read_text()
        assert f"from services.{name}.service import SPEC" in main and "run_service(SPEC" in main


def test_load_spec_refuses_an_unknown_name() -> None:
    with pytest.raises(LookupError, match="known: ingest"):
        load_spec("mailer")


def test_compose_runs_the_registered_services() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    apps = {n for n, s in compose["services"].items() if "services." in " ".join(map(str, s.get("command", [])))}
    assert apps == set(SERVICES)


def test_nats_config_has_one_user_per_service() -> None:
    conf = (ROOT / "deploy" / "nats" / "nats-server.conf").read_text()
    users = set(re.findall(r"^\s*user:\s*(\w+)", conf, re.M))
    assert users - {"operator"} == set(SERVICES)


def test_design_table_lists_the_registered_services() -> None:
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    table = design.split("| service | consumes |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines()[2:] if line.startswith("|")]
    assert rows == list(SERVICES)


def test_libs_keeps_no_list_of_services() -> None:
    """libs/ gets the fleet from its caller; a hard-coded list would drift."""
    names = "|".join(SERVICES)
    # Two or more service names quoted in one collection, e.g. ("ingest", "router", ...).
    pattern = re.compile(rf"""["']({names})["']\s*,\s*["']({names})["']""")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "libs").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
