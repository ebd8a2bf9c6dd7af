"""One function per step type, in the ``STEPS`` table: what a step should do, not doing it.

A step function gets the enrollment, its contact and the step's config and
returns a :class:`StepResult`: where the enrollment goes next and the
:mod:`effects` to perform on the way (events to publish, a timer, a contact
write, a webhook call, an email). The functions do no I/O; the runner
(runner.py) performs the effects inside the step's transaction, and an outside
effect (``CallWebhook``, ``SendEmail``) fills in the step's output or error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import asyncpg

from libs.events import ContactTagged, ContactUpdated, DraftRequested, Event, OutboundRequested

from .effects import CallWebhook, Effect, Publish, SendEmail, SetTimer, WriteField, WriteTag
from .emailer import EmailError, EmailTemplate, single_address
from .enrollment import Enrollment
from .store import view_of
from .workflow.conditions import evaluate
from .workflow.definition import Definition
from .workflow.durations import delay_end, timeout_end
from .workflow.model import (
    END,
    AbSplitConfig,
    ConditionConfig,
    DelayConfig,
    EndConfig,
    HttpConfig,
    SendEmailConfig,
    SendSmsConfig,
    Step,
    StepConfig,
    TagConfig,
    UpdateFieldConfig,
    WaitForReplyConfig,
    sms_text,
)
from .workflow.template import render, render_url, render_value
from .workflow.timeline import ab_variant


@dataclass
class StepResult:
    next_step: str | None  # None: stay on this step
    status: str = "active"
    waiting_for: str | None = None
    timer_id: str | None = None
    pause_reason: str | None = None
    ended_reason: str | None = None
    input: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] | None = None
    error: str | None = None
    completed: bool = True  # False while a delay or a wait is pending
    executed: bool = True  # False when the step was held (paused) without running
    outcome: str | None = None
    replied: bool | None = None  # new value of the enrollment's replied flag
    effects: list[Effect] = field(default_factory=list)


@dataclass(frozen=True)
class StepContext:
    """What a step function sees of the enrollment's current step, about to run."""

    enrollment: Enrollment
    definition: Definition
    contact: asyncpg.Record
    now: datetime
    #: Email templates by name (emailer.Emailer.template).
    templates: Callable[[str], EmailTemplate]
    step: Step = field(init=False)
    #: The execution's sequence number: the enrollment's next.
    seq: int = field(init=False)

    def __post_init__(self) -> None:
        # Taken now: recording the step moves the enrollment on.
        step_id = self.enrollment.current_step
        assert step_id is not None
        object.__setattr__(self, "step", self.definition.steps[step_id])
        object.__setattr__(self, "seq", self.enrollment.step_seq + 1)

    @cached_property
    def view(self) -> dict[str, Any]:
        """The contact as conditions and templates see it."""
        return view_of(self.contact)

    @property
    def key(self) -> str:
        """This execution's dedup id: event msg id, request id, Idempotency-Key, Message-ID."""
        return self.enrollment.request_id(self.seq)

    @property
    def following(self) -> str:
        """Where a non-branching step goes next (a branching one names its branch)."""
        return self.definition.next_of(self.step.id) if self.step.branches is None else END


def send_sms(ctx: StepContext, config: SendSmsConfig) -> StepResult:
    if ctx.contact["paused"]:
        return StepResult(None, "paused", pause_reason="thread_paused", executed=False)
    if ctx.enrollment.replied and ctx.definition.workflow.on_reply == "pause":
        return StepResult(None, "paused", pause_reason="lead_replied", executed=False)
    body = render(sms_text(config.body, ctx.view.get("language")), ctx.view)
    thread, enrollment_id = ctx.enrollment.thread, str(ctx.enrollment.id)
    if config.approval == "required":
        # The drafter owns the owner's approval loop; the draft it creates
        # carries this request id back in draft.approved / draft.rejected.
        draft = DraftRequested(
            thread=thread,
            request_id=ctx.key,
            to_number=ctx.contact["phone"],
            body=body,
            workflow_enrollment_id=enrollment_id,
            step_id=ctx.step.id,
        )
        return StepResult(
            None,
            "waiting",
            waiting_for="approval",
            input={"body": body, "request_id": ctx.key},
            completed=False,
            effects=[Publish(draft)],
        )
    sms = OutboundRequested(
        thread=thread,
        request_id=ctx.key,
        to_number=ctx.contact["phone"],
        body=body,
        kind="workflow",
        media_urls=tuple(config.media_urls),
        workflow_enrollment_id=enrollment_id,
    )
    return StepResult(
        ctx.following, input={"body": body}, output={"request_id": ctx.key}, effects=[Publish(sms)]
    )


def send_email(ctx: StepContext, config: SendEmailConfig) -> StepResult:
    data: dict[str, Any] = {"template": config.template}
    try:
        if config.template is not None:
            template = ctx.templates(config.template)
            subject, body = template.subject, template.body
        else:
            subject, body = config.subject or "", config.body or ""
        to = single_address(render(config.to, ctx.view))
    except EmailError as err:
        # Nothing to retry (no address, no template): a failed step.
        return StepResult(ctx.following, input=data, error=str(err))
    data["to"] = to
    email = SendEmail(to=to, subject=render(subject, ctx.view), body=render(body, ctx.view), key=ctx.key)
    return StepResult(ctx.following, input=data, effects=[email])


def wait(ctx: StepContext, config: DelayConfig | WaitForReplyConfig) -> StepResult:
    """``delay`` and ``wait_for_reply``: set the step's timer and wait for it (or a reply)."""
    waiting_reply = isinstance(config, WaitForReplyConfig)
    fire_at = (
        timeout_end(config, ctx.now) if isinstance(config, WaitForReplyConfig) else delay_end(config, ctx.now)
    )
    enrollment = ctx.enrollment
    timer = SetTimer(
        timer_id=f"wf.{enrollment.id}.{ctx.seq}",
        kind="reply_timeout" if waiting_reply else "workflow_delay",
        fire_at=fire_at,
        thread=enrollment.thread,
        payload={"enrollment_id": str(enrollment.id), "seq": ctx.seq, "step_id": ctx.step.id},
    )
    return StepResult(
        None,
        "waiting",
        waiting_for="reply" if waiting_reply else "delay",
        timer_id=timer.timer_id,
        input={"fire_at": fire_at.isoformat()},
        completed=False,
        # A reply before the wait does not count as the answer, nor pause later SMS.
        replied=False if waiting_reply else None,
        effects=[timer],
    )


def condition(ctx: StepContext, config: ConditionConfig) -> StepResult:
    assert ctx.step.branches is not None
    result = evaluate(config.field, config.operator, config.value, ctx.view)
    branch = "true" if result else "false"
    return StepResult(
        ctx.step.branches[branch],
        input={"value": ctx.view.get(config.field)},
        output={"result": result, "branch": branch},
    )


def ab_split(ctx: StepContext, config: AbSplitConfig) -> StepResult:
    assert ctx.step.branches is not None
    variant = ab_variant(config.weights, ctx.definition.key, ctx.step.id, ctx.enrollment.thread)
    return StepResult(ctx.step.branches[variant], output={"variant": variant})


def tag(ctx: StepContext, config: TagConfig) -> StepResult:
    """``add_tag`` and ``remove_tag``."""
    added = ctx.step.type == "add_tag"
    thread = ctx.enrollment.thread
    event = ContactTagged(thread=thread, number=ctx.contact["phone"], tag_name=config.tag, added=added)
    return _contact_change(ctx, WriteTag(config.tag, added), event, {"tag": config.tag, "added": added})


def update_field(ctx: StepContext, config: UpdateFieldConfig) -> StepResult:
    value = render_value(config.value, ctx.view)
    thread = ctx.enrollment.thread
    event = ContactUpdated(thread=thread, number=ctx.contact["phone"], field=config.field, value=value)
    return _contact_change(
        ctx, WriteField(config.field, value), event, {"field": config.field, "value": value}
    )


def _contact_change(ctx: StepContext, write: Effect, event: Event, output: dict[str, Any]) -> StepResult:
    """A step that writes the contact and announces it (``contact.tagged``, ``contact.updated``)."""
    return StepResult(ctx.following, output=output, effects=[write, Publish(event, msg_id=ctx.key)])


def http(ctx: StepContext, config: HttpConfig) -> StepResult:
    url = render_url(config.url, ctx.view)
    call = CallWebhook(
        method=config.method,
        url=url,
        headers=config.headers,
        body=render_value(config.body, ctx.view),
        timeout_s=config.timeout,
        retries=config.retries,
        key=ctx.key,
    )
    return StepResult(ctx.following, input={"url": url}, effects=[call])


def end(ctx: StepContext, config: EndConfig) -> StepResult:
    return StepResult(END, output={"outcome": config.outcome}, outcome=config.outcome)


StepFunction = Callable[[StepContext, Any], StepResult]
STEPS: dict[str, StepFunction] = {
    "send_sms": send_sms,
    "send_email": send_email,
    "delay": wait,
    "wait_for_reply": wait,
    "condition": condition,
    "ab_split": ab_split,
    "add_tag": tag,
    "remove_tag": tag,
    "update_field": update_field,
    "http": http,
    "end": end,
}


def plan(ctx: StepContext, config: StepConfig) -> StepResult:
    return STEPS[ctx.step.type](ctx, config)


def outcome_of(config: StepConfig) -> str | None:
    """The conversation outcome a step records when it runs (an ``end`` step's), known ahead."""
    return config.outcome if isinstance(config, EndConfig) else None
