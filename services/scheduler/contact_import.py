"""Contact imports into the scheduler's ``contacts``: staged in batches, merged in one transaction.

Request/reply endpoints (libs/rpc.py, served by services/scheduler/endpoints.py):

* ``CONTACTS_STAGE`` -> ``Staged``; refused ``invalid`` (400, ``{"issues"}``) for bad rows,
  ``conflict`` (409) once the import is committed or aborted;
* ``CONTACTS_COMMIT`` -> ``ImportResult``; refused ``incomplete`` (409, ``{"staged",
  "expected"}``) unless exactly ``rows`` rows were staged, so a lost batch never
  half-imports a file. A repeated commit answers the stored result;
* ``CONTACTS_ABORT`` -> ``Aborted``.

The clients (``replyline contacts import``, ``POST /api/contacts/import``) validate every
row first (libs/contact_csv.py) and only then stage; the rows are checked again here.
Contacts that the import opts out are published as ``contact.optout`` (keyword
``IMPORT``), so the sender's consent projection and running enrollments honour them; an
opt-out is never undone by an import. The events commit with the merge in one unit
(libs/event_outbox.py), so a repeated commit has nothing to publish again.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import structlog

from libs import rpc
from libs.db import audit
from libs.events import ContactOptout

from .engine import SERVICE, Engine
from .store import Q

log = structlog.get_logger("scheduler.contact_import")

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
MAX_BATCH = 5000


def _check(row: rpc.StagedRow) -> str | None:
    if not _E164.match(row.phone):
        return f"line {row.line}: phone {row.phone[:20]!r} is not E.164"
    if any(len(v) > 200 for v in (row.first_name, row.last_name, row.email)):
        return f"line {row.line}: value too long"
    if len(row.tags) > 30 or len(row.fields) > 50:
        return f"line {row.line}: too many tags or fields"
    return None


async def stage(engine: Engine, request: rpc.StageContacts) -> rpc.Staged:
    if len(request.rows) > MAX_BATCH:
        raise rpc.Refused(
            400, rpc.INVALID, {"issues": [{"line": 0, "reason": f"more than {MAX_BATCH} rows"}]}
        )
    problems = [p for p in (_check(r) for r in request.rows) if p]
    if problems:
        raise rpc.Refused(400, rpc.INVALID, {"issues": [{"line": 0, "reason": p} for p in problems[:20]]})
    rows = request.rows
    async with engine.pool.acquire() as conn, conn.transaction():
        await conn.execute(Q.import_begin, request.import_id, request.source[:200])
        current = await conn.fetchrow(Q.import_get, request.import_id)
        if current["status"] != "staging":
            raise rpc.Refused(409, rpc.CONFLICT, {"status": current["status"]})
        await conn.execute(
            Q.import_stage.sql,
            *Q.import_stage.bind(
                dict(
                    import_id=request.import_id,
                    lines=[r.line for r in rows],
                    threads=[r.phone[1:] for r in rows],
                    phones=[r.phone for r in rows],
                    first_names=[r.first_name for r in rows],
                    last_names=[r.last_name for r in rows],
                    emails=[r.email for r in rows],
                    tags=[json.dumps(r.tags) for r in rows],
                    fields=[r.fields for r in rows],
                    opted_out=[r.opted_out for r in rows],
                )
            ),
        )
    return rpc.Staged(staged=len(rows))


async def commit(engine: Engine, request: rpc.CommitContacts) -> rpc.ImportResult:
    async with engine.outbox.unit() as u:
        conn = u.conn
        current = await conn.fetchrow(Q.import_get, request.import_id)
        if current is not None and current["status"] == "committed":
            # Its opt-outs committed with it, and were published then.
            result: dict[str, Any] = dict(current["result"])
            result.pop("opted_out_threads", None)  # stored by versions that republished them
            created: list[str] = []
        else:
            staged = await conn.fetchval(Q.import_staged_count, request.import_id)
            if current is None or current["status"] != "staging" or staged != request.rows:
                raise rpc.Refused(409, rpc.INCOMPLETE, {"staged": staged, "expected": request.rows})
            await conn.execute(Q.import_merge, request.import_id)
            optouts = [(r["thread"], r["phone"]) for r in await conn.fetch(Q.import_new_optouts)]
            inserted = await conn.fetch(Q.import_insert_new)
            created = [r["thread"] for r in inserted if not r["opted_out"]]
            updated = await conn.fetch(Q.import_update_existing)
            contacts = await conn.fetchval(Q.import_merged_count)
            result = {
                "rows": staged,
                "contacts": contacts,
                "duplicates": staged - contacts,
                "created": len(inserted),
                "updated": len(updated),
                "unchanged": contacts - len(inserted) - len(updated),
                "opted_out": len(optouts),
            }
            await conn.execute(Q.import_finish, request.import_id, "committed", result)
            await conn.execute(Q.import_drop_rows, request.import_id)
            await conn.execute(Q.import_drop_stale)
            await audit(
                conn,
                service=SERVICE,
                action="contacts.imported",
                actor="HUMAN",
                details={"import_id": str(request.import_id), **result},
            )
            # The sender's consent projection and the scheduler's own handler hear of
            # each new opt-out (ids derived from the import: stable dedup ids).
            for thread, phone in optouts:
                u.emit(
                    ContactOptout(
                        id=str(uuid.uuid5(request.import_id, f"optout:{thread}")),
                        thread=thread,
                        number=phone,
                        keyword="IMPORT",
                    )
                )
    if request.fire_workflows:
        for thread in created:
            await engine.trigger(
                "contact_created", thread, context={}, event_id=f"import:{request.import_id}"
            )
    log.info("contacts_imported", import_id=str(request.import_id), **result)
    return rpc.ImportResult(**result)


async def abort(engine: Engine, request: rpc.AbortContacts) -> rpc.Aborted:
    async with engine.pool.acquire() as conn, conn.transaction():
        await conn.execute(Q.import_drop_rows, request.import_id)
        await conn.execute(Q.import_abort, request.import_id)
    return rpc.Aborted(aborted=True)
