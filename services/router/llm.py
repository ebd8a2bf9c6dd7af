"""Optional LLM classification of sentiment and intent, with structured output.

Used only when the router's own section ``router_llm`` has a base URL
(``REPLYLINE_ROUTER_LLM_BASE_URL``). Language stays lingua's (measured,
deterministic, and what rule 6 is tuned on); the model answers sentiment and
intent as a JSON object constrained by a JSON schema. Any failure (network,
timeout, HTTP error, refusal, malformed or out-of-schema answer) falls back to
the local classifier's answer, so routing never waits on or fails with the LLM.
The calls, fallback provider and metrics are the shared client's (libs/llm.py);
this module holds the prompt and the parsing.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import structlog

from libs.llm import LLM, Completion
from services.router.classification import Classification, LocalClassifier
from services.router.intents import UNKNOWN
from services.router.settings import RouterSettings

log = structlog.get_logger(__name__)

SERVICE = "router"

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
    def __init__(self, settings: RouterSettings, local: LocalClassifier) -> None:
        self.local = local
        self.llm = LLM.from_settings(settings.router_llm, service=SERVICE)
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
        await self.llm.aclose()

    async def classify(self, text: str, local: Classification | None = None) -> Classification:
        """``local``: the local answer when the caller computed it already (off the event loop)."""
        if local is None:
            local = self.local.classify(text)
        try:
            completion = await self._request(text)
        except Exception as exc:  # any failure (LLMFailure or other): the local answer stands
            log.warning("llm_classify_failed", error=str(exc)[:300])
            return local
        answer = self._answer(completion.text)  # checked by the client already
        return msgspec.structs.replace(
            local,
            sentiment=answer.sentiment,
            sentiment_score=round(answer.sentiment_score, 4),
            intent=answer.intent,
            intent_score=round(answer.intent_confidence, 4),
            source="llm",
        )

    async def _request(self, text: str) -> Completion:
        return await self.llm.complete(
            [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": f"Intents: {', '.join(self._intents)}\nSMS: {text}"},
            ],
            temperature=0,
            response_format=self._response_format,
            check=self._answer,
        )

    def _answer(self, content: str) -> _Answer:
        """The model's answer, or ValueError (msgspec's errors are ValueErrors)."""
        answer = msgspec.json.decode(content, type=_Answer)
        if answer.intent not in (*self._intents, UNKNOWN):
            raise ValueError(f"intent {answer.intent!r} is not configured")
        if not (0.0 <= answer.intent_confidence <= 1.0 and -1.0 <= answer.sentiment_score <= 1.0):
            raise ValueError("score out of range")
        return answer
