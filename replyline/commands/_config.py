"""Settings for a `replyline` command: loaded over every service's section, or the error said."""

from __future__ import annotations

from typing import TextIO, TypeVar

import msgspec

from libs.settings import SettingsError, load
from replyline.services import SERVICES

S = TypeVar("S", bound=msgspec.Struct)


def load_settings(
    cls: type[S],
    *,
    section: str | None = None,
    label: str = "configuration error",
    file: TextIO | None = None,
) -> S | None:
    """``cls`` from the environment and settings file, or None once the error is printed.

    The command then exits 2. ``file`` None is stdout, as print() has it.
    """
    try:
        return load(cls, section=section, sections=SERVICES)
    except SettingsError as exc:
        print(f"{label}: {exc}", file=file)
        return None
