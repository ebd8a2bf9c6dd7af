"""send_email steps: templates from files, delivery by SMTP (aiosmtplib) or to the log."""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import getaddresses, make_msgid, parseaddr
from pathlib import Path
from typing import Any

import aiosmtplib
import msgspec
import structlog
import yaml

from .settings import SchedulerSettings

log = structlog.get_logger("emailer")

#: A plain ASCII address: what a send_email step may mail (one recipient, no tricks).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_LABEL}(?:\.{_LABEL})+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class EmailTemplate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    subject: str
    body: str


class EmailError(Exception):
    """A send that will not succeed by retrying (no template, bad address)."""


class Emailer:
    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings
        self.templates_dir = Path(settings.email_templates_dir)

    def template(self, name: str) -> EmailTemplate:
        path = self.templates_dir / f"{name}.yaml"
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            return msgspec.convert(data, EmailTemplate)
        except OSError as err:
            raise EmailError(f"email template {name!r} not found in {self.templates_dir}") from err
        except (yaml.YAMLError, msgspec.ValidationError) as err:
            raise EmailError(f"email template {path}: {err}") from err

    async def send(self, *, to: str, subject: str, body: str, message_key: str) -> dict[str, Any]:
        """Deliver one email; returns what to record. Raises aiosmtplib errors when SMTP fails."""
        to = single_address(to)
        subject = header_text(subject)
        message = EmailMessage()
        try:
            message["From"] = self.settings.smtp_from
            message["To"] = to
            message["Subject"] = subject
            # A stable Message-ID lets receiving systems drop a resend after a crash.
            message["Message-ID"] = make_msgid(idstring=message_key.replace(":", "."))
            message.set_content(body)
        except (ValueError, TypeError) as err:
            raise EmailError(f"cannot build the email: {err}") from None
        s = self.settings
        if not s.smtp_host:
            log.info("email_logged", to=to, subject=subject, body=body)
            return {"transport": "log", "to": to, "subject": subject}
        errors, response = await aiosmtplib.send(
            message,
            recipients=[to],  # the envelope names the one checked address, whatever the headers say
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username or None,
            password=s.smtp_password or None,
            start_tls=s.smtp_starttls,
            use_tls=s.smtp_use_tls,
            timeout=s.smtp_timeout_s,
        )
        if errors:
            raise EmailError(f"recipient refused: {errors}")
        return {
            "transport": "smtp",
            "to": to,
            "subject": subject,
            "response": response,
            "message_id": message["Message-ID"],
        }


def single_address(value: str) -> str:
    """``value`` as exactly one plain address, or :class:`EmailError`.

    A lead's email field is untrusted: ``a@x.com, b@y.com`` would mail both, and
    CR/LF would forge headers. Only one ASCII address (bare or ``Name <addr>``)
    is accepted; the address alone is used.
    """
    candidate = value.strip()
    if not candidate or any(c in candidate for c in ",;\r\n") or _CONTROL.search(candidate):
        raise EmailError(f"not exactly one valid email address ({value!r})")
    pairs = getaddresses([candidate])
    _, address = parseaddr(candidate)
    written_as = address == candidate or candidate.endswith(f"<{address}>")  # bare or Name <addr>
    if len(pairs) != 1 or pairs[0][1] != address or not written_as:
        raise EmailError(f"not exactly one valid email address ({value!r})")
    if not _ADDRESS.fullmatch(address) or len(address) > 254:
        raise EmailError(f"not exactly one valid email address ({value!r})")
    return address


def header_text(value: str) -> str:
    """A header value without CR/LF or other control characters (a newline would end the header)."""
    return " ".join(_CONTROL.sub(" ", value).split())
