"""Where the five services live, by module name only (the CLI never imports a service's code)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SERVICES = ("ingest", "router", "drafter", "sender", "scheduler")


def service_dir(name: str) -> Path:
    spec = importlib.util.find_spec(f"services.{name}")
    if spec is None or spec.origin is None:
        raise LookupError(f"no service named {name!r} (known: {', '.join(SERVICES)})")
    return Path(spec.origin).parent


#: Views over several slices (the `messages` lifecycle view), applied after all of them.
VIEWS_SLICE = "views"
VIEWS_DIR = Path(__file__).parent / "sql" / "views"


def migrations_dir(name: str) -> Path | None:
    folder = service_dir(name) / "migrations"
    return folder if folder.is_dir() else None
