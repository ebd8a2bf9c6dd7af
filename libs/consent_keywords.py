"""Opt-out / opt-in / help recognition (DESIGN.md routing rule 3), rules only, EN + ES + FR ARRET.

Pure and shared: the router routes with it, and ingest uses it to record an
opt-out before it answers Twilio (DESIGN.md, "Consent ordering"), so both must
reach the same verdict on the same message.

Documented keyword lists this covers (checked 2026):

- Twilio (help.twilio.com "Twilio support for opt-out keywords (SMS STOP
  filtering)"; docs/messaging/tutorials/advanced-opt-out): opt-out STOP,
  STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT; opt-in START, YES,
  UNSTOP; help HELP, INFO. Twilio Proxy also drops ARRET, ARRETE, ARRETT.
- AWS End User Messaging SMS ("Required opt-out keywords"): ARRET, CANCEL,
  END, OPT-OUT, OPTOUT, QUIT, REMOVE, STOP, TD, UNSUBSCRIBE; opt-in START,
  UNSTOP (toll-free).
- Telnyx ("SMS Opt-Out Keywords and Stop Words", developers "Advanced
  Opt-In/Out"): STOP, STOPALL, STOP ALL, UNSUBSCRIBE, CANCEL, END, QUIT;
  opt-in START, UNSTOP; help HELP.

Beyond the lists, the FCC's revocation rule (47 CFR 64.1200(a)(10): "any
reasonable means") covers plain-language requests, so phrases such as "stop
texting me", "take me off your list", "no me escriban más" opt out too.

Decisions:

- Carriers act on a keyword only when it is the whole message. Replyline also
  tolerates case, accents, punctuation, emoji and politeness ("STOP PLEASE",
  "stop!!", "Baja por favor") around the *strong* keywords (words that mean
  nothing else in a lead's SMS). Words with everyday meanings (CANCEL, END,
  QUIT, REMOVE, TD, PARA, ALTO, CANCELAR) opt out only alone; with extra
  politeness they are ``optout_maybe`` (a person reviews; never drafted).
- A keyword inside a longer sentence is not an opt-out ("can you stop by
  tomorrow?", "the leak won't stop", "cancel my appointment"): only the listed
  revocation phrases are, and a phrase in a question or negated context
  ("why did you stop texting me?") is ``optout_maybe``.
- YES is not an opt-in here: it is the owner's approval word and a lead's
  ordinary answer. An opted-out lead opts back in with START / UNSTOP (or the
  Spanish words); until then Replyline errs towards "opted out".
- Cost is linear and bounded: only the first ``MAX_SCAN_CHARS`` characters are
  looked at, normalised once, then matched token by token against tables (no
  backtracking regexes).
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from typing import Literal

from libs.events import ContactOptout, InboundReceived, thread_of

ConsentKind = Literal["opt_out", "opt_in", "help", "optout_maybe"]

#: Only this much of a message is read: keywords and revocations are short, and a
#: 60 KB body must cost no more than a 480-character one.
MAX_SCAN_CHARS = 480

# --- keyword tables (folded: lower case, no accents, punctuation as spaces) ---------

#: Opt-out words that mean nothing else in a lead's SMS: politeness around them is fine.
STRONG_OPT_OUT = frozenset(
    {
        # Twilio, Telnyx, AWS (OPT-OUT folds to "opt out").
        "stop", "stopall", "stop all", "unsubscribe", "revoke", "optout", "opt out",
        # French (AWS, Twilio Proxy), with and without the accent (folding removes it).
        "arret", "arrete", "arrett", "arreter",
        # Spanish.
        "parar", "detener", "baja", "darse de baja", "dar de baja", "darme de baja",
        "desuscribir", "desuscribirme", "desuscribirse", "no mas", "no mas mensajes",
        "basta", "stop todo", "remove me", "take me off", "unsubscribe me", "opt me out",
    }
)  # fmt: skip
#: Opt-out words with everyday meanings ("cancel my booking", "para mañana"): only alone.
WEAK_OPT_OUT = frozenset(
    {"cancel", "end", "quit", "remove", "td", "para", "alto", "cancelar", "detente", "anular", "fin"}
)
OPT_IN = frozenset({"start", "unstop", "subscribe", "comenzar", "iniciar", "reanudar", "alta", "suscribir"})
HELP = frozenset({"help", "info", "ayuda", "informacion", "aide"})

#: Politeness and filler that may surround a strong keyword ("please stop", "STOP NOW thx").
_POLITE = frozenset(
    {
        "please", "pls", "plz", "plez", "pleas", "plse", "thanks", "thank", "thx", "tx", "ty", "now",
        "ok", "okay", "k", "just", "asap", "already", "immediately", "right", "away", "sir",
        "maam", "yes", "hi", "hey", "hello", "thankyou", "por", "favor", "porfa", "porfavor",
        "xfa", "gracias", "ya", "hola", "merci", "svp", "sil", "vous", "plait", "stp",
    }
)  # fmt: skip

_OPT_OUT_PHRASES: tuple[str, ...] = (
    # English: "stop <contacting> me" and friends.
    "stop texting me", "stop texting", "stop txting me", "stop txting", "stop text me",
    "stop messaging me", "stop messaging", "stop msging me", "stop msg me", "stop sms",
    "stop sending me texts", "stop sending me messages", "stop sending texts",
    "stop sending messages", "stop sending me", "stop contacting me", "stop the texts",
    "stop the messages", "stop these texts", "stop these messages", "stop your texts",
    "stop your messages", "stop spamming me", "stop spamming", "stop spam", "stop all texts",
    "stop all messages", "quit texting me", "quit messaging me", "quit texting",
    "dont text me", "do not text me", "dont message me", "do not message me", "dont contact me",
    "do not contact me", "dont txt me", "never text me", "never contact me",
    "no more texts", "no more messages", "no more text messages", "no more sms",
    "take me off your list", "take me off the list", "take me off this list",
    "take me off your texting list", "take me off your mailing list", "take me off your contact list",
    "remove me from your list", "remove me from the list", "remove me from this list",
    "remove me from your texts", "remove me from your contacts", "remove my number",
    "delete my number",
    "lose my number", "unsubscribe me", "opt me out", "i want to opt out", "i want to unsubscribe",
    "i dont want your texts", "i dont want these texts", "i dont want any texts",
    "i dont want your messages", "i dont want these messages", "i dont want any more texts",
    "i do not want your texts", "i do not want these texts",
    "i dont want to receive texts", "i dont want to receive messages",
    "i no longer want texts", "i no longer want messages",
    # Spanish: "no me escriban/manden/envíen más", "dejen de escribirme", "denme de baja".
    "no me escriban", "no me escribas", "no me escriba", "no me escriban mas", "no me escribas mas",
    "no me manden mensajes", "no me manden mas mensajes", "no me mandes mas mensajes",
    "no me manden mas", "no me envien mensajes", "no me envien mas mensajes", "no me envien mas",
    "no me mandes mensajes", "no me contacten", "no me contacten mas", "no me molesten mas",
    "no me textees", "no quiero mensajes", "no quiero mas mensajes", "no quiero recibir mensajes",
    "no quiero recibir mas mensajes", "ya no quiero mensajes", "ya no quiero recibir mensajes",
    "dejen de escribirme", "deja de escribirme", "dejen de escribir", "dejen de mandarme mensajes",
    "deja de mandarme mensajes", "dejen de enviarme mensajes", "deja de enviarme mensajes",
    "dejen de enviarme", "dejen de mandarme", "dejen de contactarme", "deja de contactarme",
    "dejen de molestarme", "borrenme de su lista", "borrame de su lista", "borrenme de la lista",
    "sacame de la lista", "sacame de su lista", "saquenme de la lista", "saquenme de su lista",
    "quitenme de la lista", "quitame de la lista", "quitenme de su lista", "eliminen mi numero",
    "borren mi numero", "denme de baja", "dame de baja", "darme de baja", "me doy de baja",
    "quiero darme de baja", "de baja por favor", "basta de mensajes", "cancelar suscripcion",
    "cancelar mensajes", "no mas mensajes",
    # French.
    "arretez de m ecrire", "arrete de m ecrire", "ne m ecrivez plus", "desabonner",
    "me desabonner", "desinscrire",
)  # fmt: skip

#: Probable but uncertain revocations, when they are (nearly) the whole message: review.
_MAYBE_WHOLE = frozenset(
    {
        "i dont want this",
        "i do not want this",
        "dont want this",
        "not interested",
        "im not interested",
        "leave me alone",
        "wrong number",
        "who is this stop",
        "no gracias no me interesa",
        "no me interesa",
        "numero equivocado",
        "dejame en paz",
        "dejenme en paz",
        "stop it",
        "stop this",
        "no more",
        "enough",
        "ya basta",
    }
)

#: Words right before a phrase that make it a question or a negation about it.
_DOUBT_BEFORE = frozenset(
    {"why", "didnt", "never", "if", "when", "not", "will", "wont", "ill", "gonna", "por", "porque"}
)
#: "stop texting *you/him*" is about someone else's texts, not a revocation.
_OTHER_PERSON = frozenset({"you", "u", "him", "her", "them", "ya", "people"})
#: Words right after a phrase that limit it in time ("don't text me before 9").
_LIMIT_AFTER = frozenset(
    {"before", "after", "until", "till", "til", "at", "on", "between", "during", "today",
     "tonight", "tomorrow", "antes", "despues", "hasta", "hoy", "manana"}
)  # fmt: skip

_TWILIO_TYPES: dict[str, ConsentKind] = {"STOP": "opt_out", "START": "opt_in", "HELP": "help"}


def _phrase_index(phrases: tuple[str, ...]) -> dict[str, tuple[tuple[str, ...], ...]]:
    index: dict[str, list[tuple[str, ...]]] = {}
    for phrase in phrases:
        words = tuple(phrase.split())
        index.setdefault(words[0], []).append(words)
    # Longest first, so "no me escriban mas" is reported rather than "no me escriban".
    return {k: tuple(sorted(v, key=len, reverse=True)) for k, v in index.items()}


_PHRASES = _phrase_index(_OPT_OUT_PHRASES)

# --- normalisation (linear: each regex is a single character class) -------------------

_APOSTROPHES = re.compile(r"['\u2019\u02bc`]")
_NON_WORD = re.compile(r"[^\w\s]+")
_SENTENCE_END = re.compile(r"[.!?;\n]+")


def fold(text: str) -> str:
    """Lower case, accents removed ('Arrêt' -> 'arret', 'más' -> 'mas'), apostrophes dropped."""
    if text.isascii():
        # Nothing to decompose or drop (the common case, on every inbound message).
        return _APOSTROPHES.sub("", text.lower())
    decomposed = unicodedata.normalize("NFKD", text.lower())
    kept = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _APOSTROPHES.sub("", kept)


def tokens(text: str) -> list[str]:
    """Folded words; punctuation, emoji and underscores separate words and are dropped."""
    return _NON_WORD.sub(" ", fold(text).replace("_", " ")).split()


def _strip_polite(words: list[str]) -> list[str]:
    start, end = 0, len(words)
    while start < end and words[start] in _POLITE:
        start += 1
    while end > start:
        if words[end - 1] in _POLITE:
            end -= 1
        elif end - start >= 2 and words[end - 2 : end] == ["thank", "you"]:
            end -= 2
        else:
            break
    return words[start:end]


# --- matching -----------------------------------------------------------------------------


def match_keyword(body: str, opt_out_type: str = "") -> tuple[ConsentKind, str] | None:
    """The consent class and the keyword or phrase matched (folded), or None for ordinary chat.

    Twilio's own verdict (``OptOutType``, sent when Advanced Opt-Out is on) wins.
    """
    twilio = _TWILIO_TYPES.get(opt_out_type.strip().upper())
    if twilio:
        return twilio, body[:MAX_SCAN_CHARS].strip() or opt_out_type.strip()  # as received
    scanned = body[:MAX_SCAN_CHARS]
    words = tokens(scanned)
    if not words:
        return None
    whole = " ".join(words)
    # 1. The whole message is a keyword (case, accents and punctuation aside).
    if whole in STRONG_OPT_OUT or whole in WEAK_OPT_OUT:
        return "opt_out", whole
    if whole in OPT_IN:
        return "opt_in", whole
    if whole in HELP:
        return "help", whole
    # 2. A strong keyword with politeness around it: "STOP PLEASE", "please stop".
    core = " ".join(_strip_polite(words))
    if core in STRONG_OPT_OUT:
        return "opt_out", core
    if core in WEAK_OPT_OUT:
        return "optout_maybe", core
    # 3. The first sentence is a strong keyword: "Stop. I found someone else."
    first = " ".join(_strip_polite(tokens(_SENTENCE_END.split(scanned.strip(), maxsplit=1)[0])))
    if first in STRONG_OPT_OUT and first != whole:
        return "opt_out", first
    # 4. A revocation phrase anywhere: "hi, please stop texting me, thanks".
    phrase = _find_phrase(words)
    if phrase is not None:
        return phrase
    if core in _MAYBE_WHOLE:
        return "optout_maybe", core
    return None


def _find_phrase(words: list[str]) -> tuple[ConsentKind, str] | None:
    n = len(words)
    for i, word in enumerate(words):
        for candidate in _PHRASES.get(word, ()):
            k = len(candidate)
            if i + k > n or tuple(words[i : i + k]) != candidate:
                continue
            text = " ".join(candidate)
            before = words[max(0, i - 3) : i]
            after = words[i + k] if i + k < n else ""
            if after in _OTHER_PERSON:
                continue
            if any(w in _DOUBT_BEFORE for w in before) or after in _LIMIT_AFTER:
                return "optout_maybe", text
            return "opt_out", text
    return None


def is_opt_out(body: str, opt_out_type: str = "") -> bool:
    found = match_keyword(body, opt_out_type)
    return found is not None and found[0] == "opt_out"


def consent_event_id(kind: Literal["optout", "optin"], message_sid: str) -> str:
    """The id of the contact.optout / contact.optin event for one inbound MessageSid.

    Ingest and the router both publish the opt-out of a STOP; deriving the id (and so
    the Nats-Msg-Id) from the MessageSid makes JetStream store it once. The string is
    the router's historical one, so events already in the stream keep their ids.
    """
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"replyline:router:{kind}:{message_sid}"))


def optout_event(inbound: InboundReceived, keyword: str) -> ContactOptout:
    """The contact.optout for an inbound STOP, built identically by ingest and the router
    (same id, so the same Nats-Msg-Id: JetStream keeps the first and drops the other)."""
    return ContactOptout(
        id=consent_event_id("optout", inbound.message_sid),
        thread=thread_of(inbound.from_number),
        number=inbound.from_number,
        keyword=keyword,
        message_sid=inbound.message_sid,
        received_at=inbound.received_at,
    )
