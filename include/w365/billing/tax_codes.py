"""Tax codes and their rates, typed by hand or imported (issue 16, SPEC I1-I3).

A code (``VAT20``, ``US-NY``, ``EXEMPT``) has a name and rates in percent, each from a date on; a
line is taxed at the rate effective on its first day billed. Rates are only ever added, never
edited or removed. **Decision (rates over invoiced lines)**, as for exchange rates: a new rate
is refused when an issued line taxed under the code on a day it would govern was taxed at a
different rate; issued invoices keep their tax, and the refusal names the invoice and the
earliest date accepted. Customers and products name a code (``tax_code``); a customer with an
exemption reference is not taxed at all.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from w365.core import limits
from w365.core.tax import check_code, check_rate
from w365.errors import ValidationError
from w365.store.models import Customer, Invoice, InvoiceLine, Product, TaxCode, TaxRate


def check_tax_rate(session: Session, code: Any, rate: Any, effective_from: Any, name: Any = None) -> tuple[str, Decimal, date, str | None]:
    """Every rule a new rate must pass (bounds, duplicates, history); returns its values.
    Raises ValidationError naming the code."""
    record = f"tax code {limits.show(code)}"
    try:
        code = check_code(code, "code")
        record = f"tax code {code}"
        rate = check_rate(rate)
        effective_from = limits.day(effective_from, "effective from")
        name = limits.text(str(name).strip(), "name", limits.column_length(TaxCode.name)) if name else None
    except limits.BadValue as exc:
        raise ValidationError(record, str(exc)) from None
    same_day = session.scalar(select(TaxRate.rate).where(TaxRate.code == code, TaxRate.effective_from == effective_from))
    if same_day is not None:
        raise ValidationError(record, f"a rate effective {effective_from} exists already ({Decimal(same_day).normalize():f} %); "
                              "rates are never edited: add one with a later effective date")
    later = session.scalar(select(func.min(TaxRate.effective_from)).where(TaxRate.code == code, TaxRate.effective_from > effective_from))
    q = (select(Invoice.number, InvoiceLine.line_no, InvoiceLine.period_from, InvoiceLine.tax_rate)
         .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
         .where(InvoiceLine.tax_code == code, InvoiceLine.period_from >= effective_from))
    if later is not None:
        q = q.where(InvoiceLine.period_from < later)
    clash = [r for r in session.execute(q.order_by(InvoiceLine.period_from, Invoice.id, InvoiceLine.line_no)) if r.tax_rate != rate]
    if clash:
        first, last = clash[0], max(r.period_from for r in clash)
        raise ValidationError(record, f"{rate.normalize():f} % from {effective_from} would change issued tax: {first.number} line "
                              f"{first.line_no} (from {first.period_from}) was taxed at {Decimal(first.tax_rate).normalize():f} %; "
                              f"issued invoices keep their tax. Give an effective date of {last + timedelta(days=1)} or later",
                              "SPEC I3")
    return code, rate, effective_from, name


def add_tax_rate(session: Session, code: Any, rate: Any, effective_from: Any, name: Any = None) -> TaxRate:
    """Add a rate (and the code, if new) in the caller's transaction (module docstring)."""
    code, rate, effective_from, name = check_tax_rate(session, code, rate, effective_from, name)
    existing = session.get(TaxCode, code)
    if existing is None:
        session.add(TaxCode(code=code, name=name or code))
    elif name and name != existing.name:
        raise ValidationError(f"tax code {code}", f"is named {existing.name!r} already; a code keeps its name")
    row = TaxRate(code=code, rate=rate, effective_from=effective_from)
    session.add(row)
    session.flush()
    return row


def list_tax_rates(session: Session, on: date | None = None) -> list[dict[str, Any]]:
    """Every code's rates with the days each is in force; with ``on``, the one in force then."""
    rows = session.execute(select(TaxRate.code, TaxCode.name, TaxRate.rate, TaxRate.effective_from)
                           .join(TaxCode, TaxCode.code == TaxRate.code).order_by(TaxRate.code, TaxRate.effective_from)).all()
    out = []
    for a, b in zip(rows, [*rows[1:], None]):
        end = b.effective_from if b is not None and b.code == a.code else None
        if on is not None and not (a.effective_from <= on and (end is None or end > on)):
            continue
        out.append({"code": a.code, "name": a.name, "rate": Decimal(a.rate).normalize() + 0, "effective_from": a.effective_from,
                    "effective_to": end - timedelta(days=1) if end else None})
    return out


def check_assignable(session: Session, code: str | None, record: str) -> str | None:
    """A customer's or product's ``tax_code`` must name a code that exists (I2)."""
    if code is None:
        return None
    try:
        code = check_code(code)
    except limits.BadValue as exc:
        raise ValidationError(record, str(exc)) from None
    if session.get(TaxCode, code) is None:
        raise ValidationError(record, f"tax_code {code} is not a tax code (add it with `w365 tax add` or tax_codes.csv)")
    return code


def assign_customer(session: Session, customer: Customer, code: str | None, exempt_reference: str | None) -> None:
    customer.tax_code = check_assignable(session, code, f"customer {customer.name}")
    customer.tax_exempt_reference = exempt_reference or None


def assign_product(session: Session, product: Product, code: str | None) -> None:
    product.tax_code = check_assignable(session, code, f"product {product.sku}")
