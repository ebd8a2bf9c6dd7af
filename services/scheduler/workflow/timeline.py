"""Dry run: the timeline of steps and delays a workflow would produce for one contact.

Nothing is sent and nothing is stored. The simulated contact changes as the
steps run (tags, fields), so later conditions see earlier steps' effects. A
``wait_for_reply`` takes the ``replied`` branch when the sample contact has a
``last_sms_reply``, otherwise it waits for its timeout.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import model
from .conditions import contact_view, evaluate
from .definition import Definition
from .durations import delay_end, timeout_end
from .model import END, Step, sms_text
from .template import render, render_value

MAX_STEPS = 200


@dataclass(frozen=True)
class Entry:
    at: datetime
    step_id: str
    step_type: str
    summary: str


def ab_variant(weights: dict[str, float], *key_parts: str) -> str:
    """Sticky weighted choice: the same contact always lands on the same path."""
    digest = hashlib.sha256(":".join(key_parts).encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(weights.values())
    for name in sorted(weights):
        point -= weights[name]
        if point < 0:
            return name
    return sorted(weights)[-1]


def sample_view(contact: dict[str, Any]) -> dict[str, Any]:
    standard = {"phone", "first_name", "last_name", "email", "tags", "last_sms_reply", "fields"}
    fields = dict(contact.get("fields") or {})
    fields.update({k: v for k, v in contact.items() if k not in standard})
    return contact_view(
        phone=str(contact.get("phone", "")),
        first_name=str(contact.get("first_name", "")),
        last_name=str(contact.get("last_name", "")),
        email=str(contact.get("email", "")),
        fields=fields,
        tags=list(contact.get("tags") or []),
        last_sms_reply=contact.get("last_sms_reply"),
    )


@dataclass
class _DryRun:
    """A dry run under way: the simulated contact, the simulated time, the timeline so far."""

    definition: Definition
    view: dict[str, Any]
    now: datetime
    entries: list[Entry] = field(default_factory=list)

    def step(self, step_id: str) -> str:
        """Run one step on paper and add it to the timeline; returns the next step's id."""
        step = self.definition.steps[step_id]
        started = self.now
        summary, branch = DRY_STEPS[step.type](self, step, self.definition.configs[step_id])
        self.entries.append(Entry(started, step_id, step.type, summary))
        if step.branches is None:
            return self.definition.next_of(step_id)
        return step.branches[branch] if branch is not None else END


def simulate(definition: Definition, contact: dict[str, Any], start: datetime) -> list[Entry]:
    run = _DryRun(definition, sample_view(contact), start)
    step_id = definition.first_step
    for _ in range(MAX_STEPS):
        if step_id == END:
            run.entries.append(Entry(run.now, END, "end", "workflow complete"))
            return run.entries
        step_id = run.step(step_id)
    run.entries.append(Entry(run.now, "...", "stop", f"stopped after {MAX_STEPS} steps (the workflow loops)"))
    return run.entries


# One function per step type, as steps.STEPS has for a real run: each says what the
# step would do, and the branch it takes when it branches (None otherwise).
Taken = tuple[str, str | None]


def _send_sms(run: _DryRun, step: Step, config: model.SendSmsConfig) -> Taken:
    held = " (held for owner approval)" if config.approval == "required" else ""
    text = render(sms_text(config.body, run.view.get("language")), run.view)
    return f"SMS to {run.view['phone'] or '?'}{held}: {text!r}", None


def _send_email(run: _DryRun, step: Step, config: model.SendEmailConfig) -> Taken:
    what = (
        f"template {config.template!r}" if config.template else repr(render(config.subject or "", run.view))
    )
    return f"email to {render(config.to, run.view) or '(no email)'}: {what}", None


def _delay(run: _DryRun, step: Step, config: model.DelayConfig) -> Taken:
    until = delay_end(config, run.now)
    summary = f"wait {_span(until - run.now)} until {until.isoformat()}"
    run.now = until
    return summary, None


def _wait_for_reply(run: _DryRun, step: Step, config: model.WaitForReplyConfig) -> Taken:
    if run.view.get("last_sms_reply"):
        return f"reply present ({run.view['last_sms_reply']!r}) -> replied", "replied"
    until = timeout_end(config, run.now)
    summary = f"no reply within {_span(until - run.now)} -> timeout"
    run.now = until
    return summary, "timeout"


def _condition(run: _DryRun, step: Step, config: model.ConditionConfig) -> Taken:
    result = evaluate(config.field, config.operator, config.value, run.view)
    value = "" if config.value is None else f" {config.value!r}"
    return f"{config.field} {config.operator}{value} -> {str(result).lower()}", "true" if result else "false"


def _ab_split(run: _DryRun, step: Step, config: model.AbSplitConfig) -> Taken:
    variant = ab_variant(config.weights, run.definition.key, step.id, run.view["phone"])
    return f"path {variant!r}", variant


def _tag(run: _DryRun, step: Step, config: model.TagConfig) -> Taken:
    tags: list[str] = run.view["tags"]
    if step.type == "add_tag" and config.tag not in tags:
        tags.append(config.tag)
    elif step.type == "remove_tag" and config.tag in tags:
        tags.remove(config.tag)
    return f"{step.type.replace('_', ' ')} {config.tag!r}", None


def _update_field(run: _DryRun, step: Step, config: model.UpdateFieldConfig) -> Taken:
    value = render_value(config.value, run.view)
    run.view[config.field] = value
    return f"set {config.field} = {value!r}", None


def _http(run: _DryRun, step: Step, config: model.HttpConfig) -> Taken:
    return f"{config.method} {render(config.url, run.view)} (not called in a dry run)", None


def _end(run: _DryRun, step: Step, config: model.EndConfig) -> Taken:
    return (f"end (outcome {config.outcome})" if config.outcome else "end"), None


DRY_STEPS: dict[str, Callable[[_DryRun, Step, Any], Taken]] = {
    "send_sms": _send_sms,
    "send_email": _send_email,
    "delay": _delay,
    "wait_for_reply": _wait_for_reply,
    "condition": _condition,
    "ab_split": _ab_split,
    "add_tag": _tag,
    "remove_tag": _tag,
    "update_field": _update_field,
    "http": _http,
    "end": _end,
}


def format_timeline(entries: list[Entry], start: datetime) -> str:
    lines = []
    for entry in entries:
        offset = _span(entry.at - start) if entry.at > start else "0s"
        lines.append(f"T+{offset:<12} {entry.step_id:<16} {entry.step_type:<14} {entry.summary}")
    return "\n".join(lines)


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"
