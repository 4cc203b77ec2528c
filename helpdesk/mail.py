"""Outgoing e-mail through `SMTP_URL` (smtp://user:pass@host:port, or smtps:// for TLS from the
first byte). Unset, nothing is sent: whoever made the link shows it instead."""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from flask import current_app

log = logging.getLogger(__name__)

DEFAULT_SENDER = "helpdesk@localhost"
TIMEOUT_SECONDS = 10


def enabled() -> bool:
    return bool(current_app.config.get("SMTP_URL"))


def send_mail(to: str, subject: str, body: str) -> bool:
    """Send one plain-text message; True when the server took it. A server that cannot be
    reached is logged, not raised: the link was already shown to whoever asked for it."""
    url = current_app.config.get("SMTP_URL")
    if not url:
        return False
    message = EmailMessage()
    message["From"] = current_app.config.get("MAIL_FROM") or DEFAULT_SENDER
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    parts = urlsplit(url)
    client = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
    try:
        with client(
            parts.hostname or "localhost", parts.port or 0, timeout=TIMEOUT_SECONDS
        ) as smtp:
            if parts.username:
                if parts.scheme != "smtps":
                    smtp.starttls()
                smtp.login(unquote(parts.username), unquote(parts.password or ""))
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("mail to %s not sent: %s", to, exc)
        return False
    return True
