"""send_email steps: templates from files, delivery by SMTP (aiosmtplib) or to the log."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import msgspec
import structlog
import yaml

from .settings import SchedulerSettings

log = structlog.get_logger("emailer")


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
        if "@" not in to:
            raise EmailError(f"no usable email address ({to!r})")
        message = EmailMessage()
        message["From"] = self.settings.smtp_from
        message["To"] = to
        message["Subject"] = subject
        # A stable Message-ID lets receiving systems drop a resend after a crash.
        message["Message-ID"] = make_msgid(idstring=message_key.replace(":", "."))
        message.set_content(body)
        s = self.settings
        if not s.smtp_host:
            log.info("email_logged", to=to, subject=subject, body=body)
            return {"transport": "log", "to": to, "subject": subject}
        errors, response = await aiosmtplib.send(
            message,
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
