"""The drafter's settings (REPLYLINE_<FIELD> env vars or the REPLYLINE_CONFIG YAML file)."""

from __future__ import annotations

from libs.settings import CommonSettings
from services.drafter.llm import ModelPrice, ProviderConfig

#: USD per 1M tokens (input, output). Estimates for the ai_traces cost column only;
#: override with REPLYLINE_LLM_PRICES='{"my-model": [0.2, 0.8]}'.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1": (2.00, 8.00),
}


class DrafterSettings(CommonSettings, frozen=True, kw_only=True):
    #: The business profile YAML (see profiles/business.yaml).
    profile_path: str = "profiles/business.yaml"
    #: OpenAI-compatible endpoint (".../v1"); empty = draft from the profile's templates.
    llm_base_url: str = ""
    llm_model: str = "gpt-4o-mini"
    llm_api_key: str = ""
    #: Tried when the primary fails (error, timeout, unusable answer); empty = none.
    llm_fallback_base_url: str = ""
    llm_fallback_model: str = ""
    llm_fallback_api_key: str = ""
    llm_timeout_s: float = 20.0
    llm_max_retries: int = 1
    llm_max_tokens: int = 300
    llm_temperature: float = 0.4
    llm_prices: dict[str, tuple[float, float]] = {}
    #: Store the full prompt text in ai_traces.prompt (it contains lead messages).
    record_prompts: bool = False
    #: Undecided drafts alert the owner after this long (never auto-sent).
    draft_expiry_s: float = 86400.0
    #: Earlier exchanges of the thread given to the model.
    history_messages: int = 6
    #: Text the owner when a lead message goes to the manual-intervention queue.
    alert_on_needs_review: bool = True
    #: Most pending drafts listed in a clarifying SMS.
    clarify_list_max: int = 5
    #: Longest draft text (characters). LLM and template drafts are cut to it at a
    #: sentence (else word) boundary; a longer workflow text or edit is not prompted by
    #: SMS but left for the dashboard. 480 = about three SMS segments.
    max_draft_chars: int = 480
    #: A bare reply ("YES" without a ref) applies to the single pending draft only if
    #: that version was prompted at least this long before the owner's SMS arrived;
    #: otherwise the owner is shown it and asked again (they cannot have read it yet).
    bare_reply_grace_s: float = 30.0
    #: One draft per burst: a lead's draftable message waits this long for the next
    #: one (counted from the last message) before a single reply to all of them is
    #: drafted. 0 drafts every message at once (tests and the benchmarks use 0).
    burst_debounce_s: float = 20.0
    #: ... but a burst is drafted at most this long after its first message, however
    #: often the lead keeps writing.
    burst_max_wait_s: float = 120.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.llm_fallback_base_url and not self.llm_base_url:
            raise ValueError("llm_fallback_base_url needs llm_base_url (the primary) as well")
        if self.draft_expiry_s <= 0:
            raise ValueError("draft_expiry_s must be positive")
        if self.llm_timeout_s <= 0:
            raise ValueError("llm_timeout_s must be positive")
        # The whole draft must fit one owner prompt (1,600 characters with the frame).
        if not 40 <= self.max_draft_chars <= 1400:
            raise ValueError("max_draft_chars must be between 40 and 1400")
        if self.bare_reply_grace_s < 0:
            raise ValueError("bare_reply_grace_s must not be negative")
        if self.burst_debounce_s < 0:
            raise ValueError("burst_debounce_s must not be negative (0 turns bursts off)")
        if self.burst_debounce_s and self.burst_max_wait_s < self.burst_debounce_s:
            raise ValueError("burst_max_wait_s must be at least burst_debounce_s")

    def providers(self) -> list[ProviderConfig]:
        """The primary then the fallback provider; empty when no endpoint is configured."""
        found: list[ProviderConfig] = []
        if self.llm_base_url:
            found.append(
                ProviderConfig(
                    name="primary",
                    base_url=self.llm_base_url,
                    model=self.llm_model,
                    api_key=self.llm_api_key,
                    timeout=self.llm_timeout_s,
                    max_retries=self.llm_max_retries,
                )
            )
        if self.llm_fallback_base_url:
            found.append(
                ProviderConfig(
                    name="fallback",
                    base_url=self.llm_fallback_base_url,
                    model=self.llm_fallback_model or self.llm_model,
                    api_key=self.llm_fallback_api_key,
                    timeout=self.llm_timeout_s,
                    max_retries=self.llm_max_retries,
                )
            )
        return found

    def prices(self) -> dict[str, ModelPrice]:
        table = {**DEFAULT_PRICES, **self.llm_prices}
        return {model: ModelPrice(inp, out) for model, (inp, out) in table.items()}
