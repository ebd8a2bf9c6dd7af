"""A new draft's first version, written the same way for a reply to lead messages
(services/drafter/replying.py) and a workflow message (services/drafter/workflow_drafts.py).

Version 1 gets the next ref, is created by the system, expires after ``draft_expiry_s``
and is SMS-prompted only if one owner prompt shows it whole; only what it answers
(``Origin``) differs between the two. The caller audits and announces it in the same
unit of work (services/drafter/work.py), once everything the new draft replaces is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgspec

from libs.events import utcnow
from services.drafter.deps import Deps
from services.drafter.store import Draft, Q, insert_draft, insert_traces
from services.drafter.work import Unit


@dataclass(frozen=True)
class Text:
    """The draft's text and where it came from (LLM attempts are traced with the draft)."""

    body: str
    source: str
    traces: tuple[Any, ...] = ()
    prompt: str | None = None


class Origin(msgspec.Struct, frozen=True, kw_only=True):
    """What a first version answers: lead messages (a reply) or a workflow's request.
    Its fields are ``insert_draft``'s parameters of the same names."""

    in_reply_to: str = ""
    inbound_body: str = ""
    intent: str | None = None
    language: str | None = None
    inbound_seq: int = 0
    request_id: str | None = None
    workflow_enrollment_id: str | None = None
    workflow_step_id: str | None = None
    #: Every lead message it answers and the refs of the pending drafts it replaces:
    #: the owner prompt quotes them (OwnerChannel.promptable).
    lead_messages: tuple[str, ...] = ()
    replaces_refs: tuple[str, ...] = ()
    burst_id: str | None = None


async def first_version(
    deps: Deps, u: Unit, text: Text, origin: Origin, *, draft_id: str, thread: str, to_number: str
) -> Draft:
    """Write version 1 of a new draft and the LLM attempts that wrote its text."""
    conn = u.conn
    ref = await conn.fetchval(Q.next_ref)
    prompted = deps.owners.promptable(ref, to_number, text.body, origin.lead_messages, origin.replaces_refs)
    draft = await insert_draft(
        conn,
        draft_id=draft_id,
        version=1,
        ref=ref,
        thread=thread,
        to_number=to_number,
        body=text.body,
        source=text.source,
        created_by="SYSTEM",
        expires_at=utcnow() + timedelta(seconds=deps.settings.draft_expiry_s),
        sms_prompted=prompted,
        **msgspec.structs.asdict(origin),
    )
    await insert_traces(
        conn,
        text.traces,
        draft_id=draft_id,
        thread=thread,
        in_reply_to=origin.in_reply_to,
        prompt=text.prompt,
    )
    return draft
