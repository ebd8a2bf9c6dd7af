"""Everything the drafter says to the owners: prompts, alerts, answers to their commands.

Every message is an ``outbound.requested`` emitted into the caller's unit of work
(services/drafter/work.py): it is on the bus only once the rows it speaks of are
committed, so an owner never reads a ref that a rollback took back. Its ``request_id``
is deterministic (what it is about + the owner), so a handler that runs again asks the
sender for the same SMS and the sender's dedup key drops the copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from libs.event_outbox import Unit
from libs.events import DraftCreated, OutboundRequested, OwnerKind, TimerSet
from libs.owner_protocol import fits_sms
from services.drafter import owner_texts
from services.drafter.ids import expiry_timer_id
from services.drafter.settings import DrafterSettings
from services.drafter.store import Draft


@dataclass(frozen=True)
class OwnerChannel:
    settings: DrafterSettings

    def tell(
        self, u: Unit, owner: str, body: str, request_key: str, *, kind: OwnerKind = "owner_alert"
    ) -> None:
        u.emit(OutboundRequested.to_owner(owner, body, request_key, kind))

    def tell_all(self, u: Unit, body: str, request_key: str) -> None:
        for owner in self.settings.owner_numbers:
            self.tell(u, owner, body, request_key)

    def promptable(
        self,
        ref: str,
        to_number: str,
        body: str,
        messages: Sequence[str] = (),
        replaces: Sequence[str] = (),
    ) -> bool:
        """Whether the whole text fits the draft limit and one owner prompt SMS."""
        if len(body) > self.settings.max_draft_chars:
            return False
        if len(messages) > 1 or replaces:
            return owner_texts.burst_prompt(ref, to_number, body, messages, replaces) is not None
        return fits_sms(ref, to_number, body)

    def prompt_text(self, draft: Draft) -> str:
        """The owner prompt for a version, or, when it cannot be shown whole, why not.

        A first version answering several lead messages (a burst) or replacing pending
        drafts says so and quotes what the lead wrote; an edit is the owner's own text.
        """
        several = len(draft.lead_messages) > 1 or bool(draft.replaces_refs)
        if draft.sms_prompted and draft.version == 1 and several:
            text = owner_texts.burst_prompt(
                draft.ref, draft.to_number, draft.body, draft.lead_messages, draft.replaces_refs
            )
            if text is not None:
                return text
        if draft.sms_prompted:
            return owner_texts.approval_prompt(draft.ref, draft.to_number, draft.body)
        return self.too_long(draft)

    def too_long(self, draft: Draft) -> str:
        """The short notice for a version that cannot be shown whole by SMS."""
        return owner_texts.too_long(
            draft.ref, draft.to_number, len(draft.body), self.settings.max_draft_chars
        )

    def announce(self, u: Unit, draft: Draft) -> None:
        """draft.created, the owner prompts and the expiry timer for one version, emitted
        into the unit that writes the version (published once it is committed).

        A version too long to show whole by SMS gets a short notice instead of a
        prompt: it waits on the dashboard, and SMS approvals of it are refused.
        """
        u.emit(draft.event(DraftCreated))
        text = self.prompt_text(draft)
        kind: OwnerKind = "owner_prompt" if draft.sms_prompted else "owner_alert"
        for owner in self.settings.owner_numbers:
            self.tell(u, owner, text, f"prompt:{draft.draft_id}:{draft.version}", kind=kind)
        assert draft.expires_at is not None
        u.emit(
            TimerSet(
                thread=draft.thread,
                timer_id=expiry_timer_id(draft.draft_id),
                kind="draft_expiry",
                fire_at=draft.expires_at,
                payload={
                    "draft_id": draft.draft_id,
                    "version": draft.version,
                    "ref": draft.ref,
                    "to_number": draft.to_number,
                },
            )
        )
