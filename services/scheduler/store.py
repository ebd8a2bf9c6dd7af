"""The scheduler's SQL (queries.sql) and small row helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from libs.db import load_queries

from .workflow.conditions import contact_view

Q = load_queries(Path(__file__).parent / "queries.sql")
MIGRATIONS = Path(__file__).parent / "migrations"
STANDARD_FIELDS = frozenset({"first_name", "last_name", "email"})


def view_of(row: asyncpg.Record | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Contact view for conditions and templates (an unknown contact is empty)."""
    if row is None:
        return contact_view(extra=extra)
    return contact_view(
        phone=row["phone"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        email=row["email"],
        fields=row["fields"],
        tags=list(row["tags"]),
        last_sms_reply=row["last_sms_reply"],
        extra=extra,
    )


async def set_field(conn: asyncpg.Connection, thread: str, field: str, value: Any) -> None:
    if field in STANDARD_FIELDS:
        await conn.execute(Q.set_standard_field, thread, field, "" if value is None else str(value))
    else:
        await conn.execute(Q.set_custom_field, thread, field, value)
