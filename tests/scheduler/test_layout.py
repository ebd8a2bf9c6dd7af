"""The engine's shape: every step type has a step function (and a dry run); long queries bind by name."""

from __future__ import annotations

import re
from pathlib import Path

from libs.db import NamedQuery
from services.scheduler.steps import STEPS
from services.scheduler.store import Q
from services.scheduler.workflow.model import CONFIG_TYPES
from services.scheduler.workflow.timeline import DRY_STEPS


def test_every_step_type_has_a_step_function() -> None:
    assert set(STEPS) == set(CONFIG_TYPES)


def test_every_step_type_has_a_dry_run_function() -> None:
    assert set(DRY_STEPS) == set(CONFIG_TYPES)


def test_scheduler_queries_bind_more_than_six_parameters_by_name() -> None:
    for name in Q.names:
        query = getattr(Q, name)
        if isinstance(query, NamedQuery):
            continue  # loaded bound by name (a named query may not mix in $n)
        numbers = [int(n) for n in re.findall(r"\$(\d+)", query)]
        assert max(numbers, default=0) <= 6, f"{name}: more than 6 positional parameters; use :names"


def test_every_scheduler_query_says_what_it_is_for() -> None:
    text = (Path(__file__).parents[2] / "services" / "scheduler" / "queries.sql").read_text()
    sections = re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]
    undocumented = [s.split("\n", 1)[0] for s in sections if not s.split("\n")[1].startswith("--")]
    assert undocumented == []
