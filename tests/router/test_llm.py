"""The optional LLM classifier against a local OpenAI-compatible server, and its fallback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client import REGISTRY

from services.router.classification import LocalClassifier
from services.router.llm import LlmClassifier
from services.router.settings import RouterLlmSettings, RouterSettings
from testsupport.fakes.openai_server import FakeOpenAI, RecordedRequest


@pytest.fixture(scope="module")
def local() -> LocalClassifier:
    return LocalClassifier(RouterSettings())


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


def make(fake: FakeOpenAI, local: LocalClassifier) -> LlmClassifier:
    settings = RouterSettings(
        router_llm=RouterLlmSettings(base_url=fake.base_url, api_key="k", timeout_s=1.0)
    )
    return LlmClassifier(settings, local)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def llm_labels() -> dict[str, str]:
    # The configured model; the fake answers with the model it was asked for.
    return {"service": "router", "provider": "primary", "model": RouterSettings().router_llm.model}


def answer(intent: str = "pricing", sentiment: str = "POSITIVE", score: float = 0.5) -> str:
    return json.dumps(
        {
            "intent": intent,
            "intent_confidence": 0.93,
            "sentiment": sentiment,
            "sentiment_score": score,
        }
    )


async def test_structured_answer_is_used(fake: FakeOpenAI, local: LocalClassifier) -> None:
    fake.reply(answer(), usage={"prompt_tokens": 41, "completion_tokens": 17, "total_tokens": 58})
    labels = llm_labels()
    ok_before = sample("replyline_llm_requests_total", **labels, outcome="ok")
    prompt_before = sample("replyline_llm_tokens_total", **labels, kind="prompt")
    completion_before = sample("replyline_llm_tokens_total", **labels, kind="completion")
    llm = make(fake, local)
    try:
        result = await llm.classify("my uncle said hi")
    finally:
        await llm.close()
    assert sample("replyline_llm_requests_total", **labels, outcome="ok") - ok_before == 1
    assert sample("replyline_llm_tokens_total", **labels, kind="prompt") - prompt_before == 41
    assert sample("replyline_llm_tokens_total", **labels, kind="completion") - completion_before == 17
    assert (result.source, result.intent, result.intent_score) == ("llm", "pricing", 0.93)
    assert (result.sentiment, result.sentiment_score) == ("POSITIVE", 0.5)
    assert result.language == "en"  # language stays lingua's
    request: RecordedRequest = fake.requests[-1]
    schema = request.body["response_format"]["json_schema"]["schema"]
    assert "unknown" in schema["properties"]["intent"]["enum"]
    assert "my uncle said hi" in request.text()


@pytest.mark.parametrize(
    "script",
    [
        lambda f: f.fail(500).fail(500),
        lambda f: f.malformed("not_json"),
        lambda f: f.reply("not json at all"),
        lambda f: f.reply(answer(intent="astrology")),
        lambda f: f.reply(answer(score=7.0)),
        lambda f: f.delay(3.0).delay(3.0),
    ],
    ids=[
        "http-500",
        "malformed-body",
        "non-json-content",
        "unknown-intent",
        "out-of-range",
        "timeout",
    ],
)
async def test_any_failure_falls_back_to_local(
    fake: FakeOpenAI, local: LocalClassifier, script: Callable[[FakeOpenAI], object]
) -> None:
    script(fake)
    labels = llm_labels()
    ok_before = sample("replyline_llm_requests_total", **labels, outcome="ok")
    errors_before = sample("replyline_llm_requests_total", **labels, outcome="error")
    llm = make(fake, local)
    try:
        result = await llm.classify("how much for a haircut?")
    finally:
        await llm.close()
    assert sample("replyline_llm_requests_total", **labels, outcome="error") - errors_before == 1
    assert sample("replyline_llm_requests_total", **labels, outcome="ok") == ok_before
    assert result == local.classify("how much for a haircut?")
    assert result.source == "local"
    assert fake.requests, "the LLM was asked"
