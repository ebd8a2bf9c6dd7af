"""Twilio delivery error codes in plain language: what happened and what the owner can do.

The table itself is data (libs/data/twilio_errors.yaml); this module only reads it.
The sender's owner alert, the dashboard's thread page and `replyline thread` all use
it, so an owner sees the same words everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

TABLE = Path(__file__).parent / "data" / "twilio_errors.yaml"
LINK = "https://www.twilio.com/docs/api/errors/{code}"


@dataclass(frozen=True)
class DeliveryError:
    code: int
    title: str
    explain: str
    action: str
    known: bool

    @property
    def link(self) -> str:
        return LINK.format(code=self.code)

    def text(self) -> str:
        """One line for an SMS alert or a CLI row."""
        if not self.known:
            return f"Twilio error {self.code}, see {self.link}"
        return f"{self.title} (error {self.code}). {self.explain} What to do: {self.action}"


@cache
def _table() -> dict[int, dict[str, str]]:
    raw = yaml.safe_load(TABLE.read_text(encoding="utf-8")) or {}
    return {int(code): {k: str(v) for k, v in entry.items()} for code, entry in raw.items()}


def explain(code: int | str | None) -> DeliveryError | None:
    """The explanation of a Twilio error code; None when there is no (usable) code."""
    if code is None or code == "":
        return None
    try:
        number = int(code)
    except (TypeError, ValueError):
        return None
    entry = _table().get(number)
    if entry is None:
        return DeliveryError(number, f"Twilio error {number}", "", "", known=False)
    return DeliveryError(number, entry["title"], entry["explain"], entry["action"], known=True)


def describe(code: int | str | None) -> str | None:
    found = explain(code)
    return found.text() if found else None
