"""The sender's SQL stays data with a purpose, and long parameter lists bind by name."""

import re
from pathlib import Path

import msgspec

from libs.db import NamedQuery
from services.sender import store
from services.sender.rows import OutboxRow

QUERIES = Path(store.__file__).parent / "queries.sql"


def test_no_long_positional_parameter_lists() -> None:
    # $7 and above means counting arguments by hand: such queries use :name (libs.db.NamedQuery).
    assert not re.search(r"\$([7-9]|\d\d)", QUERIES.read_text())


def test_every_query_says_what_it_is_for() -> None:
    sections = re.split(r"^-- name: ", QUERIES.read_text(), flags=re.MULTILINE)[1:]
    assert len(sections) == len(store.Q.names)
    for section in sections:
        name, _, rest = section.partition("\n")
        assert rest.startswith("-- "), f"query {name} has no comment"


def test_fenced_writes_name_the_row_and_the_epoch() -> None:
    # mark_undelivered is not fenced (the row is already SENT, no lease): it stays positional.
    marks = [getattr(store.Q, n) for n in store.Q.names if n.startswith("mark_")]
    fenced = [q for q in marks if isinstance(q, NamedQuery)]
    assert fenced and all({"id", "epoch"} <= set(q.names) for q in fenced)
    assert all("lease_epoch = $" in q.sql for q in fenced)


def test_insert_binds_every_column_of_a_new_message() -> None:
    assert store.Q.insert_outbox.names == (
        "id", "dedup_key", "kind", "to_number", "body", "media_urls", "lead_facing",
        "draft_id", "draft_version", "request_id", "in_reply_to", "workflow_enrollment_id", "not_before",
    )  # fmt: skip


def test_outbox_row_takes_its_columns_and_ignores_new_ones() -> None:
    columns = {name: None for name in OutboxRow.__struct_fields__}
    row = OutboxRow.from_record({**columns, "status": "SENT", "a_later_column": 1})
    assert row.status == "SENT"
    assert set(msgspec.structs.asdict(row)) == set(OutboxRow.__struct_fields__)
