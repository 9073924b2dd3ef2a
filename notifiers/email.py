"""E-mail over SMTP (``aiosmtplib``), for alerts: the on-call team's inbox.

STARTTLS (the default), implicit TLS or none (a relay on this machine); a username and password if the server
asks for them. The text is signoff's own (rule, numbers, times); nothing an agent wrote goes into a header.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from enum import StrEnum

from signoff.notifiers.base import DeliveryFailed, DeliveryRefused


class SmtpSecurity(StrEnum):
    STARTTLS = "starttls"  #: connect in plain text, then upgrade with STARTTLS (port 587); refuse if not offered
    TLS = "tls"  #: TLS from the first byte (port 465)
    NONE = "none"  #: no encryption: only for a relay on this machine or a trusted network


@dataclass(frozen=True, kw_only=True, slots=True)
class SmtpSettings:
    host: str  #: SIGNOFF_SMTP_HOST
    port: int = 587  #: SIGNOFF_SMTP_PORT
    security: SmtpSecurity = SmtpSecurity.STARTTLS  #: SIGNOFF_SMTP_SECURITY
    username: str | None = None  #: SIGNOFF_SMTP_USERNAME
    password: str | None = field(default=None, repr=False)  #: SIGNOFF_SMTP_PASSWORD
    sender: str = "signoff@localhost"  #: SIGNOFF_ALERT_EMAIL_FROM
    recipients: tuple[str, ...] = ()  #: SIGNOFF_ALERT_EMAIL_TO, comma-separated
    timeout: float = 30.0
    tls_context: ssl.SSLContext | None = None  #: tests give one that trusts their own certificate


class EmailSender:
    name = "email"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def compose(self, subject: str, body: str) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = " ".join(subject.split())  # one line: a header cannot carry a line break
        message["From"] = self.settings.sender
        message["To"] = ", ".join(self.settings.recipients)
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(domain="signoff")
        message.set_content(body)
        return message

    async def send(self, subject: str, body: str) -> None:
        """Send one e-mail; ``DeliveryFailed`` to retry (server unreachable, 4xx), ``DeliveryRefused`` when the
        server refused it for good (5xx: a bad address, authentication failed)."""
        import aiosmtplib  # here: the settings above are read by every command, the SMTP client only by senders

        s = self.settings
        try:
            await aiosmtplib.send(
                self.compose(subject, body),
                hostname=s.host,
                port=s.port,
                username=s.username,
                password=s.password,
                use_tls=s.security is SmtpSecurity.TLS,
                start_tls=True if s.security is SmtpSecurity.STARTTLS else False,
                tls_context=s.tls_context,
                timeout=s.timeout,
            )
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise DeliveryRefused(f"the SMTP server refused the e-mail: {exc.code} {exc.message}") from exc
            raise DeliveryFailed(f"the SMTP server answered {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryFailed(f"the SMTP server {s.host}:{s.port} could not be reached: {exc}") from exc
