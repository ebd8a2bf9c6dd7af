"""The LLM client against the fake OpenAI-compatible server, through the real openai client."""

from __future__ import annotations

import pytest

from libs.llm import (
    LLM,
    LLMFailure,
    ModelPrice,
    ProviderConfig,
    Usage,
    estimate_cost,
    price_for,
)
from testsupport.fakes.openai_server import FakeOpenAI

MESSAGES = [
    {"role": "system", "content": "You write SMS replies for Sunny Side Plumbing."},
    {"role": "user", "content": "How much is drain cleaning?"},
]
PRICES = {"gpt-4o-mini": ModelPrice(0.15, 0.60), "small-model": ModelPrice(1.0, 2.0)}


@pytest.fixture
async def primary():
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def fallback():
    async with FakeOpenAI() as fake:
        yield fake


def _llm(primary: FakeOpenAI, fallback: FakeOpenAI | None = None, timeout: float = 2.0) -> LLM:
    providers = [
        ProviderConfig(name="primary", base_url=primary.base_url, model="gpt-4o-mini",
                       api_key="sk-primary", timeout=timeout, max_retries=0)
    ]
    if fallback is not None:
        providers.append(
            ProviderConfig(name="fallback", base_url=fallback.base_url, model="small-model",
                           timeout=timeout, max_retries=0)
        )
    return LLM(providers, PRICES, service="drafter")


async def test_completion_returns_text_usage_cost_and_latency(primary: FakeOpenAI) -> None:
    primary.reply("  Drain cleaning starts at $129.  ")
    llm = _llm(primary)
    try:
        result = await llm.complete(MESSAGES, max_tokens=200, temperature=0.3)
    finally:
        await llm.aclose()
    assert result.text == "Drain cleaning starts at $129."
    assert (result.provider, result.model) == ("primary", "gpt-4o-mini")
    # The fake counts one token per word: 8 + 5 prompt words, 5 completion words.
    assert result.usage == Usage(prompt_tokens=13, completion_tokens=5, total_tokens=18)
    assert result.cost_usd == pytest.approx((13 * 0.15 + 5 * 0.60) / 1e6)
    assert result.latency_ms >= 0
    assert len(result.attempts) == 1 and result.attempts[0].ok
    request = primary.requests[0]
    assert request.headers["authorization"] == "Bearer sk-primary"
    assert request.body["model"] == "gpt-4o-mini"
    assert request.body["max_tokens"] == 200
    assert request.messages == MESSAGES


@pytest.mark.parametrize("status", [500, 429])
async def test_http_error_falls_back_to_second_provider(
    primary: FakeOpenAI, fallback: FakeOpenAI, status: int
) -> None:
    primary.fail(status)
    fallback.reply("Hi from the fallback")
    llm = _llm(primary, fallback)
    try:
        result = await llm.complete(MESSAGES)
    finally:
        await llm.aclose()
    assert result.provider == "fallback" and result.model == "small-model"
    assert result.text == "Hi from the fallback"
    failed, ok = result.attempts
    assert failed.provider == "primary" and failed.error.startswith(f"HTTP {status}")
    assert ok.ok and ok.usage is not None and ok.usage.total_tokens > 0
    assert len(primary.requests) == 1 and len(fallback.requests) == 1


async def test_timeout_falls_back(primary: FakeOpenAI, fallback: FakeOpenAI) -> None:
    primary.delay(3.0, then="too late")
    fallback.reply("on time")
    llm = _llm(primary, fallback, timeout=0.5)
    try:
        result = await llm.complete(MESSAGES)
    finally:
        await llm.aclose()
    assert result.text == "on time"
    assert result.attempts[0].error == "timeout"
    assert 400 <= result.attempts[0].latency_ms < 2500


@pytest.mark.parametrize("kind", ["not_json", "no_choices", "empty_content", "wrong_types"])
async def test_malformed_answer_falls_back(
    primary: FakeOpenAI, fallback: FakeOpenAI, kind: str
) -> None:
    primary.malformed(kind)  # type: ignore[arg-type]
    fallback.reply("a usable answer")
    llm = _llm(primary, fallback)
    try:
        result = await llm.complete(MESSAGES)
    finally:
        await llm.aclose()
    assert result.provider == "fallback"
    assert result.attempts[0].error


async def test_all_providers_failing_raises_with_every_attempt(
    primary: FakeOpenAI, fallback: FakeOpenAI
) -> None:
    primary.fail(503)
    fallback.fail(500)
    llm = _llm(primary, fallback)
    try:
        with pytest.raises(LLMFailure) as info:
            await llm.complete(MESSAGES)
    finally:
        await llm.aclose()
    assert [a.provider for a in info.value.attempts] == ["primary", "fallback"]
    assert all(not a.ok for a in info.value.attempts)
    assert "HTTP 503" in str(info.value) and "HTTP 500" in str(info.value)


async def test_client_retries_inside_one_provider_before_falling_back(
    primary: FakeOpenAI, fallback: FakeOpenAI
) -> None:
    primary.fail(500).reply("second try worked")
    llm = LLM([ProviderConfig(name="primary", base_url=primary.base_url, model="gpt-4o-mini",
                              max_retries=1, timeout=2.0)], PRICES, service="drafter")
    try:
        result = await llm.complete(MESSAGES)
    finally:
        await llm.aclose()
    assert result.text == "second try worked"
    assert len(primary.requests) == 2


async def test_unreachable_provider_is_a_connection_error(fallback: FakeOpenAI) -> None:
    fake = FakeOpenAI()
    await fake.start()
    dead_url = fake.base_url
    await fake.close()
    llm = LLM([ProviderConfig(name="dead", base_url=dead_url, model="m", max_retries=0),
               ProviderConfig(name="fallback", base_url=fallback.base_url, model="small-model",
                              max_retries=0)], PRICES, service="drafter")
    try:
        result = await llm.complete(MESSAGES)
    finally:
        await llm.aclose()
    assert result.attempts[0].error.startswith("connection error")
    assert result.cost_usd == pytest.approx(estimate_cost(PRICES, "small-model", result.usage))


def test_price_table_matches_dated_model_names_by_prefix() -> None:
    assert price_for(PRICES, "gpt-4o-mini-2024-07-18") == PRICES["gpt-4o-mini"]
    assert price_for(PRICES, "unknown") is None
    assert estimate_cost(PRICES, "unknown", Usage(10, 10, 20)) is None
    assert estimate_cost(PRICES, "small-model", Usage(1_000_000, 500_000, 1_500_000)) == 2.0


async def test_fake_answers_json_schema_requests_with_valid_json(primary: FakeOpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"intent": {"type": "string", "enum": ["pricing", "booking"]},
                       "confidence": {"type": "number"}},
        "required": ["intent", "confidence"],
        "additionalProperties": False,
    }
    llm = _llm(primary)
    try:
        result = await llm.complete(
            MESSAGES,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "c", "schema": schema, "strict": True}},
        )
    finally:
        await llm.aclose()
    import json

    assert json.loads(result.text) == {"intent": "pricing", "confidence": 0}
    assert primary.requests[0].body["response_format"]["type"] == "json_schema"


async def test_reachability_lists_models_and_names_the_unreachable_provider(
    primary: FakeOpenAI,
) -> None:
    dead = FakeOpenAI()
    await dead.start()
    dead_url = dead.base_url
    await dead.close()
    llm = LLM([ProviderConfig(name="primary", base_url=primary.base_url, model="gpt-4o-mini"),
               ProviderConfig(name="fallback", base_url=dead_url, model="small-model")], PRICES, service="drafter")
    try:
        result = await llm.reachability(timeout=2.0)
    finally:
        await llm.aclose()
    assert (result["configured"], result["ok"]) == (True, True)  # the primary answers
    assert result["providers"]["primary"]["ok"] is True
    down = result["providers"]["fallback"]
    assert down["ok"] is False and down["base_url"] == dead_url
    assert down["error"].startswith("connection error")
    assert primary.requests == []  # listing models spends no completion


async def test_llm_probe_is_cached_between_heartbeats() -> None:
    from services.drafter.service import llm_probe

    fake = FakeOpenAI()
    await fake.start()
    llm = LLM(
        [ProviderConfig(name="primary", base_url=fake.base_url, model="gpt-4o-mini")], service="drafter"
    )
    cached, fresh = llm_probe(llm, cache_s=60), llm_probe(llm, cache_s=0)
    try:
        assert (await cached())["ok"] is True
        assert (await fresh())["ok"] is True
        await fake.close()  # the provider goes away
        assert (await cached())["ok"] is True  # still the first answer
        assert (await fresh())["ok"] is False
    finally:
        await llm.aclose()


async def test_without_providers_the_probe_says_not_configured() -> None:
    llm = LLM([], service="drafter")
    assert llm.configured is False
    result = await llm.reachability(timeout=1.0)
    assert (result["configured"], result["ok"]) == (False, True)
