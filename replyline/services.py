"""Where the services live: the registry (services.SERVICES, by module name) and
:func:`load_spec`, which imports one service's spec only when a command needs it."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services import SERVICES

if TYPE_CHECKING:
    from libs.service import ServiceSpec

__all__ = ["SERVICES", "VIEWS_FILE", "VIEWS_SLICE", "load_spec", "migrations_dir", "service_dir"]


def load_spec(name: str) -> ServiceSpec[Any]:
    """``services.<name>.service.SPEC``, imported now (lazily: most commands need none)."""
    if name not in SERVICES:
        raise LookupError(f"no service named {name!r} (known: {', '.join(SERVICES)})")
    spec: ServiceSpec[Any] = importlib.import_module(f"services.{name}.service").SPEC
    return spec


def service_dir(name: str) -> Path:
    spec = importlib.util.find_spec(f"services.{name}")
    if spec is None or spec.origin is None:
        raise LookupError(f"no service named {name!r} (known: {', '.join(SERVICES)})")
    return Path(spec.origin).parent


#: Views over several slices (the `messages` lifecycle view), recreated after all of them
#: on every migrate from this one current definition (its `-- version: N` is recorded).
VIEWS_SLICE = "views"
VIEWS_FILE = Path(__file__).parent / "sql" / "views" / "messages.sql"


def migrations_dir(name: str) -> Path | None:
    folder = service_dir(name) / "migrations"
    return folder if folder.is_dir() else None
