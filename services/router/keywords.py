"""Opt-out, opt-in and help keywords (DESIGN.md routing rule 3).

The rules live in :mod:`libs.consent_keywords`, shared with ingest (which records an
opt-out before it answers Twilio); this module only re-exports them for the router.
"""

from __future__ import annotations

from libs.consent_keywords import HELP, OPT_IN, STRONG_OPT_OUT, WEAK_OPT_OUT, ConsentKind, match_keyword

Keyword = ConsentKind
OPT_OUT = STRONG_OPT_OUT | WEAK_OPT_OUT

__all__ = ["HELP", "OPT_IN", "OPT_OUT", "Keyword", "match_keyword"]
