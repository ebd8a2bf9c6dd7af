"""The workflow schema of WORKFLOWS.md as msgspec Structs.

``Step.config`` stays a plain mapping in the file model because its shape
depends on ``type``; :data:`CONFIG_TYPES` gives the Struct each type's config
is converted to during validation.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

TriggerType = Literal["contact_created", "tag_added", "sms_received", "field_updated", "call_missed"]
Operator = Literal["equals", "not_equals", "contains", "exists", "greater_than", "less_than"]
TimeUnit = Literal["seconds", "minutes", "hours", "days"]
Outcome = Literal["success", "qualified", "unqualified", "escalated", "no_response", "discarded"]
OnReply = Literal["pause", "continue", "end"]

UNIT_SECONDS: dict[str, int] = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
END = "end"


class Condition(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    field: str
    operator: Operator
    value: Any = None


class Trigger(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    type: TriggerType
    conditions: tuple[Condition, ...] = ()


class Step(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    id: str
    type: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    next: str | None = None
    branches: dict[str, str] | None = None
    #: Where the enrollment goes when this step fails (a step id, or ``end`` to end
    #: the enrollment as failed); without it, it goes on as if the step had succeeded.
    on_error: str | None = None


class Workflow(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    trigger: Trigger
    steps: tuple[Step, ...]
    version: int = 1
    description: str = ""
    #: What an inbound reply does to this workflow's enrollments of the thread:
    #: ``pause`` holds further send_sms steps (the default), ``continue``
    #: ignores it, ``end`` ends the enrollment.
    on_reply: OnReply = "pause"
    #: Allow a contact to enroll again once an earlier enrollment finished.
    allow_reenroll: bool = False


# --- per-type configs ------------------------------------------------------


class _Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    pass


class LocalizedBody(_Config, frozen=True, kw_only=True):
    """A lead-facing text in English and Spanish, like every text of the business profile."""

    en: str
    es: str


class SendSmsConfig(_Config, frozen=True, kw_only=True):
    #: One text, or ``{en: ..., es: ...}``: the contact's ``language`` field picks
    #: (set from the router's detection of their messages, an import or update_field),
    #: English when it is unknown.
    body: str | LocalizedBody
    #: ``required`` sends it through the drafter's owner approval loop (draft.requested).
    approval: Literal["required", "none"] = "none"
    media_urls: tuple[str, ...] = ()


def sms_texts(body: str | LocalizedBody) -> tuple[str, ...]:
    return (body,) if isinstance(body, str) else (body.en, body.es)


def sms_text(body: str | LocalizedBody, language: object) -> str:
    """The text to send for a contact whose ``language`` field is ``language``."""
    if isinstance(body, str):
        return body
    return body.es if str(language or "").strip().lower()[:2] == "es" else body.en


class SendEmailConfig(_Config, frozen=True, kw_only=True):
    template: str | None = None
    subject: str | None = None
    body: str | None = None
    to: str = "{{email}}"


class DelayConfig(_Config, frozen=True, kw_only=True):
    duration: float | None = None
    unit: TimeUnit = "seconds"
    #: Wait until the next HH:MM in ``timezone`` instead of a duration.
    until: str | None = None
    timezone: str = "UTC"


class WaitForReplyConfig(_Config, frozen=True, kw_only=True):
    timeout: float
    unit: TimeUnit = "seconds"


class ConditionConfig(_Config, frozen=True, kw_only=True):
    field: str
    operator: Operator
    value: Any = None


class AbSplitConfig(_Config, frozen=True, kw_only=True):
    #: Branch name -> relative weight; the names are those of ``branches``.
    weights: dict[str, float]


class TagConfig(_Config, frozen=True, kw_only=True):
    tag: str


class UpdateFieldConfig(_Config, frozen=True, kw_only=True):
    field: str
    value: Any = None


class HttpConfig(_Config, frozen=True, kw_only=True):
    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: Any = None
    timeout: float = 10.0
    retries: int = 2


class EndConfig(_Config, frozen=True, kw_only=True):
    #: Conversation outcome to record when the workflow reaches this step.
    outcome: Outcome | None = None


StepConfig = (
    SendSmsConfig
    | SendEmailConfig
    | DelayConfig
    | WaitForReplyConfig
    | ConditionConfig
    | AbSplitConfig
    | TagConfig
    | UpdateFieldConfig
    | HttpConfig
    | EndConfig
)

CONFIG_TYPES: dict[str, type[_Config]] = {
    "send_sms": SendSmsConfig,
    "send_email": SendEmailConfig,
    "delay": DelayConfig,
    "wait_for_reply": WaitForReplyConfig,
    "condition": ConditionConfig,
    "ab_split": AbSplitConfig,
    "add_tag": TagConfig,
    "remove_tag": TagConfig,
    "update_field": UpdateFieldConfig,
    "http": HttpConfig,
    "end": EndConfig,
}

#: Step types that choose among ``branches`` (and the branch names they need).
BRANCH_NAMES: dict[str, frozenset[str] | None] = {
    "condition": frozenset({"true", "false"}),
    "wait_for_reply": frozenset({"replied", "timeout"}),
    "ab_split": None,  # names come from config.weights
}
#: Step types that wait on a timer; a cycle must pass through one of them.
WAITING_TYPES = frozenset({"delay", "wait_for_reply"})
