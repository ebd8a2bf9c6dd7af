"""Dry run: the timeline of steps and delays a workflow would produce for one contact.

Nothing is sent and nothing is stored. The simulated contact changes as the
steps run (tags, fields), so later conditions see earlier steps' effects. A
``wait_for_reply`` takes the ``replied`` branch when the sample contact has a
``last_sms_reply``, otherwise it waits for its timeout.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .conditions import contact_view, evaluate
from .definition import Definition
from .durations import delay_end, timeout_end
from .model import (
    END,
    AbSplitConfig,
    ConditionConfig,
    DelayConfig,
    EndConfig,
    HttpConfig,
    SendEmailConfig,
    SendSmsConfig,
    TagConfig,
    UpdateFieldConfig,
    WaitForReplyConfig,
    sms_text,
)
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


def simulate(definition: Definition, contact: dict[str, Any], start: datetime) -> list[Entry]:
    view = sample_view(contact)
    entries: list[Entry] = []
    now = start
    step_id = definition.first_step
    for _ in range(MAX_STEPS):
        if step_id == END:
            entries.append(Entry(now, END, "end", "workflow complete"))
            return entries
        step = definition.steps[step_id]
        config = definition.configs[step_id]
        started = now
        next_id = definition.next_of(step_id) if step.branches is None else END
        summary = ""
        if isinstance(config, SendSmsConfig):
            held = " (held for owner approval)" if config.approval == "required" else ""
            text = render(sms_text(config.body, view.get("language")), view)
            summary = f"SMS to {view['phone'] or '?'}{held}: {text!r}"
        elif isinstance(config, SendEmailConfig):
            what = (
                f"template {config.template!r}"
                if config.template
                else repr(render(config.subject or "", view))
            )
            summary = f"email to {render(config.to, view) or '(no email)'}: {what}"
        elif isinstance(config, DelayConfig):
            until = delay_end(config, now)
            summary = f"wait {_span(until - now)} until {until.isoformat()}"
            now = until
        elif isinstance(config, WaitForReplyConfig):
            assert step.branches is not None
            if view.get("last_sms_reply"):
                next_id = step.branches["replied"]
                summary = f"reply present ({view['last_sms_reply']!r}) -> replied"
            else:
                until = timeout_end(config, now)
                summary = f"no reply within {_span(until - now)} -> timeout"
                now = until
                next_id = step.branches["timeout"]
        elif isinstance(config, ConditionConfig):
            assert step.branches is not None
            result = evaluate(config.field, config.operator, config.value, view)
            next_id = step.branches["true" if result else "false"]
            value = "" if config.value is None else f" {config.value!r}"
            summary = f"{config.field} {config.operator}{value} -> {str(result).lower()}"
        elif isinstance(config, AbSplitConfig):
            assert step.branches is not None
            variant = ab_variant(config.weights, definition.key, step_id, view["phone"])
            next_id = step.branches[variant]
            summary = f"path {variant!r}"
        elif isinstance(config, TagConfig):
            tags: list[str] = view["tags"]
            if step.type == "add_tag" and config.tag not in tags:
                tags.append(config.tag)
            elif step.type == "remove_tag" and config.tag in tags:
                tags.remove(config.tag)
            summary = f"{step.type.replace('_', ' ')} {config.tag!r}"
        elif isinstance(config, UpdateFieldConfig):
            value = render_value(config.value, view)
            view[config.field] = value
            summary = f"set {config.field} = {value!r}"
        elif isinstance(config, HttpConfig):
            summary = f"{config.method} {render(config.url, view)} (not called in a dry run)"
        elif isinstance(config, EndConfig):
            summary = f"end (outcome {config.outcome})" if config.outcome else "end"
        entries.append(Entry(started, step_id, step.type, summary))
        step_id = next_id
    entries.append(Entry(now, "...", "stop", f"stopped after {MAX_STEPS} steps (the workflow loops)"))
    return entries


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
