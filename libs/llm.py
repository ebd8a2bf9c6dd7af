"""The one LLM client: chat completions against OpenAI-compatible endpoints.

Used by the drafter (drafts), the router (classification) and the scheduler (outcome
judging); each keeps only its prompt and the parsing of the answer. Each feature has
its own settings section (:class:`LlmSettings`: ``drafter_llm``, ``router_llm``,
``outcome_llm``), off while its ``base_url`` is empty.

Each provider is tried in order with the official ``openai`` client (its own small
retry budget for 429/5xx/timeouts); an error, a timeout or an unusable answer (empty,
malformed, or refused by the caller's ``check``) moves on to the next provider, and
when all fail :class:`LLMFailure` carries every attempt so the caller can trace them
and fall back (a template, the local classifier, the rule). Every attempt is counted
in the shared LLM metrics (requests, tokens, estimated cost) under the caller's
service label. Nothing here decides what happens to the lead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

import msgspec
import openai
from openai import AsyncOpenAI

from libs import metrics
from libs.settings import Positive

#: USD per 1M tokens (input, output). Estimates for traces and the cost metric only;
#: a section's ``prices`` (e.g. REPLYLINE_DRAFTER_LLM_PRICES='{"my-model": [0.2, 0.8]}')
#: adds to or overrides it.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1": (2.00, 8.00),
}


class LlmSettings(msgspec.Struct, frozen=True, kw_only=True):
    """One feature's LLM section (a field of a service's settings, see libs/settings.py:
    field ``router_llm`` is read from ``REPLYLINE_ROUTER_LLM_<NAME>``). Empty
    ``base_url`` = the feature is off."""

    #: OpenAI-compatible endpoint (".../v1"); empty = this feature does not use an LLM.
    base_url: str = ""
    api_key: str = ""
    model: str = "gpt-4o-mini"
    #: Tried when the primary fails (error, timeout, unusable answer); empty = none.
    fallback_base_url: str = ""
    fallback_model: str = ""  # empty = model
    fallback_api_key: str = ""
    timeout_s: Positive = 20.0  # per HTTP attempt
    max_retries: Annotated[int, msgspec.Meta(ge=0)] = 1  # inside the openai client, per provider
    #: Added to / overriding DEFAULT_PRICES: {"model": [usd_per_1M_input, usd_per_1M_output]}.
    prices: dict[str, tuple[float, float]] = {}

    def __post_init__(self) -> None:
        if self.fallback_base_url and not self.base_url:
            raise ValueError("fallback_base_url needs base_url (the primary) as well")

    @property
    def enabled(self) -> bool:
        return bool(self.base_url)

    def providers(self) -> list[ProviderConfig]:
        """The primary then the fallback provider; empty when the feature is off."""
        found: list[ProviderConfig] = []
        if self.base_url:
            found.append(self._provider("primary", self.base_url, self.model, self.api_key))
        if self.fallback_base_url:
            model = self.fallback_model or self.model
            found.append(self._provider("fallback", self.fallback_base_url, model, self.fallback_api_key))
        return found

    def price_table(self) -> dict[str, ModelPrice]:
        table = {**DEFAULT_PRICES, **self.prices}
        return {model: ModelPrice(inp, out) for model, (inp, out) in table.items()}

    def _provider(self, name: str, base_url: str, model: str, api_key: str) -> ProviderConfig:
        return ProviderConfig(
            name=name,
            base_url=base_url,
            model=model,
            api_key=api_key,
            timeout=self.timeout_s,
            max_retries=self.max_retries,
        )


class ProviderConfig(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # label in traces and logs, e.g. "primary", "fallback"
    base_url: str
    model: str
    api_key: str = ""
    timeout: float = 20.0  # seconds per HTTP attempt
    max_retries: int = 1  # retries inside the openai client before falling back


class ModelPrice(msgspec.Struct, frozen=True):
    """USD per one million tokens."""

    input_per_mtok: float
    output_per_mtok: float


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One provider call, successful or not; the drafter stores one ai_traces row per attempt."""

    provider: str
    model: str
    latency_ms: int
    usage: Usage | None = None
    cost_usd: float | None = None
    error: str = ""  # empty on success

    @property
    def ok(self) -> bool:
        return not self.error


class Completion(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    provider: str
    model: str
    usage: Usage
    latency_ms: int
    cost_usd: float | None
    attempts: tuple[Attempt, ...]  # failed attempts first, this success last


class LLMFailure(Exception):
    def __init__(self, attempts: Sequence[Attempt]) -> None:
        self.attempts = tuple(attempts)
        detail = "; ".join(f"{a.provider}/{a.model}: {a.error}" for a in attempts) or "no provider"
        super().__init__(f"all LLM providers failed ({detail})")


class _Unusable(Exception):
    """A 200 answer that holds no usable text (malformed body, no choices, empty content)."""


#: A caller's test of an answer's text (e.g. "parses as my JSON schema"): it raises
#: ValueError (msgspec's errors are ValueErrors) to make the answer unusable.
Check = Callable[[str], object]


def price_for(prices: Mapping[str, ModelPrice], model: str) -> ModelPrice | None:
    """Exact model name first, else the longest configured prefix ("gpt-4o-mini" prices
    "gpt-4o-mini-2024-07-18", the dated name providers answer with)."""
    if model in prices:
        return prices[model]
    matches = [key for key in prices if model.startswith(key)]
    return prices[max(matches, key=len)] if matches else None


def estimate_cost(prices: Mapping[str, ModelPrice], model: str, usage: Usage) -> float | None:
    """Estimated USD cost, or None when the model has no configured price."""
    price = price_for(prices, model)
    if price is None:
        return None
    cost = (
        usage.prompt_tokens * price.input_per_mtok
        + usage.completion_tokens * price.output_per_mtok
    ) / 1_000_000
    return round(cost, 8)


class LLM:
    """Tries providers in order. ``configured`` is False when there is no provider at all.

    ``service`` labels the metrics every attempt is counted in."""

    def __init__(
        self,
        providers: Sequence[ProviderConfig],
        prices: Mapping[str, ModelPrice] | None = None,
        *,
        service: str,
    ) -> None:
        self.service = service
        self.providers = tuple(providers)
        self.prices = dict(prices or {})
        self._clients = [
            AsyncOpenAI(
                base_url=p.base_url,
                # Local endpoints accept any key; the client insists on one and would
                # otherwise read OPENAI_API_KEY, and settings are the only config source.
                api_key=p.api_key or "unused",
                timeout=p.timeout,
                max_retries=p.max_retries,
            )
            for p in self.providers
        ]

    @classmethod
    def from_settings(cls, settings: LlmSettings, *, service: str) -> LLM:
        return cls(settings.providers(), settings.price_table(), service=service)

    @property
    def configured(self) -> bool:
        return bool(self.providers)

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        response_format: Mapping[str, Any] | None = None,
        check: Check | None = None,
    ) -> Completion:
        """The first usable answer; :class:`LLMFailure` when every provider failed.

        Every attempt is counted in the LLM metrics as soon as the call returns (the
        call was made and paid for even if the caller's transaction rolls back)."""
        attempts: list[Attempt] = []
        try:
            completion = await self._complete(
                attempts, messages, max_tokens, temperature, response_format, check
            )
        finally:
            count_attempts(self.service, attempts)
        return completion

    async def _complete(
        self,
        attempts: list[Attempt],
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int | None,
        temperature: float | None,
        response_format: Mapping[str, Any] | None,
        check: Check | None,
    ) -> Completion:
        extra: dict[str, Any] = {}
        if max_tokens is not None:
            extra["max_tokens"] = max_tokens
        if temperature is not None:
            extra["temperature"] = temperature
        if response_format is not None:
            extra["response_format"] = dict(response_format)
        for provider, client in zip(self.providers, self._clients, strict=True):
            started = time.perf_counter()
            try:
                response = await client.chat.completions.create(
                    model=provider.model,
                    messages=[dict(m) for m in messages],  # type: ignore[misc]
                    **extra,
                )
                text, model, usage = _read(response, provider.model)
            except (openai.OpenAIError, ValueError, _Unusable) as exc:
                attempts.append(
                    Attempt(
                        provider=provider.name,
                        model=provider.model,
                        latency_ms=_ms_since(started),
                        error=_describe(exc),
                    )
                )
                continue
            latency = _ms_since(started)
            cost = estimate_cost(self.prices, model, usage)
            answered = Attempt(
                provider=provider.name, model=model, latency_ms=latency, usage=usage, cost_usd=cost
            )
            if check is not None:
                try:
                    check(text)
                except ValueError as exc:
                    # Answered (and paid for) but unusable: the next provider is tried.
                    attempts.append(
                        msgspec.structs.replace(answered, error=f"unusable answer: {_describe(exc)}")
                    )
                    continue
            attempts.append(answered)
            return Completion(
                text=text,
                provider=provider.name,
                model=model,
                usage=usage,
                latency_ms=latency,
                cost_usd=cost,
                attempts=tuple(attempts),
            )
        raise LLMFailure(attempts)

    async def reachability(
        self, timeout: float, *, off_detail: str = "no LLM endpoint configured"
    ) -> dict[str, Any]:
        """List each provider's models (no tokens spent), all at once, within ``timeout``."""
        if not self.providers:
            # The feature is off (e.g. the drafter drafts from templates): nothing is unreachable.
            return {"configured": False, "ok": True, "detail": off_detail}
        found = await asyncio.gather(
            *(
                _list_models(provider, client, timeout)
                for provider, client in zip(self.providers, self._clients, strict=True)
            )
        )
        providers = {p.name: result for p, result in zip(self.providers, found, strict=True)}
        # The feature works while any provider answers (the fallback takes over).
        return {"configured": True, "ok": any(r["ok"] for r in found), "providers": providers}

    async def aclose(self) -> None:
        for client in self._clients:
            await client.close()


def count_attempts(service: str, attempts: Sequence[Attempt]) -> None:
    """The shared LLM metrics for each provider call: requests by outcome, tokens, cost."""
    for a in attempts:
        metrics.LLM_REQUESTS.labels(service, a.provider, a.model, "ok" if a.ok else "error").inc()
        if a.usage is not None:
            metrics.LLM_TOKENS.labels(service, a.provider, a.model, "prompt").inc(a.usage.prompt_tokens)
            metrics.LLM_TOKENS.labels(service, a.provider, a.model, "completion").inc(
                a.usage.completion_tokens
            )
        if a.cost_usd is not None:
            metrics.LLM_COST.labels(service, a.provider, a.model).inc(a.cost_usd)


async def _list_models(
    provider: ProviderConfig, client: AsyncOpenAI, timeout: float
) -> dict[str, Any]:
    started = time.perf_counter()
    result: dict[str, Any] = {"ok": True, "base_url": provider.base_url, "model": provider.model}
    try:
        # A copy sharing the connection pool: no retries, a short timeout.
        await client.with_options(timeout=timeout, max_retries=0).models.list()
    except openai.OpenAIError as exc:
        result.update(ok=False, error=_describe(exc))
    result["latency_ms"] = _ms_since(started)
    return result


def _read(response: Any, requested_model: str) -> tuple[str, str, Usage]:
    # The client does not validate bodies (compatible endpoints differ in optional
    # fields), so a broken 200 shows up here as odd types rather than an exception.
    try:
        choice = response.choices[0]
        content = choice.message.content
        raw_usage = response.usage
        model = response.model if isinstance(response.model, str) and response.model else None
    except (AttributeError, IndexError, KeyError, TypeError) as exc:
        raise _Unusable(f"malformed completion ({type(exc).__name__})") from exc
    if not isinstance(content, str) or not content.strip():
        raise _Unusable("empty completion")
    usage = Usage()
    if raw_usage is not None:
        try:
            prompt = int(raw_usage.prompt_tokens or 0)
            completion = int(raw_usage.completion_tokens or 0)
            total = int(raw_usage.total_tokens or prompt + completion)
        except (AttributeError, TypeError, ValueError):
            pass  # usage is informative; a bad block must not lose a good draft
        else:
            usage = Usage(prompt, completion, total)
    return content.strip(), model or requested_model, usage


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {_short(exc.message)}"
    if isinstance(exc, openai.APIConnectionError):
        return f"connection error: {_short(str(exc.__cause__ or exc))}"
    return f"{type(exc).__name__}: {_short(str(exc))}"


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
