"""Send Invoices: each issued invoice to the customer's billing e-mail (PDF attached) and to the
accounting system, once (issue 16, I20-I29; docs/integrations.md, "Invoice delivery").

One delivery record per invoice and channel (``invoice_delivery``) says what happened; the
invoice itself is never touched (it is immutable), so a failed send loses nothing: the invoice
stays pending delivery and the next run tries again.

A send is three steps, each its own transaction or none (I24):

1. **claim**: the record goes to ``sending`` with the Message-ID the e-mail will carry, and is
   committed (a concurrent run finds it claimed: the UPDATE is conditional on the status it read,
   a new record is guarded by the unique key on invoice and channel);
2. **send**, outside any transaction;
3. **record** the outcome: ``sent`` (with the time), or ``failed`` with the error (retried by the
   next run), or, when the connection broke after the message was handed over, left
   ``sending`` with that reason.

A record still ``sending`` at the next run means the process died (or the connection broke)
between the SMTP server's acceptance and step 3: the e-mail may have gone out. E-mail is
**at-most-once**: the run does not send it again but reports it, with its Message-ID to look up
in the mail log; ``w365 invoice send N --resend`` sends it again when it did not arrive. The
accounting export is **at-least-once on the wire and exactly-once in effect**: its PUT is
idempotent by invoice number, so a ``sending`` export is simply sent again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Callable, ContextManager

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from w365.billing.invoicing import document
from w365.billing.subscriptions import get_tenant
from w365.core.money import as_currency
from w365.errors import NotFound, W365Error
from w365.integrations.accounting import AccountingSystem
from w365.integrations.mail import Mailer, MailUncertain, addresses, bad_address, invoice_message, one_line, sender_for
from w365.store.job_report import replace_exceptions
from w365.store.models import Customer, DeliveryChannel, DeliveryStatus, DocumentType, Invoice, InvoiceDelivery

log = logging.getLogger(__name__)

JOB = "send_invoices"
DEFAULT_LOOKBACK_DAYS = 30
Scope = Callable[[], ContextManager[Session]]


class NoBillingEmail(W365Error):
    """The invoice's customer has no (usable) billing e-mail address."""


@dataclass
class Outcome:
    invoice: str
    status: str  # sent, already_sent, in_progress, failed, uncertain
    detail: str = ""
    message_id: str | None = None


@dataclass
class DeliveryReport:
    channel: str
    considered: int = 0
    sent: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # invoice -> one line (job_exception)
    failed: dict[str, str] = field(default_factory=dict)  # the subset the other system refused or missed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _record(session: Session, invoice: Invoice, channel: DeliveryChannel) -> InvoiceDelivery | None:
    return session.scalar(select(InvoiceDelivery).where(InvoiceDelivery.invoice_id == invoice.id, InvoiceDelivery.channel == channel))


def _invoice(session: Session, number: str) -> Invoice:
    inv = session.scalar(select(Invoice).where(Invoice.number == number))
    if inv is None:
        raise NotFound(f"no invoice {number!r}")
    return inv


def _message_text(session: Session, inv: Invoice, customer: str, tenant: str) -> tuple[str, str]:
    """The e-mail's subject and body. A credit note says so (SPEC I6): its amount is credited and
    it names the invoice it corrects; nothing of it is due."""
    period = f"{inv.period_from} to {inv.period_to}"
    if inv.document == DocumentType.CREDIT_NOTE:
        corrects = session.scalar(select(Invoice.number).where(Invoice.id == inv.corrects_invoice_id)) if inv.corrects_invoice_id else None
        of = f", correcting invoice {corrects}" if corrects else ""
        return (f"Credit note {inv.number} from {tenant}",
                f"Dear {one_line(customer)},\n\nplease find attached credit note {inv.number} for {period}{of}: "
                f"{as_currency(-inv.total, inv.currency)} {inv.currency} credited to you.\n\n{tenant}\n")
    return (f"Invoice {inv.number} from {tenant}",
            f"Dear {one_line(customer)},\n\nplease find attached invoice {inv.number} for {period}: "
            f"{as_currency(inv.total, inv.currency)} {inv.currency}, due on {inv.due_date}.\n\n{tenant}\n")


def _claim(session: Session, inv: Invoice, channel: DeliveryChannel, recipient: str, message_id: str, now: datetime,
           resend: bool, retry_sending: bool) -> Outcome | None:
    """Step 1 (in the caller's transaction): the record goes to ``sending``. None if claimed;
    else why not (already sent, another run's send in progress, an interrupted e-mail)."""
    rec = _record(session, inv, channel)
    if rec is None:
        session.add(InvoiceDelivery(invoice_id=inv.id, channel=channel, status=DeliveryStatus.SENDING, recipient=recipient[:320],
                                    attempts=1, sends=0, message_id=message_id, updated_at=now))
        try:
            session.flush()  # the unique key (invoice, channel) is the claim
        except IntegrityError:
            raise _Contended() from None
        return None
    if rec.status == DeliveryStatus.SENT and not resend:
        when = rec.sent_at.date().isoformat() if rec.sent_at else "?"
        return Outcome(inv.number, "already_sent", f"sent on {when} to {rec.recipient} ({rec.message_id})", rec.message_id)
    if rec.status == DeliveryStatus.SENDING and not (resend or retry_sending):
        return Outcome(inv.number, "uncertain", (
            f"the send of {rec.updated_at:%Y-%m-%d %H:%M} UTC to {rec.recipient} was interrupted after it was handed to the mail "
            f"server ({rec.last_error or 'no outcome recorded'}); look up Message-ID {rec.message_id} in the mail log, and if it "
            f"did not arrive run `w365 invoice send {inv.number} --resend`"), rec.message_id)
    claimed = session.execute(
        update(InvoiceDelivery).where(InvoiceDelivery.id == rec.id, InvoiceDelivery.status == rec.status,
                                      InvoiceDelivery.attempts == rec.attempts)
        .values(status=DeliveryStatus.SENDING, attempts=rec.attempts + 1, recipient=recipient[:320], message_id=message_id,
                updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise _Contended()
    return None


class _Contended(Exception):
    """Another run claimed the same delivery first."""


def _finish(session: Session, inv_id: int, channel: DeliveryChannel, message_id: str, now: datetime, error: str | None,
            uncertain: bool = False, reference: str | None = None) -> None:
    """Step 3: the outcome of the send claimed with ``message_id`` (``reference``: the other
    system's id for it, kept as the record's message id)."""
    values: dict[str, Any] = {"updated_at": now, "last_error": error}
    if error is None:
        values.update(status=DeliveryStatus.SENT, sent_at=now, sends=InvoiceDelivery.sends + 1, message_id=reference or message_id)
    elif not uncertain:
        values.update(status=DeliveryStatus.FAILED)
    session.execute(
        update(InvoiceDelivery).where(InvoiceDelivery.invoice_id == inv_id, InvoiceDelivery.channel == channel,
                                      InvoiceDelivery.message_id == message_id)
        .values(**values).execution_options(synchronize_session=False)
    )


def email_invoice(scope: Scope, mailer: Mailer, number: str, *, now: datetime, resend: bool = False) -> Outcome:
    """E-mail one invoice with its PDF to the customer's billing address (claim, send, record).

    Raises :class:`NoBillingEmail` / ``NotFound`` before anything is claimed; a send that fails
    is recorded and returned as ``failed`` (or ``uncertain``), never raised."""
    with scope() as s:
        inv = _invoice(s, number)
        customer = s.get(Customer, inv.customer_id)
        name = customer.name if customer else "?"
        if customer is None or not customer.billing_email:
            raise NoBillingEmail(f"invoice {number}: customer {name!r} has no billing e-mail (set billing_email in customers.csv)")
        why = bad_address(customer.billing_email)
        if why:
            raise NoBillingEmail(f"invoice {number}: customer {name!r} billing e-mail is unusable: {why}")
        to = addresses(customer.billing_email)
        tenant = get_tenant(s).name
        pdf = document.render_pdf(s, number)
        sender = sender_for(mailer.conn, tenant)
        domain = sender.rsplit("@", 1)[-1].rstrip(">")
        subject, body = _message_text(s, inv, name, tenant)
        msg = invoice_message(sender=sender, to=to, subject=subject, pdf=pdf, filename=f"{number}.pdf", domain=domain, body=body)
        message_id = str(msg["Message-ID"])
        inv_id = inv.id
        try:
            refused = _claim(s, inv, DeliveryChannel.EMAIL, ", ".join(to), message_id, now, resend, retry_sending=False)
        except _Contended:
            s.rollback()
            return Outcome(number, "in_progress", "another run is sending it")
        if refused is not None:
            return refused
    try:
        mailer.send(msg)
    except MailUncertain as exc:
        with scope() as s:
            _finish(s, inv_id, DeliveryChannel.EMAIL, message_id, now, str(exc), uncertain=True)
        return Outcome(number, "uncertain", str(exc), message_id)
    except W365Error as exc:
        with scope() as s:
            _finish(s, inv_id, DeliveryChannel.EMAIL, message_id, now, str(exc))
        return Outcome(number, "failed", str(exc), message_id)
    with scope() as s:
        _finish(s, inv_id, DeliveryChannel.EMAIL, message_id, now, None)
    log.info("invoice %s e-mailed to %s (%s)", number, ", ".join(to), message_id)
    return Outcome(number, "sent", f"sent to {', '.join(to)}", message_id)


def export_invoice(scope: Scope, system: AccountingSystem, number: str, *, now: datetime, resend: bool = False) -> Outcome:
    """Export one invoice to the accounting system (claim, send, record). A ``sending`` record
    left by a crash is exported again: the export is idempotent by invoice number."""
    ref = f"<{number}@accounting>"
    with scope() as s:
        inv = _invoice(s, number)
        inv_id = inv.id
        doc = system.document(s, number)
        try:
            refused = _claim(s, inv, DeliveryChannel.ACCOUNTING, system.name, ref, now, resend, retry_sending=True)
        except _Contended:
            s.rollback()
            return Outcome(number, "in_progress", "another run is exporting it")
        if refused is not None:
            return refused
    try:
        reference = system.export_invoice(doc)
    except W365Error as exc:
        with scope() as s:
            _finish(s, inv_id, DeliveryChannel.ACCOUNTING, ref, now, str(exc))
        return Outcome(number, "failed", str(exc), ref)
    with scope() as s:
        _finish(s, inv_id, DeliveryChannel.ACCOUNTING, ref, now, None, reference=reference)
    return Outcome(number, "sent", f"exported to {system.name}: {reference}", reference)


def pending(session: Session, channel: DeliveryChannel, as_of: date, lookback_days: int) -> list[str]:
    """Numbers of the invoices issued in ``[as_of - lookback_days, as_of]`` not yet delivered on
    ``channel`` (no record, or a failed one; an interrupted e-mail is listed too, to be
    reported), oldest first."""
    done = exists().where(InvoiceDelivery.invoice_id == Invoice.id, InvoiceDelivery.channel == channel,
                          InvoiceDelivery.status == DeliveryStatus.SENT)
    q = (select(Invoice.number).where(Invoice.issue_date <= as_of, Invoice.issue_date >= as_of - timedelta(days=lookback_days), ~done)
         .order_by(Invoice.sequence))
    return list(session.scalars(q))


def deliver_pending(scope: Scope, channel: DeliveryChannel, send: Callable[[str], Outcome], as_of: date,
                    lookback_days: int = DEFAULT_LOOKBACK_DAYS) -> DeliveryReport:
    """One channel's run: every pending invoice once, each its own units of work; problems
    reported (``job_exception``, replaced per run and date: a rerun reports the same list)."""
    report = DeliveryReport(channel.value)
    with scope() as s:
        numbers = pending(s, channel, as_of, lookback_days)
    report.considered = len(numbers)
    for number in numbers:
        try:
            out = send(number)
        except W365Error as exc:  # no billing e-mail, an unusable address, a missing sender: one line
            report.problems[number] = str(exc)
            continue
        if out.status == "sent":
            report.sent.append(number)
        elif out.status in ("failed", "uncertain"):
            note = "retried next run" if out.status == "failed" else "not sent again automatically"
            report.problems[number] = f"{out.detail} ({note})"
            report.failed[number] = out.detail
        elif out.status == "in_progress":
            report.problems[number] = out.detail
    with scope() as s:
        replace_exceptions(s, JOB, as_of, f"invoice_{channel.value}", report.problems)
    for key, reason in report.problems.items():
        log.warning("%s (%s): %s: %s", JOB, channel.value, key, reason)
    log.info("%s (%s): %d pending, %d sent, %d problem(s)", JOB, channel.value, report.considered, len(report.sent), len(report.problems))
    return report
