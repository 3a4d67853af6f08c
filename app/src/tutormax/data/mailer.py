"""Outgoing email over SMTP (score-drop notifications)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage

from tutormax.settings import Settings


class Mailer:
    """Sends plain-text mail through the configured SMTP server."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def _send(self, to: str, subject: str, body: str) -> None:
        s = self._settings
        message = EmailMessage()
        message["From"] = s.smtp_from
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout) as smtp:
            if s.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_user and s.smtp_password is not None:
                smtp.login(s.smtp_user, s.smtp_password.get_secret_value())
            smtp.send_message(message)

    async def send(self, to: str, subject: str, body: str) -> None:
        """Send one message; raises smtplib.SMTPException or OSError on failure."""
        await asyncio.to_thread(self._send, to, subject, body)
