"""Opt-out / opt-in / help recognition (libs/consent_keywords.py): tables, false alarms, cost."""

from __future__ import annotations

import time

import pytest

from libs.consent_keywords import match_keyword

# Every keyword of Twilio's, AWS End User Messaging's and Telnyx's documented lists,
# the French ARRET forms and the Spanish equivalents.
LISTED_OPT_OUT = [
    "STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT",
    "OPT-OUT", "OPT OUT", "REMOVE", "TD", "ARRET", "ARRÊT", "Arrêt", "ARRETE", "ARRETT",
    "BAJA", "PARAR", "ALTO", "CANCELAR", "DETENER", "PARA", "DAR DE BAJA", "NO MÁS",
]  # fmt: skip
POLITE_OPT_OUT = [
    "STOP PLEASE", "stop!!", "Stop.", "please stop", "Stop please!!!", "STOP NOW", "stop 🛑",
    "Stop pls", "stop, thanks", "ok stop", "UNSUBSCRIBE please", "Baja por favor",
    "parar por favor", "ARRET SVP", "Stop. I already hired someone else.", "stop thank you",
]  # fmt: skip
NATURAL_OPT_OUT = [
    "stop texting me", "please stop texting me", "Please stop texting me!", "stop messaging me",
    "stop sending me texts", "take me off your list", "Take me off the list please",
    "remove me", "remove me from your list", "unsubscribe me", "don't text me anymore",
    "Do not text me again", "do not contact me", "no more texts please", "opt me out",
    "I found someone else, please stop texting me. Thanks", "stop spamming me",
    "I don't want these texts", "lose my number",
    "no me escriban más", "No me escriban mas por favor", "ya no quiero mensajes",
    "no me manden más mensajes", "dejen de escribirme", "deja de escribirme por favor",
    "no quiero recibir más mensajes", "sáquenme de la lista", "denme de baja",
    "quiero darme de baja", "no me envíen más mensajes", "dejen de enviarme mensajes",
]  # fmt: skip
MAYBE = [
    "I don't want this", "Cancel please", "end please", "quit pls", "not interested",
    "leave me alone", "wrong number", "why did you stop texting me?", "don't text me before 9am",
    "stop it", "no me interesa", "número equivocado",
]  # fmt: skip
OPT_IN = ["START", "start", "Unstop", "UNSTOP.", "comenzar", "Reanudar"]
HELP = ["HELP", "help?", "INFO", "Ayuda", "información"]
# Ordinary lead SMS that must never be read as a revocation (nor sent to review as one).
ORDINARY = [
    "Can you stop by at 3?", "can you stop by tomorrow?", "The leak won't stop", "stop by anytime",
    "The water won't stop running", "my toilet won't stop running", "can you cancel my appointment?",
    "I need to cancel my appointment for Friday", "please cancel the 3pm and book 5pm instead",
    "the end of the month works", "By the end of the week?", "I quit my job so I'm home all day",
    "can you remove the old sink", "remove the old water heater too please", "Remove the carpet first?",
    "what time do you end today?", "When does your day end?", "Can you come at the end of the day?",
    "I want to start on Monday", "When can you start?", "start date next week?", "help me fix my sink",
    "I need help with a leak", "Can you help?", "more info on pricing please", "info about the warranty?",
    "Do you service Austin?", "how much for a drain cleaning", "thanks see you then", "ok sounds good",
    "Yes please", "yes", "no", "No thanks, Tuesday is better", "Is it too late to reschedule?",
    "the pipes stopped leaking", "it stopped working yesterday", "the noise stopped",
    "Don't forget to bring the part", "don't worry about it", "Please text me when you're on the way",
    "Text me the quote", "you can text me anytime", "send me the invoice", "take the old heater away",
    "Take me through the options", "I'll be out, can the tech call first", "who is coming today?",
    "The bus stop is in front of my house", "It's at the last stop on Main St", "non-stop dripping",
    "Cancelled the other plumber, you're hired", "quitting time is 5 for me",
    "para mañana a las 3?", "es para mi casa", "¿Cuánto cuesta para destapar el baño?",
    "la presión del agua está muy baja", "el agua está muy alta", "gracias, hasta mañana",
    "¿Pueden venir el viernes?", "quiero cancelar la cita del lunes y pasarla al martes",
    "No funciona el calentador", "¿me pueden ayudar con una fuga?", "necesito información del precio",
    "No me escribieron la dirección", "ya quiero que vengan", "no quiero esperar tanto",
    "el fin de semana está bien", "Al final de la calle", "Detener la fuga es urgente",
    "I need the leak to stop before my party", "Can you stop the leak today?", "stop the dripping please",
    "please stop the water from leaking", "Removing the tiles is fine", "the end cap is broken",
]  # fmt: skip


@pytest.mark.parametrize("body", LISTED_OPT_OUT + POLITE_OPT_OUT + NATURAL_OPT_OUT)
def test_opt_out(body: str) -> None:
    found = match_keyword(body)
    assert found is not None and found[0] == "opt_out", (body, found)


@pytest.mark.parametrize("body", MAYBE)
def test_uncertain_revocation_goes_to_review(body: str) -> None:
    assert match_keyword(body) == ("optout_maybe", match_keyword(body)[1])  # type: ignore[index]


@pytest.mark.parametrize("body", OPT_IN)
def test_opt_in(body: str) -> None:
    assert match_keyword(body) is not None and match_keyword(body)[0] == "opt_in"  # type: ignore[index]


@pytest.mark.parametrize("body", HELP)
def test_help(body: str) -> None:
    assert match_keyword(body) is not None and match_keyword(body)[0] == "help"  # type: ignore[index]


def test_ordinary_chat_is_never_a_revocation() -> None:
    assert len(ORDINARY) >= 60
    alarms = [(body, match_keyword(body)) for body in ORDINARY if match_keyword(body) is not None]
    assert alarms == []


def test_yes_is_not_an_opt_in() -> None:
    # YES is the owner's approval word and a lead's ordinary answer (see the module doc).
    assert match_keyword("YES") is None


def test_twilio_opt_out_type_wins() -> None:
    assert match_keyword("stop texting me please", "STOP") == ("opt_out", "stop texting me please")
    assert match_keyword("STOP", "STOP") == ("opt_out", "STOP")  # as received
    assert match_keyword("whatever", "START") == ("opt_in", "whatever")


def test_cost_is_bounded_on_huge_bodies() -> None:
    bodies = ["😸" * 60_000, "stop " * 12_000, "a" * 60_000, "no me " * 10_000, "STOP " + "x" * 60_000]
    started = time.perf_counter()
    for body in bodies:
        match_keyword(body)
    assert time.perf_counter() - started < 0.05
