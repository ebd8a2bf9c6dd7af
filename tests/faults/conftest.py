"""Fault-injection tests: the real services as child processes, killed and restarted.

They take minutes and start their own nats-server and Postgres (the session ones of
tests/conftest.py must not be restarted under other tests), so they run only when
asked for: ``pytest -m faults tests/faults``. Size with REPLYLINE_FAULTS_SCALE
(1.0 = the CI size, about 3 minutes for the whole folder).
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "faults" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="fault-injection suite: run with `pytest -m faults tests/faults`")
    for item in items:
        if item.get_closest_marker("faults"):
            item.add_marker(skip)


@pytest.fixture
def scale() -> float:
    return float(os.environ.get("REPLYLINE_FAULTS_SCALE", "1.0"))
