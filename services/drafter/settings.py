"""The drafter's settings (REPLYLINE_<FIELD> env vars or the REPLYLINE_CONFIG YAML file)."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from libs.llm import LlmSettings
from libs.settings import CommonSettings, NotNegative, Positive


class DrafterLlmSettings(LlmSettings, frozen=True, kw_only=True):
    """``REPLYLINE_DRAFTER_LLM_*`` (or the shared default ``REPLYLINE_LLM_*``): drafts.
    Empty base_url = draft from the profile's templates."""

    max_tokens: int = 300
    temperature: float = 0.4


class DrafterSettings(CommonSettings, frozen=True, kw_only=True):
    #: REPLYLINE_LLM_<NAME> is the drafter's default for REPLYLINE_DRAFTER_LLM_<NAME>
    #: (the variables docs/drafter.md has always named). It is the drafter's only: the
    #: router's and the outcome judge's LLMs have their own sections and stay off.
    section_defaults: ClassVar[dict[str, str]] = {"drafter_llm": "llm"}

    #: The business profile YAML (see profiles/business.yaml).
    profile_path: str = "profiles/business.yaml"
    #: LLM drafting (libs/llm.py): primary and fallback provider, timeouts, prices.
    drafter_llm: DrafterLlmSettings = DrafterLlmSettings()
    #: Store the full prompt text in ai_traces.prompt (it contains lead messages).
    record_prompts: bool = False
    #: Undecided drafts alert the owner after this long (never auto-sent).
    draft_expiry_s: Positive = 86400.0
    #: Earlier exchanges of the thread given to the model.
    history_messages: int = 6
    #: Text the owner when a lead message goes to the manual-intervention queue.
    alert_on_needs_review: bool = True
    #: Most pending drafts listed in a clarifying SMS.
    clarify_list_max: int = 5
    #: Longest draft text (characters). LLM and template drafts are cut to it at a
    #: sentence (else word) boundary; a longer workflow text or edit is not prompted by
    #: SMS but left for the dashboard. 480 = about three SMS segments. At most 1400:
    #: the whole draft must fit one owner prompt (1,600 characters with the frame).
    max_draft_chars: Annotated[int, msgspec.Meta(ge=40, le=1400)] = 480
    #: A bare reply ("YES" without a ref) applies to the single pending draft only if
    #: that version was prompted at least this long before the owner's SMS arrived;
    #: otherwise the owner is shown it and asked again (they cannot have read it yet).
    bare_reply_grace_s: NotNegative = 30.0
    #: One draft per burst: a lead's draftable message waits this long for the next
    #: one (counted from the last message) before a single reply to all of them is
    #: drafted. 0 drafts every message at once (tests and the benchmarks use 0).
    burst_debounce_s: NotNegative = 20.0
    #: ... but a burst is drafted at most this long after its first message, however
    #: often the lead keeps writing.
    burst_max_wait_s: float = 120.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.burst_debounce_s and self.burst_max_wait_s < self.burst_debounce_s:
            raise ValueError("burst_max_wait_s must be at least burst_debounce_s")
