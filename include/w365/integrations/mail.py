"""E-mail out through the Airflow SMTP connection ``w365_smtp`` (issue 16, I23).

The connection (``AIRFLOW_CONN_W365_SMTP=smtp://user:password@mail.example:587``, read through
``w365.connections``) gives host, port and credentials; its extras:

* ``from_email``: the sender (else ``[w365] invoice_from``);
* ``ssl``: ``true`` for SMTPS (port 465); otherwise STARTTLS is used whenever the server offers
  it, unless ``disable_tls`` is ``true`` (a loopback relay);
* ``timeout`` (seconds, 30), ``max_retries`` (2) and ``backoff_base`` (seconds, 2).

What a failure means decides what happens next, so :meth:`Mailer.send` tells three apart:

* the server refused before taking the message (a 4xx reply, no connection, a timeout before
  DATA): :class:`MailUnavailable`, retried here (``max_retries``, backoff ``backoff_base * 2**n``:
  the one retry layer for SMTP) and, if it persists, by the next run;
* the server refused for good (a 5xx reply: unknown mailbox, message rejected):
  :class:`MailRefused`, not retried until someone fixes the address;
* the connection broke after the message was handed over (during DATA) without a reply:
  :class:`MailUncertain`. It may have been delivered; it is not retried (at-most-once, I24).
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
import time
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from w365 import config
from w365.core import limits
from w365.connections import ConnectionInfo, get_connection
from w365.errors import ExternalError, W365Error
from w365.integrations.http import setting_number

log = logging.getLogger(__name__)

SMTP = "w365_smtp"


class MailUnavailable(ExternalError):
    """Not delivered, worth another try (4xx, no connection)."""


class MailRefused(ExternalError):
    """Not delivered, refused for good (5xx): fix the address or the message."""


class MailUncertain(ExternalError):
    """Handed to the server, but no answer came: it may have been delivered."""


def addresses(value: str | None) -> list[str]:
    """The addresses in a billing e-mail field (comma- or semicolon-separated); [] if none."""
    return [a.strip() for a in re.split(r"[,;]", value or "") if a.strip()]


def bad_address(value: str) -> str | None:
    """Why ``value`` is not a usable list of addresses (``core.limits.email_addresses``), or None."""
    try:
        limits.email_addresses(value, "")
    except limits.BadValue as exc:
        return str(exc)
    return None


def one_line(text: str) -> str:
    """Header text on one line: CR, LF and runs of whitespace become one space."""
    return re.sub(r"\s+", " ", text).strip()


def invoice_message(*, sender: str, to: list[str], subject: str, body: str, pdf: bytes, filename: str, domain: str) -> EmailMessage:
    """A text e-mail with the invoice PDF attached (application/pdf) and a fresh Message-ID."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = one_line(subject)
    msg["Message-ID"] = make_msgid("invoice", domain=domain)
    msg.set_content(body)
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=filename)
    return msg


def sender_for(conn: ConnectionInfo, display_name: str | None = None) -> str:
    sender = conn.extra.get("from_email") or config.setting("invoice_from")
    if not sender or bad_address(str(sender)):
        raise W365Error(f"connection {conn.conn_id!r}: set extra from_email (or [w365] invoice_from) to the invoices' sender address")
    return formataddr((one_line(display_name), str(sender))) if display_name else str(sender)


def _true(value: object) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes")


class Mailer:
    """Sends through one SMTP connection; a new SMTP session per message (a daily batch is small)."""

    def __init__(self, conn: ConnectionInfo, *, sleep: Callable[[float], None] = time.sleep):
        if not conn.host:
            raise W365Error(f"connection {conn.conn_id!r} has no host")
        self.conn = conn
        self.sleep = sleep
        self.timeout = setting_number(conn.extra, "timeout", 30.0)
        self.max_retries = int(setting_number(conn.extra, "max_retries", 2))
        self.backoff_base = setting_number(conn.extra, "backoff_base", 2.0)

    def __repr__(self) -> str:
        return f"Mailer({self.conn.host!r}, port={self.conn.port!r})"

    @classmethod
    def from_connection(cls, conn_id: str = SMTP, **kwargs: object) -> "Mailer":
        return cls(get_connection(conn_id), **kwargs)  # type: ignore[arg-type]

    def send(self, msg: EmailMessage) -> None:
        """Deliver ``msg`` to its To addresses, retrying :class:`MailUnavailable` only."""

        def wait(state: RetryCallState) -> float:
            return self.backoff_base * 2 ** (state.attempt_number - 1)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("SMTP %s: %s; retry %d/%d", self.conn.host, exc, state.attempt_number, self.max_retries)

        retrying = Retrying(retry=retry_if_exception_type(MailUnavailable), stop=stop_after_attempt(self.max_retries + 1), wait=wait,
                            sleep=self.sleep, before_sleep=before_sleep, reraise=True)
        for attempt in retrying:
            with attempt:
                self._once(msg)

    def _connect(self) -> smtplib.SMTP:
        host, port = str(self.conn.host), self.conn.port
        if _true(self.conn.extra.get("ssl")):
            return smtplib.SMTP_SSL(host, port or 465, timeout=self.timeout, context=ssl.create_default_context())
        smtp = smtplib.SMTP(host, port or 25, timeout=self.timeout)
        smtp.ehlo()
        if smtp.has_extn("starttls") and not _true(self.conn.extra.get("disable_tls")):
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        return smtp

    def _once(self, msg: EmailMessage) -> None:
        to = addresses(str(msg["To"]))
        where = f"SMTP {self.conn.host}:{self.conn.port or ''}"
        try:
            smtp = self._connect()
        except (OSError, smtplib.SMTPException) as exc:
            raise MailUnavailable(f"{where}: cannot connect ({type(exc).__name__}: {exc})") from None
        try:
            if self.conn.login:
                smtp.login(self.conn.login, self.conn.password or "")
            code, reply = smtp.mail(str(msg["From"]).rsplit("<", 1)[-1].rstrip(">"))
            if code != 250:
                raise _refusal(where, "MAIL FROM", code, reply)
            refused = {}
            for rcpt in to:
                code, reply = smtp.rcpt(rcpt)
                if code not in (250, 251):
                    refused[rcpt] = (code, reply)
            if refused:
                code, reply = max(refused.values())
                raise _refusal(where, "RCPT TO " + ", ".join(refused), code, reply)
        except smtplib.SMTPResponseException as exc:
            _quit(smtp)
            raise _refusal(where, "session", exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            _quit(smtp)
            raise MailUnavailable(f"{where}: {type(exc).__name__}: {exc}") from None
        except ExternalError:
            _quit(smtp)
            raise
        try:
            code, reply = smtp.data(msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))  # SMTP's CRLF lines
        except smtplib.SMTPResponseException as exc:  # an answer: the server did not take it
            _quit(smtp)
            raise _refusal(where, "DATA", exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException, socket.timeout) as exc:
            _quit(smtp)
            raise MailUncertain(f"{where}: the connection broke after the message was sent, before the server answered "
                                f"({type(exc).__name__}); it may have been delivered") from None
        _quit(smtp)
        if code != 250:
            raise _refusal(where, "DATA", code, reply)
        log.info("%s accepted %s for %s", where, msg["Message-ID"], ", ".join(to))


def _refusal(where: str, step: str, code: int, reply: bytes | str) -> ExternalError:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    message = f"{where}: {step} refused: {code} {one_line(text)[:200]}"
    return MailUnavailable(message) if 400 <= code < 500 else MailRefused(message)


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()
