"""DESIGN.md routing rules 2-12, in order, as one pure function.

Rule 1 (duplicate MessageSid) needs the store and lives in the handler.
A thread that has opted out is treated like a paused one for any message that
is not itself a keyword (so START still opts back in): nothing automated may
reach an opted-out number, so nothing is drafted for it.

A probable but uncertain revocation (``optout_maybe``: "I don't want this") goes
to review, never to a draft (libs/consent_keywords.py says what counts).

``stale`` marks a message older (by stream sequence) than one the thread has
already acted on (DESIGN.md, per-thread order): it is logged, not acted on.

``takeover`` (HUMAN_TAKEOVER: a person replied from the business number) comes
right after the pause: the message is forwarded to the owners, never drafted.
Owner commands, STOP and HELP are exempt: the drafter checks a late owner
command against the draft's state, and a late STOP is honoured. A late START
is not (it might undo a newer STOP): consent errs towards "opted out".
"""

from __future__ import annotations

from typing import Literal

import msgspec

from libs.events import RoutingDecision
from libs.owner_protocol import Parsed, parse_owner_command
from services.router.classification import Classification
from services.router.keywords import match_keyword

Status = Literal["RECEIVED", "NEEDS_REVIEW", "DRAFT_PENDING_APPROVAL", "HUMAN_TAKEOVER"]
ANSWERED_LANGUAGES = ("en", "es")


class RouteInput(msgspec.Struct, frozen=True, kw_only=True):
    from_number: str
    body: str
    num_media: int = 0
    opt_out_type: str = ""  # Twilio's OptOutType, when Advanced Opt-Out is on
    owner_numbers: tuple[str, ...] = ()
    paused: bool = False
    opted_out: bool = False
    stale: bool = False
    takeover: bool = False  # a person is answering this thread (HUMAN_TAKEOVER)


class RouteResult(msgspec.Struct, frozen=True, kw_only=True):
    decision: RoutingDecision
    rule: str
    status: Status
    keyword: str | None = None  # the opt-out/opt-in/help keyword as received
    command: Parsed | None = None  # rule 2: a Command or Unclear


def _result(decision: RoutingDecision, rule: str, status: Status = "RECEIVED") -> RouteResult:
    return RouteResult(decision=decision, rule=rule, status=status)


def route_before_classification(inp: RouteInput) -> RouteResult | None:
    """Rules 2-5, which need no classifier; None means: classify and call :func:`route`."""
    if inp.from_number.strip() in inp.owner_numbers:
        return RouteResult(
            decision="owner_command",
            rule="owner_command",
            status="RECEIVED",
            command=parse_owner_command(inp.body),
        )
    keyword = match_keyword(inp.body, inp.opt_out_type)
    if keyword is not None and keyword[0] == "optout_maybe" and not inp.opted_out:
        # A probable but uncertain revocation ("I don't want this"): a person decides,
        # and nothing is drafted meanwhile.
        return RouteResult(
            decision="needs_review", rule="optout_maybe", status="NEEDS_REVIEW", keyword=keyword[1]
        )
    if keyword is not None and keyword[0] != "optout_maybe":
        kind, word = keyword
        if kind == "opt_in" and inp.stale:
            # A START older than a message already acted on (maybe a STOP) must not
            # undo it: consent errs towards "opted out".
            return _result("log_only", "stale")
        decision: RoutingDecision = kind  # type: ignore[assignment]  # opt_out / opt_in / help
        return RouteResult(decision=decision, rule=kind, status="RECEIVED", keyword=word)
    if inp.opted_out:
        return _result("log_only", "opted_out")
    if inp.stale:
        return _result("log_only", "stale")
    if inp.paused:
        return _result("log_only", "paused")
    if inp.takeover:
        # A person is answering: the message goes to them as it is (media, negative,
        # unknown intent alike), never to the AI.
        return _result("forward", "human_takeover", "HUMAN_TAKEOVER")
    if inp.num_media > 0:
        return _result("needs_review", "media", "NEEDS_REVIEW")
    if not inp.body.strip():
        return _result("needs_review", "empty_body", "NEEDS_REVIEW")
    return None


def route(
    inp: RouteInput, classification: Classification | None, *, language_threshold: float
) -> RouteResult:
    early = route_before_classification(inp)
    if early is not None:
        return early
    if classification is None:
        raise ValueError("rules 6-9 need a classification of the body")
    c = classification
    if c.language not in ANSWERED_LANGUAGES or (
        c.language_judged and c.language_confidence < language_threshold
    ):
        return _result("needs_review", "language", "NEEDS_REVIEW")
    if c.intent == "spam":
        # Marketing bait and phishing: a person looks, nothing is drafted.
        return _result("needs_review", "spam", "NEEDS_REVIEW")
    if c.intent == "complaint":
        # A problem with past work goes to a person whatever the sentiment score.
        return _result("needs_review", "complaint", "NEEDS_REVIEW")
    if c.sentiment == "NEGATIVE":
        return _result("needs_review", "negative_sentiment", "NEEDS_REVIEW")
    if c.intent == "unknown":
        return _result("needs_review", "unknown_intent", "NEEDS_REVIEW")
    if c.intent == "acknowledgement":
        # "ok thanks": nothing to answer; logged on the thread, no draft, no review.
        return _result("log_only", "acknowledgement")
    return _result("draft", "draft", "DRAFT_PENDING_APPROVAL")
