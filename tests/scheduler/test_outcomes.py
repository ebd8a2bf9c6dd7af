"""Outcome judgement: rules by default, an LLM with structured output when configured."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import asyncpg

from libs.db import migrate
from services.scheduler.outcomes import OutcomeJudge, record_outcome
from services.scheduler.settings import SchedulerSettings
from services.scheduler.store import MIGRATIONS
from testsupport.fakes.openai_server import FakeOpenAI


async def test_llm_refines_the_rule_and_falls_back_on_failure(
    make_settings: Callable[..., Any], pool: asyncpg.Pool
) -> None:
    await migrate(pool, "scheduler", MIGRATIONS)
    async with FakeOpenAI() as fake:
        settings: SchedulerSettings = make_settings(
            SchedulerSettings,
            outcome_llm_base_url=fake.base_url,
            outcome_llm_model="judge-1",
            outcome_llm_api_key="k",
        )
        judge = OutcomeJudge(settings)
        fake.reply(json.dumps({"outcome": "qualified", "reason": "asked for a quote"}))
        fake.fail(500, times=2)  # the client retries once: both attempts fail
        fake.malformed("wrong_types")
        async with pool.acquire() as conn:
            first = await record_outcome(
                conn,
                judge,
                thread="1555",
                outcome="no_response",
                reason="no_reply",
                source_event="e1",
                contact={"first_name": "Ana"},
            )
            second = await record_outcome(
                conn,
                judge,
                thread="1555",
                outcome="no_response",
                reason="no_reply",
                source_event="e2",
            )
            third = await record_outcome(
                conn,
                judge,
                thread="1555",
                outcome="discarded",
                reason="opt_out",
                source_event="e3",
            )
            again = await record_outcome(
                conn,
                None,
                thread="1555",
                outcome="discarded",
                reason="opt_out",
                source_event="e3",
            )
        assert len(fake.requests) == 4 and fake.pending_steps == 0
        request = fake.requests[0]
        assert request.model == "judge-1"
        assert request.body["response_format"]["type"] == "json_schema"
        assert "Rule-based guess: no_response" in request.text()
    assert (first, second, third, again) == ("qualified", "no_response", "discarded", None)
    rows = await pool.fetch("SELECT outcome, decided_by, details FROM conversation_outcomes ORDER BY id")
    assert [(r["outcome"], r["decided_by"]) for r in rows] == [
        ("qualified", "llm"),
        ("no_response", "rule"),
        ("discarded", "rule"),
    ]
    assert rows[0]["details"]["rule_outcome"] == "no_response"
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'conversation_outcome'") == 3
