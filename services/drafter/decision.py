"""Which draft version a ``draft.decided`` names, and whether it may be decided.

``Decision.check`` reads (and locks) the named version inside the caller's unit of work
and answers every case that decides nothing: a non-owner, an unclear command, an unknown
or ambiguous ref, a version replaced, withdrawn or decided since, a bare reply sent
before its prompt could be read. What a decision does to a pending version is in
services/drafter/approvals.py.
"""

from __future__ import annotations

from datetime import timedelta

from libs import metrics
from libs.event_outbox import Unit
from libs.events import DraftDecided
from services.drafter import owner_texts, work
from services.drafter.deps import Deps
from services.drafter.ids import to_uuid
from services.drafter.store import Draft, Q, draft_of, insert_approval
from services.drafter.withdrawal import refusal

#: A chain of replacements followed at most this far (each by a newer lead message).
REPLACEMENT_CHAIN_MAX = 50


class Decision:
    """One draft.decided event checked and applied inside the caller's unit of work: its
    rows and the events it emits (services/drafter/work.py) commit together."""

    def __init__(self, deps: Deps, u: Unit, event: DraftDecided) -> None:
        self.deps = deps
        self.u = u
        self.conn = u.conn
        self.event = event
        self.settings = deps.settings
        # Counted by count() once the caller's transaction committed.
        self._outcomes: list[str] = []
        self._versions: list[str] = []

    def count(self) -> None:
        ev = self.event
        for outcome in self._outcomes:
            metrics.DRAFT_DECISIONS.labels(ev.action, ev.source, outcome).inc()
        for source in self._versions:
            metrics.DRAFTS_CREATED.labels(source).inc()

    def created_version(self, source: str) -> None:
        """An edit wrote a new version: counted with the decision once committed."""
        self._versions.append(source)

    @property
    def by_sms(self) -> bool:
        return self.event.source == "sms"

    async def check(self) -> Draft | None:
        """The pending version the action applies to; None when the owner was answered instead."""
        ev = self.event
        if self.by_sms and ev.reviewer not in self.settings.owner_numbers:
            # Only the owner numbers decide by SMS. Nothing is sent back: the sender
            # may be a lead or a stranger, and silence tells them nothing.
            await self.record(None, "refused", "reviewer is not an owner number")
            return None
        if ev.action == "unclear":
            pending, total = await self._pending_listing()
            self.reply(owner_texts.not_understood(ev.text or "", pending, total, ev.notes))
            await self.record(None, "clarify", f"command not understood: {ev.notes}")
            return None
        draft = await self._target()
        if draft is None:
            return None
        if not draft.pending and draft.replaced_by:
            await self._replaced(draft)
            return None
        if not draft.pending and draft.withdrawn_reason:
            await self._withdrawn(draft, draft)
            return None
        if not draft.pending:
            self.reply(owner_texts.already_decided(draft.ref, draft.status))
            await self.record(draft, "refused", f"draft is {draft.status}")
            return None
        if ev.action == "approve" and self.by_sms and not draft.sms_prompted:
            # The owner was never shown this text whole: only the dashboard can approve it.
            self.reply(owner_texts.not_shown(draft.ref))
            await self.record(draft, "refused", "not shown whole by SMS")
            return None
        return draft

    async def _replaced(self, draft: Draft) -> None:
        """The lead wrote again and a new draft replaced this one: nothing is decided; the
        owner is told which draft to decide instead (following later replacements)."""
        named = (self.event.ref or "").lstrip("#") or draft.ref
        newest = draft
        for _ in range(REPLACEMENT_CHAIN_MAX):
            if newest.replaced_by is None:
                break
            found = draft_of(
                await self.conn.fetchrow(Q.current_version_unlocked, to_uuid(newest.replaced_by))
            )
            if found is None:
                break
            newest = found
        if not newest.pending and newest.withdrawn_reason and newest.replaced_by is None:
            await self._withdrawn(draft, newest)  # the replacing draft was withdrawn too
            return
        self.reply(owner_texts.replaced(named, newest.ref, newest.status))
        await self.record(draft, "refused", f"replaced by #{newest.ref} after the lead wrote again")

    async def _withdrawn(self, draft: Draft, newest: Draft) -> None:
        """Withdrawn before a decision (services/drafter/withdrawal.py): nothing is sent."""
        named = (self.event.ref or "").lstrip("#") or draft.ref
        self.reply(await refusal(self.conn, named, newest))
        await self.record(draft, "refused", f"withdrawn: {newest.withdrawn_reason}")

    async def _current(self, draft_id: str) -> Draft | None:
        """The newest version of a draft, locked until the decision commits."""
        try:
            return draft_of(await self.conn.fetchrow(Q.current_version, to_uuid(draft_id)))
        except ValueError:
            return None

    async def _target(self) -> Draft | None:
        """The draft version the decision names; on anything ambiguous, ask and return None.

        Every row read here is locked (FOR UPDATE) until the transaction ends, so a
        concurrent edit or decision of the same draft waits for this one.
        """
        ev = self.event
        if ev.ref:
            return await self._target_by_ref(ev.ref.lstrip("#"))
        if ev.draft_id:
            draft = await self._current(ev.draft_id)
            if draft is None:
                await self.record(None, "refused", f"unknown draft_id {ev.draft_id}")
            return draft
        return await self._target_bare()

    async def _target_bare(self) -> Draft | None:
        """A bare reply: valid only when exactly one draft is pending."""
        rows = await self.conn.fetch(Q.pending_drafts, 2)
        if len(rows) == 1:
            draft = await self._current(str(rows[0]["draft_id"]))
            if draft is not None and draft.pending and not self._could_have_read(draft):
                self.reply(owner_texts.confirm_bare(*self._prompt_and_fallback(draft)))
                await self.record(draft, "clarify", "bare reply sent before this version's prompt")
                return None
            return draft
        if not rows:
            self.reply(owner_texts.no_pending())
            await self.record(None, "refused", "bare reply with no pending draft")
        else:
            pending, total = await self._pending_listing()
            self.reply(owner_texts.which_draft(pending, total))
            await self.record(None, "clarify", f"bare reply with {total} pending drafts")
        return None

    async def _target_by_ref(self, ref: str) -> Draft | None:
        """A ref names one version (each version has its own ref): the decision applies
        to it only. When a newer version replaced it, the owner gets the new text and is
        asked again; nothing is decided."""
        ev = self.event
        named = draft_of(await self.conn.fetchrow(Q.version_by_ref, ref))
        if named is None:
            pending, total = await self._pending_listing()
            self.reply(owner_texts.unknown_ref(ref, pending, total))
            await self.record(None, "refused", f"unknown ref #{ref}")
            return None
        if ev.draft_id and ev.draft_id != named.draft_id:
            await self.record(None, "refused", f"ref #{ref} is not a version of draft {ev.draft_id}")
            return None
        current = await self._current(named.draft_id)
        assert current is not None  # named is a version of it, locked
        if current.version == named.version:
            return current
        if not current.pending:
            return current  # decided since: check() says so
        self.reply(owner_texts.changed_since(named.ref, *self._prompt_and_fallback(current)))
        await self.record(
            named, "clarify", f"version {named.version} was replaced by version {current.version}"
        )
        return None

    def _could_have_read(self, draft: Draft) -> bool:
        """Whether the owner can have read this version's prompt before replying.

        Their own edit they wrote themselves; any other version must have been
        prompted bare_reply_grace_s before their SMS reached ingest.
        """
        ev = self.event
        if not self.by_sms or draft.created_by == ev.reviewer:
            return True
        received = ev.received_at or ev.occurred_at
        return draft.created_at <= received - timedelta(seconds=self.settings.bare_reply_grace_s)

    def _prompt_and_fallback(self, draft: Draft) -> tuple[str, str]:
        """The version's prompt (or too-long notice), and a short form if it does not fit."""
        owners = self.deps.owners
        return owners.prompt_text(draft), owners.too_long(draft)

    async def _pending_listing(self) -> tuple[list[tuple[str, str]], int]:
        limit = self.settings.clarify_list_max
        rows = await self.conn.fetch(Q.pending_drafts, limit)
        total = int(await self.conn.fetchval(Q.count_pending))
        return [(r["ref"], r["to_number"]) for r in rows], total

    def reply(self, text: str) -> None:
        """Answer the owner who sent the command (SMS only: API callers read the audit)."""
        if self.by_sms:
            self.deps.owners.tell(
                self.u,
                self.event.reviewer, text, f"reply:{self.event.id}", kind="owner_prompt"
            )

    async def record(self, draft: Draft | None, outcome: str, notes: str) -> None:
        """The decision's approvals row and audit entry (one per decision event)."""
        ev = self.event
        await insert_approval(self.conn, ev, draft, outcome=outcome, notes=notes)
        await work.record(
            self.u,
            f"decision_{outcome}",
            draft.thread if draft else ev.thread,
            {
                "decision_id": ev.id,
                "reviewer": ev.reviewer,
                "source": ev.source,
                "action": ev.action,
                "ref": draft.ref if draft else ev.ref,
                "draft_id": draft.draft_id if draft else ev.draft_id,
                "version": draft.version if draft else None,
                "notes": notes,
            },
            actor="HUMAN",
        )
        self._outcomes.append(outcome)
