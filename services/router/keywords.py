"""Opt-out, opt-in and help keywords (DESIGN.md routing rule 3), English and Spanish.

Carriers and Twilio treat these as commands only when they are the whole
message, so "cancel my appointment" is a booking change, not an opt-out. The
same holds here: the message, folded (case, accents, punctuation removed),
must equal a keyword or a listed phrase. Twilio's own verdict (``OptOutType``,
sent when Advanced Opt-Out is on) wins when present.
"""

from __future__ import annotations

from typing import Literal

from services.router.text import simplify

Keyword = Literal["opt_out", "opt_in", "help"]

OPT_OUT = frozenset(
    {
        # Twilio's standard English opt-out keywords.
        "stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout",
        "opt out", "stop all",
        # Spanish equivalents used by US carriers and Twilio's Spanish opt-out list.
        "parar", "para", "alto", "detener", "detente", "cancelar", "baja", "darse de baja",
        "dar de baja", "desuscribir", "desuscribirme", "anular", "no mas", "no mas mensajes",
    }
)  # fmt: skip
OPT_IN = frozenset({"start", "unstop", "subscribe", "comenzar", "iniciar", "reanudar", "alta", "suscribir"})
HELP = frozenset({"help", "info", "ayuda", "informacion"})

_TWILIO_TYPES: dict[str, Keyword] = {"STOP": "opt_out", "START": "opt_in", "HELP": "help"}


def match_keyword(body: str, opt_out_type: str = "") -> tuple[Keyword, str] | None:
    """The keyword class and the keyword as received, or None for an ordinary message."""
    twilio = _TWILIO_TYPES.get(opt_out_type.strip().upper())
    if twilio:
        return twilio, body.strip() or opt_out_type
    text = simplify(body).replace("?", "").strip()
    if text in OPT_OUT:
        return "opt_out", text
    if text in OPT_IN:
        return "opt_in", text
    if text in HELP:
        return "help", text
    return None
