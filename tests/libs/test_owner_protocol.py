"""The owner's SMS command grammar (issue 11 item 2): one table of replies and readings.

A reply is either one unambiguous Command or Unclear (the owner gets a clarifying
SMS). Above all, a reply that contains a number which is not a cleanly separated
ref is never read as a bare reply: a bare YES approves whichever single draft is
pending, so "YES1000" must not approve some other draft.
"""

from __future__ import annotations

import pytest

from libs.owner_protocol import (
    KEYWORDS,
    SMS_MAX_CHARS,
    Command,
    Unclear,
    approval_prompt,
    decision_of,
    fits_sms,
    parse_owner_command,
)

A, R, E = "approve", "reject", "edit"

#: (reply, expected): expected is (kind, ref, text, notes) or None for Unclear.
ACCEPTED: list[tuple[str, tuple[str, str | None, str | None, str]]] = [
    ("YES #1000", (A, "1000", None, "")),
    ("yes 1000", (A, "1000", None, "")),
    ("Yes, 1000", (A, "1000", None, "")),
    ("Yes, 1000.", (A, "1000", None, "")),
    ("Y 1000", (A, "1000", None, "")),
    ("APPROVE 1000", (A, "1000", None, "")),
    ("ok 123456", (A, "123456", None, "")),
    ("Sí 1000", (A, "1000", None, "")),
    ("\uff39\uff25\uff33\u3000\uff11\uff10\uff10\uff10", (A, "1000", None, "")),  # full-width
    ("1000 YES", (A, "1000", None, "")),
    ("#1000 no", (R, "1000", None, "")),
    ("YES 1000 looks good", (A, "1000", None, "looks good")),
    ("NO 1000 I will call them", (R, "1000", None, "I will call them")),
    ("NO #1000", (R, "1000", None, "")),
    ("REJECT 1000", (R, "1000", None, "")),
    ("EDIT 1000 new text", (E, "1000", "new text", "")),
    ("EDIT #1000: new text", (E, "1000", "new text", "")),
    ("edit 1000 It's $129 flat.\nTomorrow at 9am?", (E, "1000", "It's $129 flat.\nTomorrow at 9am?", "")),
    ("EDIT $129 flat, see you at 9", (E, None, "$129 flat, see you at 9", "")),
    ("YES", (A, None, None, "")),
    ("yes!", (A, None, None, "")),
    ("NO", (R, None, None, "")),
    ("  no.  ", (R, None, None, "")),
    ("YES looks good", (A, None, None, "looks good")),
]

UNCLEAR = [
    # A ref glued to the keyword, or spelled in a way that does not resolve cleanly.
    "YES1000",
    "YES#1000",
    "1000YES",
    "Y1000",
    "YES 1,000",
    "NO1000",
    "EDIT1000 new text",
    "YES 10000000",
    "YES 100",
    "YES 1000 1001",
    "YES 1000, 1001",
    "YES 1000 at 5pm",
    "NO 1000x",
    "YES # 1000",
    "YES\u200b1000",  # a zero-width space is not a separator
    "YES ①",
    "EDIT 1,000 new text",
    "EDIT #1000new text",
    "EDIT 1000",
    "EDIT",
    "1000",
    "#1000",
    "1000 EDIT new text",
    # The console commands: a ref where one is needed, clean, never guessed.
    "SEND",
    "SEND 1000",  # no text
    "SEND hello there",  # no ref: never "the only pending one"
    "SEND 1,000 hello",
    "SEND #10o0 hello",
    "SEND1000 hello",
    "1000 SEND hello",
    "PAUSE",
    "RESUME please",
    "RESUME 1000 1001",
    "LIST 1000",
    "1000 LIST",
    "HELP 1000",
    "? 1000",
    "what?",
    "",
    "   ",
]


@pytest.mark.parametrize(("reply", "expected"), ACCEPTED)
def test_unambiguous_replies_are_read(reply: str, expected: tuple[str, str | None, str | None, str]) -> None:
    parsed = parse_owner_command(reply)
    assert isinstance(parsed, Command), parsed
    assert (parsed.kind, parsed.ref, parsed.text, parsed.notes) == expected


@pytest.mark.parametrize("reply", UNCLEAR)
def test_anything_else_is_unclear_never_a_bare_reply(reply: str) -> None:
    parsed = parse_owner_command(reply)
    assert isinstance(parsed, Unclear), parsed
    assert parsed.reason
    action, ref, text, notes = decision_of(parsed)
    assert (action, ref, notes) == ("unclear", None, parsed.reason)
    assert text == parsed.text


CONSOLE = [
    ("SEND 1000 Sorry, I can come at 3pm", ("send", "1000", "Sorry, I can come at 3pm", "")),
    ("  send   #1000:   on my way  ", ("send", "1000", "on my way", "")),
    ("Reply 1000 $129 flat, 2 hours", ("send", "1000", "$129 flat, 2 hours", "")),
    ("SEND 1000 YES", ("send", "1000", "YES", "")),  # the text is the lead's, never a command
    ("pause 1000", ("pause", "1000", None, "")),
    ("RESUME #1000.", ("resume", "1000", None, "")),
    ("LIST", ("list", None, None, "")),
    ("list.", ("list", None, None, "")),
    ("?", ("list", None, None, "")),
    (" ? ", ("list", None, None, "")),
    ("help", ("help", None, None, "")),
]


@pytest.mark.parametrize(("reply", "expected"), CONSOLE)
def test_console_commands_are_read(reply: str, expected: tuple[str, str | None, str | None, str]) -> None:
    parsed = parse_owner_command(reply)
    assert isinstance(parsed, Command), parsed
    assert (parsed.kind, parsed.ref, parsed.text, parsed.notes) == expected


def test_send_is_not_an_approve_word() -> None:
    assert KEYWORDS["SEND"].kind == "send" and KEYWORDS["SEND"].ref == "required"


def test_prompt_carries_the_whole_draft_verbatim() -> None:
    body = "Line one.\nLine two,   spaced. " + "x" * 900
    prompt = approval_prompt("1000", "+15551234567", body)
    assert f'"{body}"' in prompt
    assert fits_sms("1000", "+15551234567", body)
    assert not fits_sms("1000", "+15551234567", "y" * SMS_MAX_CHARS)
