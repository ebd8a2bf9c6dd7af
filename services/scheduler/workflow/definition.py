"""Load and validate a workflow file into a :class:`Definition` the engine can run.

Every rejection names the file, the line and the reason. Checks: the schema
(unknown keys, wrong types), each step type's config, duplicate ids, dangling
``next``/branch targets, unreachable steps, and loops that never wait (a cycle
must pass through a ``delay`` or ``wait_for_reply``, or it would spin forever).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from .durations import parse_time_of_day, zone
from .model import (
    BRANCH_NAMES,
    CONFIG_TYPES,
    END,
    WAITING_TYPES,
    AbSplitConfig,
    ConditionConfig,
    DelayConfig,
    HttpConfig,
    SendEmailConfig,
    SendSmsConfig,
    Step,
    StepConfig,
    WaitForReplyConfig,
    Workflow,
    sms_texts,
)
from .source import Document, Issue, parse
from .template import template_errors, url_problems

SUFFIXES = (".yaml", ".yml", ".json")


class DefinitionError(Exception):
    """One or more problems in a definition file."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("\n".join(str(issue) for issue in issues))
        self.issues = issues


class Definition:
    """A validated workflow: the file model plus each step's typed config."""

    def __init__(self, workflow: Workflow, configs: dict[str, StepConfig], source: str) -> None:
        self.workflow = workflow
        self.configs = configs
        self.source = source
        self.steps: dict[str, Step] = {step.id: step for step in workflow.steps}
        self._order = [step.id for step in workflow.steps]

    @property
    def name(self) -> str:
        return self.workflow.name

    @property
    def version(self) -> int:
        return self.workflow.version

    @property
    def key(self) -> str:
        """Stable identifier of the workflow (slug of its name)."""
        return slug(self.workflow.name)

    @property
    def first_step(self) -> str:
        return self._order[0]

    def next_of(self, step_id: str) -> str:
        """Where a non-branching step continues: its ``next``, the following step, or ``end``."""
        step = self.steps[step_id]
        if step.type == "end":
            return END
        if step.next is not None:
            return step.next
        index = self._order.index(step_id)
        return self._order[index + 1] if index + 1 < len(self._order) else END

    def successors(self, step_id: str) -> list[str]:
        step = self.steps[step_id]
        targets = list(step.branches.values()) if step.branches is not None else [self.next_of(step_id)]
        if step.on_error is not None:
            targets.append(step.on_error)
        return targets

    def to_builtins(self) -> dict[str, Any]:
        """The definition as plain data (for JSON export and the definitions table)."""
        data: dict[str, Any] = msgspec.to_builtins(self.workflow)
        # Name and version first, as people write them.
        return {"name": data.pop("name"), "version": self.workflow.version, **data}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.casefold()).strip("_") or "workflow"


def load_text(text: str, source: str) -> Definition:
    """Validate a YAML/JSON text; raises :class:`DefinitionError` with every issue found."""
    try:
        document = parse(text, source)
    except Issue as issue:
        raise DefinitionError([issue]) from None
    return validate(document)


def load_file(path: str | Path) -> Definition:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DefinitionError([Issue(str(path), 0, f"cannot read: {err.strerror}")]) from None
    return load_text(text, str(path))


def definition_files(directory: str | Path) -> list[Path]:
    root = Path(directory)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix in SUFFIXES)


def load_directory(directory: str | Path) -> tuple[list[Definition], list[Issue]]:
    """Every valid definition of a folder, and the issues of the files that were rejected."""
    definitions: list[Definition] = []
    issues: list[Issue] = []
    seen: dict[tuple[str, int], str] = {}
    for path in definition_files(directory):
        try:
            definition = load_file(path)
        except DefinitionError as err:
            issues.extend(err.issues)
            continue
        ident = (definition.key, definition.version)
        if ident in seen:
            issues.append(
                Issue(
                    str(path),
                    1,
                    f"workflow {definition.name!r} version "
                    f"{definition.version} is also defined in {seen[ident]}",
                )
            )
            continue
        seen[ident] = str(path)
        definitions.append(definition)
    return definitions, issues


# --- validation ------------------------------------------------------------

_MSGSPEC_PATH = re.compile(r" - at `\$(.*)`$")
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")
_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[['\"](.+?)['\"]\]")


def validate(document: Document) -> Definition:
    try:
        workflow = msgspec.convert(document.data, Workflow)
    except msgspec.ValidationError as err:
        raise DefinitionError([_schema_issue(document, (), str(err))]) from None
    issues: list[Issue] = []
    configs: dict[str, StepConfig] = {}
    ids: set[str] = set()
    if not workflow.steps:
        issues.append(document.issue(("steps",), "a workflow needs at least one step"))
    if not workflow.name.strip():
        issues.append(document.issue(("name",), "name must not be empty"))
    for index, condition in enumerate(workflow.trigger.conditions):
        if condition.operator != "exists" and condition.value is None:
            issues.append(
                document.issue(
                    ("trigger", "conditions", index),
                    f"operator {condition.operator!r} needs a value",
                )
            )
    for index, step in enumerate(workflow.steps):
        at = ("steps", index)
        if step.id == END:
            issues.append(document.issue((*at, "id"), "'end' is reserved; use type: end"))
        elif step.id in ids:
            issues.append(document.issue((*at, "id"), f"duplicate step id {step.id!r}"))
        ids.add(step.id)
        config = _step_config(document, at, step, issues)
        if config is not None:
            configs.setdefault(step.id, config)
    if issues:
        raise DefinitionError(issues)
    definition = Definition(workflow, configs, document.source)
    issues.extend(_graph_issues(document, definition))
    if issues:
        raise DefinitionError(issues)
    return definition


def _schema_issue(document: Document, base: tuple[str | int, ...], message: str) -> Issue:
    path: list[str | int] = list(base)
    match = _MSGSPEC_PATH.search(message)
    if match:
        message = message[: match.start()]
        for name, index, quoted in _PATH_PART.findall(match.group(1)):
            path.append(int(index) if index else (name or quoted))
    unknown = _UNKNOWN_FIELD.search(message)
    if unknown:
        path.append(unknown.group(1))
    return document.issue(tuple(path), message)


def _step_config(
    document: Document, at: tuple[str | int, ...], step: Step, issues: list[Issue]
) -> StepConfig | None:
    config_type = CONFIG_TYPES.get(step.type)
    if config_type is None:
        known = ", ".join(sorted(CONFIG_TYPES))
        issues.append(document.issue((*at, "type"), f"unknown step type {step.type!r} (known: {known})"))
        return None
    try:
        config: StepConfig = msgspec.convert(step.config, config_type)  # type: ignore[assignment]
    except msgspec.ValidationError as err:
        issue = _schema_issue(document, (*at, "config"), str(err))
        issues.append(Issue(issue.source, issue.line, f"{step.type} config: {issue.reason}"))
        return None
    where = (*at, "config")
    for reason in _config_problems(config):
        issues.append(document.issue(where, f"{step.type} step {step.id!r}: {reason}"))
    if step.type == "end" and step.on_error is not None:
        issues.append(document.issue((*at, "on_error"), "an end step has no on_error"))
    _check_branches(document, at, step, config, issues)
    return config


def _config_problems(config: StepConfig) -> Iterable[str]:
    if isinstance(config, SendSmsConfig):
        texts = sms_texts(config.body)
        if not all(sms.strip() for sms in texts):
            yield "body must not be empty"
        if config.approval == "required" and config.media_urls:
            # The owner approves (or edits) text by SMS; a draft carries no media.
            yield "media_urls cannot be combined with approval: required"
        for sms in texts:
            yield from template_errors(sms)
    elif isinstance(config, SendEmailConfig):
        if config.template is None and (config.subject is None or config.body is None):
            yield "needs a template, or a subject and a body"
        for text in (config.subject, config.body, config.to):
            yield from template_errors(text or "")
    elif isinstance(config, DelayConfig):
        if (config.duration is None) == (config.until is None):
            yield "needs exactly one of duration (with unit) or until (HH:MM)"
        if config.duration is not None and config.duration < 0:
            yield "duration must not be negative"
        if config.until is not None:
            try:
                parse_time_of_day(config.until)
                zone(config.timezone)
            except ValueError as err:
                yield str(err)
    elif isinstance(config, WaitForReplyConfig):
        if config.timeout <= 0:
            yield "timeout must be positive"
    elif isinstance(config, ConditionConfig):
        if config.operator != "exists" and config.value is None:
            yield f"operator {config.operator!r} needs a value"
    elif isinstance(config, AbSplitConfig):
        if len(config.weights) < 2:
            yield "needs at least two weighted paths"
        if any(weight <= 0 for weight in config.weights.values()):
            yield "weights must be positive"
    elif isinstance(config, HttpConfig):
        yield from url_problems(config.url)
        if config.timeout <= 0:
            yield "timeout must be positive"
        if not 0 <= config.retries <= 10:
            yield "retries must be between 0 and 10"


def _check_branches(
    document: Document,
    at: tuple[str | int, ...],
    step: Step,
    config: StepConfig,
    issues: list[Issue],
) -> None:
    if step.type not in BRANCH_NAMES:
        if step.branches is not None:
            issues.append(document.issue((*at, "branches"), f"{step.type} steps take next, not branches"))
        if step.type == "end" and step.next is not None:
            issues.append(document.issue((*at, "next"), "an end step has no next"))
        return
    if step.next is not None:
        issues.append(document.issue((*at, "next"), f"{step.type} steps take branches, not next"))
    expected = BRANCH_NAMES[step.type]
    if expected is None and isinstance(config, AbSplitConfig):
        expected = frozenset(config.weights)
    given = frozenset(step.branches or {})
    if given != expected:
        wanted = ", ".join(sorted(expected or ()))
        issues.append(
            document.issue(
                (*at, "branches") if step.branches else at,
                f"{step.type} step {step.id!r} needs branches: {wanted}",
            )
        )


def _graph_issues(document: Document, definition: Definition) -> list[Issue]:
    issues: list[Issue] = []
    index_of = {step.id: i for i, step in enumerate(definition.workflow.steps)}

    for step in definition.workflow.steps:
        at = ("steps", index_of[step.id])
        targets: list[tuple[tuple[str | int, ...], str]] = []
        if step.next is not None:
            targets.append(((*at, "next"), step.next))
        if step.on_error is not None:
            targets.append(((*at, "on_error"), step.on_error))
        for name, target in (step.branches or {}).items():
            targets.append(((*at, "branches", name), target))
        for where, target in targets:
            if target != END and target not in definition.steps:
                issues.append(document.issue(where, f"step {step.id!r} goes to unknown step {target!r}"))
    if issues:
        return issues

    reached: set[str] = set()
    frontier = [definition.first_step]
    while frontier:
        current = frontier.pop()
        if current == END or current in reached:
            continue
        reached.add(current)
        frontier.extend(definition.successors(current))
    for step in definition.workflow.steps:
        if step.id not in reached:
            issues.append(document.issue(("steps", index_of[step.id]), f"step {step.id!r} is unreachable"))

    issues.extend(_busy_cycles(document, definition, index_of))
    return issues


def _busy_cycles(document: Document, definition: Definition, index_of: dict[str, int]) -> list[Issue]:
    """Cycles made only of steps that do not wait (iterative DFS over non-waiting steps)."""
    busy = {sid for sid, step in definition.steps.items() if step.type not in WAITING_TYPES}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    issues: list[Issue] = []
    for root in definition.steps:
        if root not in busy or root in state:
            continue
        stack: list[tuple[str, list[str]]] = [(root, _busy_next(definition, root, busy))]
        state[root] = 1
        while stack:
            node, pending = stack[-1]
            if not pending:
                state[node] = 2
                stack.pop()
                continue
            target = pending.pop()
            if state.get(target) == 1:
                issues.append(
                    document.issue(
                        _edge_path(definition, index_of, node, target),
                        f"cycle without a delay: step {node!r} loops back to {target!r}; "
                        "put a delay or wait_for_reply in the loop",
                    )
                )
            elif target not in state:
                state[target] = 1
                stack.append((target, _busy_next(definition, target, busy)))
    return issues


def _busy_next(definition: Definition, step_id: str, busy: set[str]) -> list[str]:
    return [t for t in definition.successors(step_id) if t in busy]


def _edge_path(
    definition: Definition, index_of: dict[str, int], source: str, target: str
) -> tuple[str | int, ...]:
    step = definition.steps[source]
    at: tuple[str | int, ...] = ("steps", index_of[source])
    for name, branch_target in (step.branches or {}).items():
        if branch_target == target:
            return (*at, "branches", name)
    if step.on_error == target and step.next != target:
        return (*at, "on_error")
    return (*at, "next") if step.next is not None else at
