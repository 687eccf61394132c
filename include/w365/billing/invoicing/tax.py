"""Taxing planned documents and numbering them (issue 16, SPEC I2-I7): the invoice writers'
(``dispatcher.write_plans``, so full-cycle, change-log and usage runs alike) one call.

For each planned document: every line's tax code (the customer's exemption, else the product's
code, else the customer's), the rate effective on the line's first day billed and the tax,
rounded once (``core.tax``); a credit line that reverses a line issued before takes that line's
code and rate, so it takes back exactly the tax charged. Then the totals, and what the document
is: total < 0 is a credit note, numbered in its own gapless series and referring to the invoice
it corrects. A contract whose lines name a code without a rate on their day is not written; its
reason names the code and the day.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from w365.billing.invoicing.generator import ProposedLine
from w365.billing.invoicing.planner import PlannedInvoice
from w365.core.tax import LineTax, NoTaxRate, code_for, TaxedAmount, TaxRates, Totals, is_credit_note, line_tax, tax_line, totals
from w365.store.models import Customer, DocumentType, Invoice, InvoiceLine, Product, Subscription, TaxRate, Tenant


@dataclass
class TaxedDocument:
    """A planned document with its lines' taxes, totals and what it is (invoice or credit note)."""

    lines: list[LineTax]
    totals: Totals
    document: DocumentType
    corrects_invoice_id: int | None
    exempt_reference: str | None


def load_tax_rates(session: Session) -> TaxRates:
    out: TaxRates = defaultdict(list)
    for code, day, rate in session.execute(select(TaxRate.code, TaxRate.effective_from, TaxRate.rate).order_by(TaxRate.code, TaxRate.effective_from)):
        out[code].append((day, rate))
    return dict(out)


def tax_documents(
    session: Session, drafts: Sequence[tuple[Any, PlannedInvoice]]
) -> tuple[list[TaxedDocument | None], dict[int, str]]:
    """Tax each (contract row, planned document); None and a reason (per contract id) for a
    contract that cannot be taxed as its data stands."""
    lines = [ln for _, inv in drafts for ln in inv.lines]
    customers = {cid: (code, ref) for cid, code, ref in session.execute(
        select(Customer.id, Customer.tax_code, Customer.tax_exempt_reference)
        .where(Customer.id.in_({c.customer_id for c, _ in drafts})))}
    product_code: dict[int, str] = dict(session.execute(  # type: ignore[arg-type]
        select(Subscription.id, Product.tax_code).join(Product, Product.id == Subscription.product_id)
        .where(Subscription.id.in_({ln.subscription_id for ln in lines})).where(Product.tax_code.is_not(None))).all())
    reversed_ids = {ln.reverses for ln in lines if ln.reverses is not None}
    reversed_ = {r.id: r for r in session.execute(
        select(InvoiceLine.id, InvoiceLine.tax_code, InvoiceLine.tax_rate, InvoiceLine.invoice_id, Invoice.document)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id).where(InvoiceLine.id.in_(reversed_ids)))} if reversed_ids else {}
    rates = load_tax_rates(session)
    out: list[TaxedDocument | None] = []
    problems: dict[int, str] = {}
    for contract, inv in drafts:
        code, exempt = customers.get(contract.customer_id, (None, None))
        try:
            taxes = [_line_tax(ln, code, exempt, product_code, reversed_, rates, contract.currency) for ln in inv.lines]
        except NoTaxRate as exc:
            problems[contract.id] = f"{exc}: add the rate with `w365 tax add` (SPEC I3)"
            out.append(None)
            continue
        t = totals((TaxedAmount(ln.amount, tx.code, tx.rate, tx.amount) for ln, tx in zip(inv.lines, taxes)), contract.currency)
        credit = is_credit_note(t.total)
        corrects = _corrected_invoice(session, contract.id, inv, reversed_) if credit else None
        out.append(TaxedDocument(taxes, t, DocumentType.CREDIT_NOTE if credit else DocumentType.INVOICE, corrects, exempt or None))
    return out, problems


def _line_tax(ln: ProposedLine, code: str | None, exempt: str | None, product_code: dict[int, str], reversed_: dict[int, Any],
              rates: TaxRates, currency: str) -> LineTax:
    r = reversed_.get(ln.reverses) if ln.reverses is not None else None
    if r is not None:  # a credit of a line issued before: its code and rate, so its tax back (I5)
        return LineTax(r.tax_code, r.tax_rate, line_tax(ln.amount, r.tax_rate, currency))
    return tax_line(ln.amount, code_for(code, product_code.get(ln.subscription_id), bool(exempt)), rates, ln.start, currency)


def _corrected_invoice(session: Session, contract_id: int, inv: PlannedInvoice, reversed_: dict[int, Any]) -> int | None:
    """The invoice a credit note corrects (I6): the latest invoice whose lines it reverses; else
    the contract's latest invoice billing the credited subscriptions in the periods credited."""
    ids = [reversed_[ln.reverses].invoice_id for ln in inv.lines
           if ln.reverses is not None and ln.reverses in reversed_ and reversed_[ln.reverses].document == DocumentType.INVOICE]
    if ids:
        return max(ids)
    return session.scalar(
        select(Invoice.id).join(InvoiceLine, InvoiceLine.invoice_id == Invoice.id)
        .where(Invoice.contract_id == contract_id, Invoice.document == DocumentType.INVOICE,
               InvoiceLine.subscription_id.in_({ln.subscription_id for ln in inv.lines}),
               InvoiceLine.billing_period_from.in_({ln.period.start for ln in inv.lines}))
        .order_by(Invoice.id.desc()).limit(1))


def take_numbers(session: Session, documents: Sequence[DocumentType]) -> list[tuple[str, int]]:
    """(number, sequence) for each document, in order: invoices from the invoice series, credit
    notes from theirs (sequence negative, I6). Both counters move in this transaction, so a
    rollback gives the numbers back; the tenant row lock serialises numbering until commit."""
    n_credit = sum(1 for d in documents if d == DocumentType.CREDIT_NOTE)
    n_invoice = len(documents) - n_credit
    top_inv, top_cn, inv_prefix, cn_prefix = session.execute(
        update(Tenant).where(Tenant.id == 1)
        .values(next_invoice_number=Tenant.next_invoice_number + n_invoice,
                next_credit_note_number=Tenant.next_credit_note_number + n_credit)
        .returning(Tenant.next_invoice_number, Tenant.next_credit_note_number, Tenant.invoice_prefix, Tenant.credit_note_prefix)
    ).one()
    next_inv, next_cn = top_inv - n_invoice, top_cn - n_credit
    out: list[tuple[str, int]] = []
    for d in documents:
        if d == DocumentType.CREDIT_NOTE:
            out.append((f"{cn_prefix}{next_cn:06d}", -next_cn))
            next_cn += 1
        else:
            out.append((f"{inv_prefix}{next_inv:06d}", next_inv))
            next_inv += 1
    return out


def tax_drafts(session: Session, drafts: Sequence[tuple[Any, PlannedInvoice, dict[str, Any]]]) -> dict[int, str]:
    """Add tax to previews and dry runs (``planner.draft_dict`` dicts, in place): what the
    document would be, its subtotal, tax total and total, and each line's tax. Returns the
    reasons of contracts that could not be taxed (their drafts are left as they were)."""
    taxed, problems = tax_documents(session, [(c, inv) for c, inv, _ in drafts])
    for (_, _, d), t in zip(drafts, taxed):
        if t is None:
            continue
        d.update(document=t.document.value, subtotal=format(t.totals.subtotal, "f"), tax_total=format(t.totals.tax_total, "f"),
                 total=format(t.totals.total, "f"))
        for line, tax in zip(d["lines"], t.lines):
            line.update(tax_code=tax.code, tax_rate=format(tax.rate.normalize(), "f") if tax.rate else "0", tax_amount=format(tax.amount, "f"))
    return problems


def line_tax_columns(tax: LineTax) -> dict[str, Any]:
    return {"tax_code": tax.code, "tax_rate": tax.rate, "tax_amount": tax.amount}

