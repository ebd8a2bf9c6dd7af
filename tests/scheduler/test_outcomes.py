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


async def _row_is_free(pool: asyncpg.Pool, enrollment_id: Any) -> bool:
    """True when another connection can lock the enrollment row right now."""
    async with pool.acquire() as conn, conn.transaction():
        try:
            await conn.fetchval(
                "SELECT id FROM workflow_enrollments WHERE id = $1 FOR UPDATE NOWAIT", enrollment_id
            )
        except asyncpg.LockNotAvailableError:
            return False
    return True


async def test_the_llm_judge_never_runs_under_the_enrollment_lock(
    schedulers: Any, bus: Any, pool: asyncpg.Pool, workflow_dir: Any
) -> None:
    """The fake model holds each request for a while; meanwhile the enrollment row
    must be lockable (an end step's outcome, then an opt-out's)."""
    from libs.events import ContactOptout
    from tests.harness import eventually
    from tests.scheduler.test_engine import PHONE, THREAD, lead, write

    write(
        workflow_dir,
        "book.yaml",
        """
name: Book
trigger: {type: contact_created}
steps:
  - id: done
    type: end
    config: {outcome: success}
""",
    )
    async with FakeOpenAI() as fake:
        verdict = json.dumps({"outcome": "qualified", "reason": "booked"})
        fake.delay(2.0, then=verdict, times=2)
        await schedulers.start(outcome_llm_base_url=fake.base_url, outcome_llm_model="judge-1")
        await bus.publish(lead())
        await fake.wait_for_requests(1)
        book = await pool.fetchval("SELECT id FROM workflow_enrollments WHERE workflow_key = 'book'")
        assert await _row_is_free(pool, book)
        outcome = await eventually(
            lambda: pool.fetchrow("SELECT outcome, decided_by, source_event FROM conversation_outcomes")
        )
        assert (outcome["outcome"], outcome["decided_by"]) == ("qualified", "llm")
        assert outcome["source_event"] == f"wf:{book}:1"
        assert await pool.fetchval("SELECT status FROM workflow_enrollments WHERE id = $1", book) == "completed"

        # The welcome sequence is waiting on its first delay: STOP ends it, judged first.
        # Both workflows enroll on the one lead event, the welcome one after "book" (whose
        # end step waited for the judge): wait for its row rather than reading it once.
        welcome = await eventually(
            lambda: pool.fetchval(
                "SELECT id FROM workflow_enrollments WHERE workflow_key = 'new_lead_welcome'"
                " AND thread = $1 AND status = 'waiting'",
                THREAD,
            )
        )
        await bus.publish(ContactOptout(thread=THREAD, number=PHONE, keyword="STOP"))
        await fake.wait_for_requests(2)
        assert await _row_is_free(pool, welcome)
        await eventually(
            lambda: pool.fetchval("SELECT status = 'ended' FROM workflow_enrollments WHERE id = $1", welcome)
        )
        rows = await pool.fetch("SELECT outcome, reason, decided_by FROM conversation_outcomes ORDER BY id")
        assert [tuple(r) for r in rows] == [("qualified", "goal_reached", "llm"), ("qualified", "opt_out", "llm")]
