"""Conversation outcomes: a rule decides; an LLM may refine it when configured.

Rules (docs/workflows.md): opt-out -> discarded, human take-over -> escalated,
no reply for N days -> no_response, a goal/qualification tag or an ``end`` step
with an ``outcome`` -> that outcome. With the scheduler's own LLM section
configured (``REPLYLINE_OUTCOME_LLM_BASE_URL``; the drafter's ``REPLYLINE_LLM_*``
does not turn it on), the model gets the rule's verdict and the contact, answers
with a JSON schema (one of the six outcomes and a reason), and its answer is kept
only when it parses; any failure falls back to the rule. The calls are the shared
client's (libs/llm.py); this module holds the prompt and the parsing.
"""

from __future__ import annotations

import json
from typing import Any, get_args

import asyncpg
import msgspec
import structlog

from libs.db import audit
from libs.llm import LLM

from .settings import SchedulerSettings
from .store import Q
from .workflow.model import Outcome

log = structlog.get_logger("outcomes")
OUTCOMES: tuple[str, ...] = get_args(Outcome)
SERVICE = "scheduler"

_SCHEMA = {
    "name": "conversation_outcome",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {
            "outcome": {"type": "string", "enum": list(OUTCOMES)},
            "reason": {"type": "string"},
        },
        "required": ["outcome", "reason"],
        "additionalProperties": False,
    },
}


class OutcomeJudge:
    """Optional LLM second opinion (OpenAI-compatible, structured output)."""

    def __init__(self, settings: SchedulerSettings) -> None:
        self._llm = LLM.from_settings(settings.outcome_llm, service=SERVICE)

    @property
    def enabled(self) -> bool:
        return self._llm.configured

    async def aclose(self) -> None:
        await self._llm.aclose()

    async def judge(self, rule_outcome: str, reason: str, contact: dict[str, Any]) -> str | None:
        if not self.enabled:
            return None
        prompt = (
            "Classify how this SMS lead conversation ended. Outcomes: success (goal reached), "
            "qualified, unqualified, escalated (handed to a human), no_response, discarded "
            "(opted out, spam, wrong number).\n"
            f"Event that ended it: {reason}\nRule-based guess: {rule_outcome}\n"
            f"Contact: {json.dumps(contact, default=str)[:2000]}"
        )
        try:
            completion = await self._llm.complete(
                [{"role": "user", "content": prompt}],
                response_format={"type": "json_schema", "json_schema": _SCHEMA},
                check=_outcome_of,
            )
        except Exception as exc:  # any LLM trouble: the rule stands
            log.warning("outcome_llm_failed", error=repr(exc))
            return None
        return _outcome_of(completion.text)


def _outcome_of(text: str) -> str:
    """The answer's outcome, or ValueError when it is not one of the six."""
    data = json.loads(text)  # JSONDecodeError is a ValueError
    outcome = data.get("outcome") if isinstance(data, dict) else None
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of {OUTCOMES}")
    return str(outcome)


class Verdict(msgspec.Struct, frozen=True):
    rule_outcome: str
    outcome: str
    decided_by: str  # rule | llm

    @classmethod
    def by_rule(cls, outcome: str) -> Verdict:
        return cls(outcome, outcome, "rule")


async def decide(
    judge: OutcomeJudge | None, outcome: str, reason: str, contact: dict[str, Any] | None = None
) -> Verdict:
    """The rule's outcome, refined by the LLM when one is configured.

    Call it with no transaction open (a model may take seconds): never while
    holding an enrollment's or a contact's row lock.
    """
    if judge is not None and judge.enabled:
        verdict = await judge.judge(outcome, reason, contact or {})
        if verdict is not None:
            return Verdict(outcome, verdict, "llm")
    return Verdict.by_rule(outcome)


async def store_outcome(
    conn: asyncpg.Connection,
    verdict: Verdict,
    *,
    thread: str,
    reason: str,
    source_event: str,
    details: dict[str, Any] | None = None,
) -> str | None:
    """Store (once per source event) and audit an outcome; returns it, or None if known already."""
    final, decided_by = verdict.outcome, verdict.decided_by
    info = {"rule_outcome": verdict.rule_outcome, **(details or {})}
    row = await conn.fetchrow(Q.insert_outcome, thread, final, reason, decided_by, info, source_event)
    if row is None:
        return None
    await audit(
        conn,
        service=SERVICE,
        action="conversation_outcome",
        thread=thread,
        details={"outcome": final, "reason": reason, "decided_by": decided_by, **info},
    )
    log.info("conversation_outcome", thread=thread, outcome=final, reason=reason, by=decided_by)
    return final


async def record_outcome(
    conn: asyncpg.Connection,
    judge: OutcomeJudge | None,
    *,
    thread: str,
    outcome: str,
    reason: str,
    source_event: str,
    contact: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> str | None:
    """``decide`` then ``store_outcome``, for a caller holding no lock (``conn`` outside a transaction)."""
    verdict = await decide(judge, outcome, reason, contact)
    return await store_outcome(
        conn, verdict, thread=thread, reason=reason, source_event=source_event, details=details
    )
