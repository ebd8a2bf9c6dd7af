"""The client half of a contact import: validate the whole file, then stage it in batches and commit.

``call(method, payload)`` sends one request to ``rpc.scheduler.contacts.<method>`` (the CLI
over its own NATS connection, ingest through its request/reply client). Each row is
parsed once: the first pass validates the file and spools the normalised rows (one JSON
line each) to an anonymous temporary file; the second pass sends the spool. Phone
parsing, most of the cost, is no longer done twice, the file is read once, and nothing
is held in memory. Nothing reaches the scheduler unless every row is valid.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from libs.contact_csv import HeaderError, RowError, read_rows

Call = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
Progress = Callable[[str, int], None]  # (phase, rows so far)
MAX_REPORTED = 100
#: Keeps a batch well under NATS' default 1 MB max_payload.
BATCH_BYTES = 400_000
BATCH_ROWS = 2000


@dataclass
class ImportReport:
    ok: bool
    rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    import_id: str = ""

    def to_json(self) -> dict[str, Any]:
        if not self.ok:
            return {
                "error": "invalid",
                "rows": self.rows,
                "error_count": self.error_count,
                "issues": [{"line": e.line, "reason": e.reason} for e in self.errors],
            }
        return {"import_id": self.import_id, **self.result}


class ImportFailed(Exception):
    """The scheduler refused or failed the import (nothing was committed)."""


def validate(
    lines: Iterable[str], region: str, progress: Progress | None = None, spool: IO[str] | None = None
) -> ImportReport:
    """Check every row; with ``spool``, also write each valid row's wire form to it."""
    report = ImportReport(ok=True)
    try:
        for item in read_rows(lines, region):
            report.rows += 1
            if isinstance(item, RowError):
                report.error_count += 1
                if len(report.errors) < MAX_REPORTED:
                    report.errors.append(item)
                spool = None  # the file is refused: no need to keep the rest
            elif spool is not None:
                spool.write(json.dumps(item.to_wire(), ensure_ascii=False) + "\n")
            if progress and report.rows % 1000 == 0:
                progress("checking", report.rows)
    except HeaderError as exc:
        report.errors.append(RowError(1, str(exc)))
        report.error_count += 1
    report.ok = report.error_count == 0
    return report


async def import_contacts(
    open_lines: Callable[[], Iterable[str]],
    call: Call,
    *,
    region: str,
    source: str,
    fire_workflows: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        # The first pass is pure CPU: off the event loop (ingest serves webhooks meanwhile).
        report = await asyncio.to_thread(validate, open_lines(), region, progress, spool)
        if not report.ok:
            return report
        spool.seek(0)
        return await _send(spool, call, report, source, fire_workflows, progress)


async def _send(
    spool: IO[str],
    call: Call,
    report: ImportReport,
    source: str,
    fire_workflows: bool,
    progress: Progress | None,
) -> ImportReport:
    """Stage the spooled rows in batches, then commit (or abort on any failure)."""
    import_id = uuid.uuid4()
    report.import_id = str(import_id)
    staged = 0
    batch: list[dict[str, Any]] = []
    size = 0

    async def flush() -> None:
        nonlocal batch, size, staged
        if not batch:
            return
        answer = await call("stage", {"import_id": str(import_id), "source": source, "rows": batch})
        if "error" in answer:
            raise ImportFailed(f"staging failed: {answer}")
        staged += len(batch)
        batch, size = [], 0
        if progress:
            progress("importing", staged)

    try:
        for line in spool:
            batch.append(json.loads(line))
            size += len(line)
            if size >= BATCH_BYTES or len(batch) >= BATCH_ROWS:
                await flush()
        await flush()
        answer = await call(
            "commit", {"import_id": str(import_id), "rows": staged, "fire_workflows": fire_workflows}
        )
        if "error" in answer:
            raise ImportFailed(f"commit refused: {answer}")
    except BaseException:
        try:
            await call("abort", {"import_id": str(import_id)})
        except Exception:
            pass  # staging of a dead import is dropped by the scheduler after a day
        raise
    report.result = answer
    return report
