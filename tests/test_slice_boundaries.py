"""Nobody reads another slice's tables (docs/DESIGN.md, "Reading another slice").

Outside a service's folder, SQL may name that service's read views (``<slice>_v1_...``)
but never its tables. The tables of each slice are the ones its own migrations create,
so a new table is covered without touching this file.
"""

from __future__ import annotations

import re
from pathlib import Path

from replyline.services import SERVICES, migrations_dir

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("libs", "replyline", "services")
_CREATE_TABLE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.IGNORECASE)
#: SQL inside Python: a relation right after an SQL keyword (upper case, as this code
#: base writes SQL; prose in docstrings says "from", not "FROM").
_PY_SQL_RELATION = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+(\w+)")
_SQL_COMMENT = re.compile(r"--[^\n]*")


def slice_tables() -> dict[str, str]:
    """table -> the slice whose migrations create it."""
    owners: dict[str, str] = {}
    for name in SERVICES:
        folder = migrations_dir(name)
        assert folder is not None, name
        for path in sorted(folder.glob("*.sql")):
            for m in _CREATE_TABLE.finditer(_SQL_COMMENT.sub("", path.read_text())):
                owners[m.group(1)] = name
    return owners


def relations_named(path: Path, text: str, tables: set[str]) -> set[str]:
    """The slice tables this file's SQL names (SQL files: anywhere outside comments)."""
    if path.suffix == ".sql":
        words = set(re.findall(r"\w+", _SQL_COMMENT.sub("", text)))
        return words & tables
    return {m.group(1) for m in _PY_SQL_RELATION.finditer(text)} & tables


def foreign_reads(root: Path = REPO) -> list[str]:
    owners = slice_tables()
    found = []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*")):
            if path.suffix not in (".sql", ".py") or not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            parts = rel.split("/")
            home = parts[1] if parts[0] == "services" and len(parts) > 2 else None
            foreign = {t for t, owner in owners.items() if owner != home}
            for table in sorted(relations_named(path, path.read_text(), foreign)):
                found.append(f"{rel} reads {owners[table]}'s table {table}")
    return found


def test_every_slice_has_tables() -> None:
    owners = slice_tables()
    assert set(owners.values()) == set(SERVICES)
    assert {"drafts", "outbound_messages", "routing_decisions", "inbound_messages",
            "conversation_outcomes"} <= set(owners)  # fmt: skip


def test_the_guard_sees_table_reads_in_sql_and_python() -> None:
    tables = {"drafts", "outbound_messages"}
    assert relations_named(Path("q.sql"), "-- drafts\nSELECT * FROM x JOIN drafts d", tables) == {"drafts"}
    assert relations_named(Path("q.sql"), "SELECT draft_id FROM drafter_v1_drafts -- drafts", tables) == set()
    code = 'conn.fetch("SELECT 1 FROM outbound_messages o")  # the drafts of a thread'
    assert relations_named(Path("m.py"), code, tables) == {"outbound_messages"}


def test_nobody_reads_another_slices_tables() -> None:
    assert foreign_reads() == []
