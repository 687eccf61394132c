"""Update Payment Status of Invoice from Accounting System (SPEC P2).

The accounting system knows what was paid; w365 knows what was invoiced. This job pulls payment
status by invoice number and sets each invoice's ``payment_status``, ``amount_paid`` and
``paid_on`` (set, not added: a rerun changes nothing).

Sources (adapters), chosen by ``path`` (a job param) or the Connection ``w365_accounting``:

* **file**: a CSV with a header ``invoice_number,status,amount_paid,paid_on`` (a path to the file,
  or to a folder holding ``payments.csv``); a Connection of type ``fs``/``file`` or with
  ``extra.path`` points at it;
* **REST**: ``GET {base_url}/payments?as_of=YYYY-MM-DD`` returning ``{"items": [...]}`` (paged by
  ``continuationToken`` / ``links.next`` like every w365 HTTP client), items with
  ``invoice_number`` (or ``invoiceNumber``), ``status``, ``amount_paid`` (``amountPaid``) and
  ``paid_on`` (``paidOn``). Base URL and credentials from the Connection (password = bearer
  token, or ``extra.token_url`` for OAuth2 client credentials), with the same timeout, retries and
  ``Retry-After`` handling as the provider client. Put a thin shim in front of an accounting
  package whose API has another shape. This is the same system, client and connection that the
  Send Invoices job exports invoices to (``w365.integrations.accounting.RestAccounting``).

Rules: ``status`` is paid, partially_paid (also "partially paid", "partial") or unpaid; when it is
missing it follows the amount (0 unpaid, less than the total partially paid, else paid). A paid
invoice without an amount is paid in full; a paid or partially paid one without a date is paid on
the run date. Amounts are Decimal with at most the currency's minor unit (SPEC M1, M2).
Reported (``job_exception`` and the report), never lost: unknown invoice numbers, malformed
records, over-payments (recorded as paid with the amount received, and reported) and statuses
that contradict the amount (recorded as given, and reported).
"""

from __future__ import annotations

import abc
import csv
import logging
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Iterator

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from w365.core import limits
from w365.connections import ACCOUNTING, ConnectionInfo, get_connection
from w365.store.models import Invoice, PaymentStatus
from w365.errors import W365Error
from w365.integrations.accounting import RestAccounting
from w365.store.job_report import replace_exceptions
from w365.core.money import D, MoneyError, check_places, minor_units, round_money

log = logging.getLogger(__name__)

JOB = "update_payment_status"
STATUS_ALIASES = {
    "paid": PaymentStatus.PAID, "partially_paid": PaymentStatus.PARTIALLY_PAID, "partially paid": PaymentStatus.PARTIALLY_PAID,
    "partial": PaymentStatus.PARTIALLY_PAID, "partiallypaid": PaymentStatus.PARTIALLY_PAID, "unpaid": PaymentStatus.UNPAID,
}
FIELDS = {
    "invoice_number": ("invoice_number", "invoiceNumber", "number"),
    "status": ("status", "payment_status", "paymentStatus"),
    "amount_paid": ("amount_paid", "amountPaid", "amount"),
    "paid_on": ("paid_on", "paidOn", "paid_date", "paymentDate"),
}


class BadPayment(ValueError):
    pass


@dataclass(frozen=True)
class PaymentRecord:
    ref: str  # where it came from (file line, item number)
    invoice_number: str
    status: PaymentStatus | None
    amount_paid: Decimal | None
    paid_on: date | None


class PaymentSource(abc.ABC):
    name = ""

    @abc.abstractmethod
    def records(self, as_of: date) -> Iterator[tuple[str, Any]]:
        """(reference, raw record) pairs."""

    def close(self) -> None:  # noqa: B027
        pass


class FilePaymentSource(PaymentSource):
    name = "file"

    def __init__(self, path: Path | str):
        p = Path(path)
        self.path = p / "payments.csv" if p.is_dir() else p

    def records(self, as_of: date) -> Iterator[tuple[str, Any]]:
        if not self.path.is_file():
            raise W365Error(f"payment file {self.path} does not exist")
        with self.path.open(newline="", encoding="utf-8-sig") as fh:
            for n, row in enumerate(csv.DictReader(fh), start=2):
                yield f"{self.path.name} line {n}", {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}


class RestPaymentSource(PaymentSource):
    """The payments feed of the REST accounting system the invoices are exported to (issue 16,
    I28): ``RestAccounting.payment_records``, one client for both directions."""

    name = "rest"

    def __init__(self, system: RestAccounting):
        self.system = system

    def records(self, as_of: date) -> Iterator[tuple[str, Any]]:
        return self.system.payment_records(as_of)

    def close(self) -> None:
        self.system.close()


def source_for(path: str | None = None, conn: ConnectionInfo | None = None, **http_kwargs: Any) -> PaymentSource:
    if path:
        return FilePaymentSource(path)
    conn = conn or get_connection(ACCOUNTING)
    if conn.conn_type in ("fs", "file") or conn.extra.get("path"):
        folder = conn.path()
        if not folder:
            raise W365Error(f"connection {conn.conn_id!r} names no file (extra.path)")
        return FilePaymentSource(folder)
    return RestPaymentSource(RestAccounting.from_connection(conn, **http_kwargs))


def _field(raw: dict[str, Any], name: str) -> Any:
    for key in FIELDS[name]:
        if key in raw and raw[key] not in (None, ""):
            return raw[key]
    return None


def _number(value: Any) -> str:
    if not value:
        raise BadPayment("no invoice_number")
    return str(value).strip()


def _status(value: Any) -> PaymentStatus | None:
    if value is None:
        return None
    status = STATUS_ALIASES.get(str(value).strip().lower())
    if status is None:
        raise BadPayment(f"status {value!r} is not paid, partially_paid or unpaid")
    return status


def _amount(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, float):
        raise BadPayment(f"amount_paid {value!r} is a float")
    try:
        amount = D(str(value) if not isinstance(value, Decimal) else value)
    except MoneyError as exc:
        raise BadPayment(str(exc)) from None
    if amount < 0:
        raise BadPayment(f"amount_paid {amount} is negative")
    try:  # issue 12: within its column on SQLite as on PostgreSQL
        limits.stored_amount(amount, "amount_paid")
    except limits.BadValue as exc:
        raise BadPayment(str(exc)) from None
    return amount


def _paid_on(value: Any) -> date | None:
    if value is None:
        return None
    try:
        return limits.day(str(value)[:10], "paid_on")
    except limits.BadValue:
        raise BadPayment(f"paid_on {limits.show(value)} is not a date (YYYY-MM-DD) from {limits.MIN_DATE} to {limits.MAX_DATE}") from None


_OPTIONAL = Field(default=None, validate_default=True)


class PaymentPayload(BaseModel):
    """A payment record as the accounting system sends it (pydantic, issue 14): each field is the
    first non-empty of its names (``FIELDS``), checked by its rule; a problem names the field."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    invoice_number: Annotated[str, BeforeValidator(_number), _OPTIONAL]
    status: Annotated[PaymentStatus | None, BeforeValidator(_status), _OPTIONAL]
    amount_paid: Annotated[Decimal | None, BeforeValidator(_amount), _OPTIONAL]
    paid_on: Annotated[date | None, BeforeValidator(_paid_on), _OPTIONAL]

    @model_validator(mode="before")
    @classmethod
    def _first_named(cls, raw: Any) -> dict[str, Any]:
        return {name: _field(raw, name) for name in FIELDS}


def parse_payment(ref: str, raw: Any) -> PaymentRecord:
    if not isinstance(raw, dict):
        raise BadPayment("not an object")
    try:
        p = PaymentPayload.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        raise BadPayment(str((error.get("ctx") or {}).get("error") or error["msg"])) from None
    return PaymentRecord(ref, p.invoice_number, p.status, p.amount_paid, p.paid_on)


@dataclass
class PaymentResult:
    source: str
    records: int = 0
    updated: list[dict[str, str]] = field(default_factory=list)
    unchanged: int = 0
    problems: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def target(inv: Invoice, rec: PaymentRecord, as_of: date) -> tuple[PaymentStatus, Decimal, date | None, str | None]:
    """(status, amount paid, paid on, note to report) for an invoice and its payment record."""
    total = inv.total
    places = minor_units(inv.currency)
    amount = rec.amount_paid
    if amount is not None:
        try:
            check_places(amount, places, "amount_paid")
        except MoneyError as exc:
            raise BadPayment(f"{exc} for {inv.currency}") from None
    status = rec.status
    if status is None:
        if amount is None:
            raise BadPayment("neither status nor amount_paid")
        status = PaymentStatus.UNPAID if amount == 0 else PaymentStatus.PARTIALLY_PAID if amount < total else PaymentStatus.PAID
    if amount is None:
        amount = total if status == PaymentStatus.PAID else Decimal(0)
    paid_on = rec.paid_on if status != PaymentStatus.UNPAID else None
    if status != PaymentStatus.UNPAID and paid_on is None:
        paid_on = as_of
    note = None
    cur = inv.currency

    def m(value: Decimal) -> str:
        return f"{round_money(value, cur)} {cur}"

    if total >= 0 and amount > total:
        note = f"over-payment: {m(amount)} paid on an invoice of {m(total)} ({m(amount - total)} too much)"
    elif status == PaymentStatus.PAID and amount < total:
        note = f"marked paid with {m(amount)} of {m(total)}"
    elif status == PaymentStatus.UNPAID and amount > 0:
        note = f"marked unpaid with {m(amount)} paid"
    elif status == PaymentStatus.PARTIALLY_PAID and (amount == 0 or amount >= total):
        note = f"marked partially paid with {m(amount)} of {m(total)}"
    return status, amount, paid_on, note


def apply_payments(session: Session, records: list[tuple[str, Any]], as_of: date, result: PaymentResult) -> list[str]:
    """Apply the records in the caller's transaction; returns the invoice numbers that were fine."""
    parsed: dict[str, PaymentRecord] = {}
    for ref, raw in records:
        result.records += 1
        try:
            rec = parse_payment(ref, raw)
        except BadPayment as exc:
            result.problems[ref] = f"malformed payment record: {exc}"
            continue
        parsed[rec.invoice_number] = rec  # the feed's last word on an invoice wins
    invoices: dict[str, Invoice] = {}
    numbers = list(parsed)
    for i in range(0, len(numbers), 1000):
        for found in session.scalars(select(Invoice).where(Invoice.number.in_(numbers[i : i + 1000]))):
            invoices[found.number] = found
    ok: list[str] = []
    for number, rec in parsed.items():
        inv = invoices.get(number)
        if inv is None:
            result.problems[number] = f"unknown invoice number ({rec.ref})"
            continue
        try:
            status, amount, paid_on, note = target(inv, rec, as_of)
        except BadPayment as exc:
            result.problems[number] = f"{exc} ({rec.ref})"
            continue
        if note:
            result.problems[number] = note
        else:
            ok.append(number)
        if (inv.payment_status, inv.amount_paid, inv.paid_on) == (status, amount, paid_on):
            result.unchanged += 1
            continue
        result.updated.append({
            "invoice": number, "status": f"{inv.payment_status.value} -> {status.value}",
            "amount_paid": f"{round_money(inv.amount_paid, inv.currency)} -> {round_money(amount, inv.currency)}", "paid_on": paid_on.isoformat() if paid_on else "",
        })
        inv.payment_status, inv.amount_paid, inv.paid_on = status, amount, paid_on
    session.flush()
    return ok


def update_payments(session: Session, source: PaymentSource, as_of: date) -> PaymentResult:
    result = PaymentResult(source.name)
    records = list(source.records(as_of))
    apply_payments(session, records, as_of, result)
    replace_exceptions(session, JOB, as_of, "payment", result.problems)
    for key, reason in result.problems.items():
        log.warning("%s: %s: %s", JOB, key, reason)
    log.info("%s: %d record(s), %d invoice(s) updated, %d unchanged, %d problem(s)", JOB, result.records, len(result.updated),
             result.unchanged, len(result.problems))
    return result
