"""Optional LLM classification of sentiment and intent, with structured output.

Used only when ``llm_base_url`` is set. Language stays lingua's (measured,
deterministic, and what rule 6 is tuned on); the model answers sentiment and
intent as a JSON object constrained by a JSON schema. Any failure (network,
timeout, HTTP error, refusal, malformed or out-of-schema answer) falls back to
the local classifier's answer, so routing never waits on or fails with the LLM.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import structlog
from openai import AsyncOpenAI

from libs import metrics
from services.router.classification import Classification, LocalClassifier
from services.router.intents import UNKNOWN
from services.router.settings import RouterSettings

log = structlog.get_logger(__name__)

SERVICE = "router"
#: The router has one endpoint; the drafter's labels are "primary" / "fallback".
PROVIDER = "primary"

SYSTEM_PROMPT = (
    "You classify one inbound SMS sent by a lead to a small business. "
    "Answer only with the JSON object the schema describes. "
    "intent: what the sender wants, one of the listed intents, or 'unknown' when none fits. "
    "sentiment: the sender's tone; sentiment_score from -1 (very negative) to 1 (very positive)."
)


class _Answer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    intent: str
    intent_confidence: float
    sentiment: Literal["NEGATIVE", "NEUTRAL", "POSITIVE"]
    sentiment_score: float


def answer_schema(intents: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["intent", "intent_confidence", "sentiment", "sentiment_score"],
        "properties": {
            "intent": {"type": "string", "enum": [*intents, UNKNOWN]},
            "intent_confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "sentiment": {"type": "string", "enum": ["NEGATIVE", "NEUTRAL", "POSITIVE"]},
            "sentiment_score": {"type": "number", "minimum": -1, "maximum": 1},
        },
    }


class LlmClassifier:
    def __init__(
        self, settings: RouterSettings, local: LocalClassifier, client: AsyncOpenAI | None = None
    ) -> None:
        self.local = local
        self.model = settings.llm_model
        self.client = client or AsyncOpenAI(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key or "not-needed",
            timeout=settings.llm_timeout_s,
            max_retries=1,
        )
        self._intents = local.intents.names
        self._response_format: Any = {
            "type": "json_schema",
            "json_schema": {
                "name": "sms_classification",
                "strict": True,
                "schema": answer_schema(self._intents),
            },
        }

    async def close(self) -> None:
        await self.client.close()

    async def classify(self, text: str, local: Classification | None = None) -> Classification:
        """``local``: the local answer when the caller computed it already (off the event loop)."""
        if local is None:
            local = self.local.classify(text)
        model = self.model
        try:
            response = await self._request(text)
            model = _model_of(response, self.model)
            _count_tokens(model, response)  # spent even when the answer is unusable
            answer = self._answer(response)
        except Exception as exc:  # any failure: the local answer stands
            metrics.LLM_REQUESTS.labels(SERVICE, PROVIDER, model, "error").inc()
            log.warning("llm_classify_failed", error=repr(exc)[:300])
            return local
        metrics.LLM_REQUESTS.labels(SERVICE, PROVIDER, model, "ok").inc()
        return msgspec.structs.replace(
            local,
            sentiment=answer.sentiment,
            sentiment_score=round(answer.sentiment_score, 4),
            intent=answer.intent,
            intent_score=round(answer.intent_confidence, 4),
            source="llm",
        )

    async def _request(self, text: str) -> Any:
        return await self.client.chat.completions.create(
            model=self.model,
            temperature=0,
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": f"Intents: {', '.join(self._intents)}\nSMS: {text}"},
            ],
            response_format=self._response_format,
        )

    def _answer(self, response: Any) -> _Answer:
        content = response.choices[0].message.content if response.choices else None
        if not content:
            raise ValueError("empty completion")
        answer = msgspec.json.decode(content, type=_Answer)
        if answer.intent not in (*self._intents, UNKNOWN):
            raise ValueError(f"intent {answer.intent!r} is not configured")
        if not (0.0 <= answer.intent_confidence <= 1.0 and -1.0 <= answer.sentiment_score <= 1.0):
            raise ValueError("score out of range")
        return answer


def _model_of(response: Any, requested: str) -> str:
    model = getattr(response, "model", None)
    return model if isinstance(model, str) and model else requested


def _count_tokens(model: str, response: Any) -> None:
    usage = getattr(response, "usage", None)
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    if isinstance(prompt, int):
        metrics.LLM_TOKENS.labels(SERVICE, PROVIDER, model, "prompt").inc(prompt)
    if isinstance(completion, int):
        metrics.LLM_TOKENS.labels(SERVICE, PROVIDER, model, "completion").inc(completion)
