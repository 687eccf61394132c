"""Alerts that are sent once: threshold violations, changes awaiting manual provisioning.

Sending goes through an Airflow notifier. Which one is configuration, ``[w365] notifier``
(``AIRFLOW__W365__NOTIFIER``):

* ``smtp`` (default): Airflow's ``SmtpNotifier`` (``apache-airflow-providers-smtp``) with the
  SMTP connection ``[w365] smtp_conn_id`` (default: Airflow's ``[email] email_conn_id``, i.e.
  ``smtp_default``) and sender ``[w365] alert_from`` (default: the connection's from_email);
* ``log``: writes the alert to the task log only (development, demos);
* ``package.module:attribute``: your own; the attribute is a notifier instance, or a callable
  returning one. A notifier is either an Airflow ``BaseNotifier`` (its ``notify(context)`` gets a
  context with ``w365_alert``, ``subject``, ``body`` and ``to``) or any object with
  ``send(alert)``.

Recipients: ``[w365] alert_email`` (comma-separated) for billing operations; manual-provisioning
alerts go to the provider's ``alert_email`` first.

Once only (the ``alert_sent`` table, unique on ``(kind, dedup_key)``): :func:`send_once` claims
the key by inserting the ``AlertSent`` row (flushed, so a concurrent run blocks on the unique
index), sends, and commits the row in the same transaction. If sending raises, the transaction
is rolled back, no row stays, and the next run tries again; a run that finds the row does not
send. The one gap is a crash between a successful send and the commit: the alert may then be
sent twice, never zero times (at-least-once).
"""

from __future__ import annotations

import html
import importlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from w365 import config
from w365.config import import_airflow
from w365.store.models import AlertSent
from w365.errors import W365Error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    kind: str  # e.g. usage_threshold, manual_provisioning
    dedup_key: str  # unique per kind: the alert is sent once for it
    to: tuple[str, ...]
    subject: str
    body: str
    data: dict[str, Any] = field(default_factory=dict)


class Notifier(Protocol):
    def send(self, alert: Alert) -> None: ...


def setting(key: str, default: str | None = None) -> str | None:
    """A ``[w365]`` option (``AIRFLOW__W365__<KEY>``, else Airflow's configuration)."""
    return config.setting(key, default)


def recipients(*candidates: str | None) -> tuple[str, ...]:
    """The first non-empty candidate, else ``[w365] alert_email``; split on commas."""
    for value in (*candidates, setting("alert_email")):
        if value and value.strip():
            return tuple(v.strip() for v in value.split(",") if v.strip())
    return ()


class LogNotifier:
    def send(self, alert: Alert) -> None:
        log.warning("ALERT to %s: %s\n%s", ", ".join(alert.to), alert.subject, alert.body)


class SmtpNotifierAdapter:
    """Sends through Airflow's SmtpNotifier, one message per alert."""

    def __init__(self, smtp_conn_id: str | None = None, from_email: str | None = None):
        self.smtp_conn_id = smtp_conn_id or setting("smtp_conn_id")
        self.from_email = from_email or setting("alert_from")

    def build(self, alert: Alert) -> Any:
        SmtpNotifier = import_airflow("airflow.providers.smtp.notifications.smtp").SmtpNotifier  # noqa: N806

        return SmtpNotifier(
            to=list(alert.to),
            from_email=self.from_email,
            subject=alert.subject,
            html_content="<pre>" + html.escape(alert.body) + "</pre>",
            smtp_conn_id=self.smtp_conn_id,
        )

    def send(self, alert: Alert) -> None:
        # notify() directly: the text is final, it must not be rendered as a Jinja template.
        self.build(alert).notify({"w365_alert": alert})


class AirflowNotifierAdapter:
    """Any Airflow BaseNotifier: its ``notify(context)`` gets the alert in the context."""

    def __init__(self, notifier: Any):
        self.notifier = notifier

    def send(self, alert: Alert) -> None:
        self.notifier.notify({"w365_alert": alert, "subject": alert.subject, "body": alert.body, "to": list(alert.to)})


def get_notifier(name: str | None = None) -> Notifier:
    """The configured notifier (see the module docstring)."""
    choice = (name or setting("notifier") or "smtp").strip()
    if choice == "smtp":
        return SmtpNotifierAdapter()
    if choice == "log":
        return LogNotifier()
    if ":" not in choice:
        raise W365Error(f"[w365] notifier {choice!r}: use smtp, log, or package.module:attribute")
    module, _, attr = choice.partition(":")
    try:
        target: Any = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise W365Error(f"[w365] notifier {choice!r} cannot be loaded: {exc}") from None
    if isinstance(target, type) or (callable(target) and not hasattr(target, "send") and not hasattr(target, "notify")):
        target = target()
    if hasattr(target, "send"):
        return target  # type: ignore[no-any-return]
    if hasattr(target, "notify"):
        return AirflowNotifierAdapter(target)
    raise W365Error(f"[w365] notifier {choice!r} has neither send(alert) nor notify(context)")


def already_sent(session: Session, kind: str, keys: list[str]) -> set[str]:
    sent: set[str] = set()
    for i in range(0, len(keys), 1000):
        chunk = keys[i : i + 1000]
        sent.update(session.scalars(select(AlertSent.dedup_key).where(AlertSent.kind == kind, AlertSent.dedup_key.in_(chunk))))
    return sent


def send_once(session: Session, notifier: Notifier, alert: Alert, *, now: datetime) -> bool:
    """Claim, send, record (see the module docstring). True if sent now, False if it had been.

    The caller commits (its ``session_scope``); if ``notifier.send`` raises, the exception
    propagates and the caller's transaction, with the claim, is rolled back.
    """
    if session.scalar(select(AlertSent.id).where(AlertSent.kind == alert.kind, AlertSent.dedup_key == alert.dedup_key)):
        return False
    if not alert.to:
        raise W365Error(f"alert {alert.kind} {alert.dedup_key}: no recipient (set [w365] alert_email)")
    session.add(AlertSent(
        kind=alert.kind, dedup_key=alert.dedup_key, recipient=", ".join(alert.to)[:200], subject=alert.subject[:300],
        body=alert.body, sent_at=now,
    ))
    session.flush()  # the unique key is the claim: a concurrent run waits here, then finds it
    notifier.send(alert)
    log.info("alert %s %s sent to %s", alert.kind, alert.dedup_key, ", ".join(alert.to))
    return True


def deliver(
    alerts: list[Alert],
    *,
    notifier: Notifier,
    now: datetime,
    session_scope: Callable[[], Any],
) -> dict[str, Any]:
    """Send each alert once, one transaction per alert; a failure is reported and the rest go on."""
    sent: list[str] = []
    skipped = 0
    failed: dict[str, str] = {}
    for alert in alerts:
        try:
            with session_scope() as s:
                if send_once(s, notifier, alert, now=now):
                    sent.append(alert.dedup_key)
                else:
                    skipped += 1
        except Exception as exc:  # noqa: BLE001 - any notifier error: not recorded, retried next run
            reason = f"{type(exc).__name__}: {exc}"
            log.error("alert %s %s not sent: %s", alert.kind, alert.dedup_key, reason)
            failed[alert.dedup_key] = reason
    return {"sent": sent, "already_sent": skipped, "failed": failed}
