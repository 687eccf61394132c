"""The auditor's tax and credit-note checks (issue 16, SPEC I4-I7), with its own rate lookup and
rounding (``arithmetic.round_half_up``), sharing nothing with the engine's ``core.tax``.

* Per line: a line with no code has rate 0 and tax 0; a line with a code has the rate that code
  had on the line's first day billed (the latest ``tax_rate`` row effective on or before it),
  and tax = amount x rate / 100 rounded half away from zero, once, to the currency's minor unit.
  On a document issued to an exempt customer, no first billing carries a code.
* Per document: tax_total = the sum of its lines' taxes; total = the sum of its lines' amounts
  + tax_total; a negative total is a credit note (but on invoices issued before migration 0006,
  ``tenant.credit_notes_from``) and a credit note's total is negative; a credit note refers to
  an invoice (not a credit note) of its own contract.
* Numbering: invoices 1..N (the invoice counter - 1) as prefix + sequence; credit notes their
  own series 1..M (the credit-note counter - 1), stored as sequence -1..-M, as their prefix + M.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from w365.operations.audit.arithmetic import _money, round_half_up
from w365.store.models import Invoice, TaxRate, Tenant

FIRST_BILLINGS = ("recurring", "one_time", "usage")


class TaxTable:
    """Each code's rates by effective date, read straight from ``tax_rate``."""

    def __init__(self, session: Session):
        self.days: dict[str, list[date]] = defaultdict(list)
        self.rates: dict[str, list[Decimal]] = defaultdict(list)
        for code, day, rate in session.execute(select(TaxRate.code, TaxRate.effective_from, TaxRate.rate).order_by(TaxRate.effective_from)):
            self.days[code].append(day)
            self.rates[code].append(Decimal(rate))

    def on(self, code: str, day: date) -> Decimal | None:
        i = bisect.bisect_right(self.days.get(code, []), day) - 1
        return self.rates[code][i] if i >= 0 else None


def check_line(table: TaxTable, inv: Any, ln: Any, places: int | None, add: Callable[[str, str, str], None]) -> None:
    """SPEC I3, I4: the line's rate is its code's on its first day billed; its tax follows."""
    rate = Decimal(ln.tax_rate)
    if ln.tax_code is None:
        if rate != 0:
            add("tax_rate", "rate 0 (no tax code)", f"rate {rate.normalize():f}")
    else:
        want = table.on(ln.tax_code, ln.period_from)
        if want is None:
            add("tax_rate", f"a rate of {ln.tax_code} effective on {ln.period_from}", "none")
        elif want != rate:
            add("tax_rate", f"{ln.tax_code} {want.normalize():f} % on {ln.period_from}", f"{rate.normalize():f} %")
        if inv.tax_exempt_reference and ln.kind in FIRST_BILLINGS:
            add("tax_code", f"no tax code (customer exempt: {inv.tax_exempt_reference})", ln.tax_code)
    if places is not None:
        tax = round_half_up(Fraction(ln.amount) * Fraction(rate) / 100, places)
        if tax != ln.tax_amount:
            add("tax_amount", _money(tax, inv.currency), _money(ln.tax_amount, inv.currency))


def check_document(inv: Any, lines: list[Any], invoices: dict[int, Any], add: Callable[[str, str, str], None],
                   credit_notes_from: int = 1) -> None:
    """SPEC I4, I6: the totals add up; the sign says the document; a credit note's reference.
    An invoice numbered before ``credit_notes_from`` (issued before migration 0006) may have a
    negative total: corrections were invoices then."""
    tax = sum((Decimal(ln.tax_amount) for ln in lines), Decimal(0))
    subtotal = sum((Decimal(ln.amount) for ln in lines), Decimal(0))
    if tax != inv.tax_total:
        add("tax_total", _money(tax, inv.currency), _money(inv.tax_total, inv.currency))
    if subtotal + tax != inv.total:
        add("invoice_total", _money(subtotal + tax, inv.currency), _money(inv.total, inv.currency))
    want = "credit_note" if inv.total < 0 else "invoice"
    legacy = inv.document == "invoice" and 0 < inv.sequence < credit_notes_from
    if inv.document != want and not legacy:
        add("document", f"{want} (total {_money(inv.total, inv.currency)})", inv.document)
    if inv.document == "credit_note":
        target = invoices.get(inv.corrects_invoice_id)
        if target is None or target.document != "invoice" or target.contract_id != inv.contract_id:
            add("credit_note", "a reference to an invoice of its contract",
                "none" if target is None else f"{target.number} ({target.document}, contract #{target.contract_id})")


def expected_number(inv: Any, prefixes: tuple[str, str]) -> str:
    """Invoices: prefix + sequence; credit notes: their prefix + minus the sequence (I6)."""
    if inv.document == "credit_note":
        return f"{prefixes[1]}{-inv.sequence:06d}"
    return f"{prefixes[0]}{inv.sequence:06d}"


def audit_numbering(session: Session, add: Callable[[str, str], None]) -> None:
    """SPEC J6, I6: each series gapless from 1, ending at its counter - 1, no repeats."""
    tenant = session.execute(select(Tenant.next_invoice_number, Tenant.next_credit_note_number)).first()
    counters = (tenant[0], tenant[1]) if tenant else (1, 1)
    rows = session.execute(select(Invoice.sequence, Invoice.document)).all()
    for series, sign, counter in (("invoice", 1, counters[0]), ("credit_note", -1, counters[1])):
        last = counter - 1
        seen = Counter(seq for seq, doc in rows if str(doc) == series)
        what, span = ("invoice", "sequences") if sign > 0 else ("credit note", "credit note sequences")
        for n in range(1, last + 1):
            if sign * n not in seen:
                add(f"{'an' if sign > 0 else 'a'} {what} with sequence {sign * n}", "none")
        for seq, count in sorted(seen.items(), key=lambda x: abs(x[0])):
            if count > 1:
                add(f"one {what} with sequence {seq}", f"{count}")
            if not 1 <= sign * seq <= last:
                add(f"{span} {sign}..{sign * last}" if last else f"no {what}s", f"sequence {seq}")
