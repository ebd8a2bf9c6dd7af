"""The six condition operators, shared by triggers, condition steps and the dry run.

Values are looked up in a contact view (see :func:`contact_view`): standard
fields, custom fields, ``tags`` (a list) and ``last_sms_reply``. Comparisons
never raise: a value that cannot be compared makes the condition false.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .template import lookup


def contact_view(
    *,
    phone: str = "",
    first_name: str = "",
    last_name: str = "",
    email: str = "",
    fields: Mapping[str, Any] | None = None,
    tags: list[str] | tuple[str, ...] = (),
    last_sms_reply: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One flat mapping to evaluate conditions and render templates against.

    Custom fields come first so a custom field can never shadow a standard one.
    """
    view: dict[str, Any] = dict(fields or {})
    view.update(
        phone=phone,
        first_name=first_name,
        last_name=last_name,
        email=email,
        tags=list(tags),
        last_sms_reply=last_sms_reply,
        fields=dict(fields or {}),
    )
    view.update(extra or {})
    return view


def evaluate(field: str, operator: str, expected: Any, view: Mapping[str, Any]) -> bool:
    actual = lookup(view, field)
    if operator == "exists":
        present = actual not in (None, "", [], {})
        # `value: false` asks for absence, so one operator covers both questions.
        return present if expected in (None, True) else not present
    if operator == "equals":
        return _same(actual, expected)
    if operator == "not_equals":
        return not _same(actual, expected)
    if operator == "contains":
        if isinstance(actual, list | tuple | set):
            return any(_same(item, expected) for item in actual)
        if isinstance(actual, str) and expected is not None:
            return str(expected).casefold() in actual.casefold()
        return False
    if operator in ("greater_than", "less_than"):
        left, right = _number(actual), _number(expected)
        if left is None or right is None:
            return False
        return left > right if operator == "greater_than" else left < right
    raise ValueError(f"unknown operator {operator!r}")


def _same(actual: Any, expected: Any) -> bool:
    if actual == expected:
        return True
    # Field values arrive as strings from forms; "25" equals 25 and "Yes" equals "yes".
    if actual is None or expected is None:
        return False
    left, right = _number(actual), _number(expected)
    if left is not None and right is not None:
        return left == right
    return str(actual).casefold() == str(expected).casefold()


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None
