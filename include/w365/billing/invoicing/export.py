"""Reading invoices for people and other systems: list, show (lines with their sources) and CSV
(SPEC M3: every number can be traced to its change logs). The document people read (HTML page,
HTML export, PDF) is rendered by ``w365.billing.invoicing.document`` (issue 16)."""

from __future__ import annotations

import io
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from w365.billing.subscriptions import get_tenant
from w365.core import csvsafe
from w365.core.money import as_currency, plain, plain_price
from w365.core.tax import TaxedAmount, tax_summary
from w365.errors import NotFound
from w365.store.models import (
    BillingContract,
    Customer,
    Invoice,
    InvoiceLine,
    Product,
    Subscription,
)


def list_invoices(session: Session, *, contract: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    q = (
        select(Invoice, BillingContract.number, Customer.name)
        .join(BillingContract, BillingContract.id == Invoice.contract_id)
        .join(Customer, Customer.id == Invoice.customer_id)
        .order_by(Invoice.id.desc())  # newest first, invoices and credit notes (their sequences are negative)
        .limit(limit)
    )
    if contract:
        q = q.where(BillingContract.number == contract)
    return [
        {
            "number": inv.number, "kind": inv.kind.value, "contract": number, "customer": customer,
            "issue_date": inv.issue_date, "period_from": inv.period_from, "period_to": inv.period_to,
            "currency": inv.currency, **_totals(inv), "payment_status": inv.payment_status.value,
            "amount_paid": as_currency(inv.amount_paid, inv.currency),
        }
        for inv, number, customer in session.execute(q)
    ]


def _totals(inv: Invoice) -> dict[str, Any]:
    """What a document says it is and sums to (SPEC I4, I6): total = subtotal + tax_total;
    a credit note's are negative."""
    return {
        "document": inv.document.value, "subtotal": as_currency(inv.subtotal, inv.currency),
        "tax_total": as_currency(inv.tax_total, inv.currency), "total": as_currency(inv.total, inv.currency),
    }


def load_invoice(session: Session, number: str) -> Invoice:
    """The invoice numbered ``number`` with its lines and their sources, or NotFound."""
    inv = session.scalars(
        select(Invoice)
        .where(Invoice.number == number)
        .options(selectinload(Invoice.lines).selectinload(InvoiceLine.lcls), selectinload(Invoice.lines).selectinload(InvoiceLine.slcls))
    ).first()
    if inv is None:
        raise NotFound(f"no invoice {number!r}")
    return inv


def subscription_names(session: Session, lines: list[InvoiceLine]) -> dict[int, tuple[str, str]]:
    """subscription id -> (subscription name, product name) for the lines that bill one."""
    ids = {l.subscription_id for l in lines if l.subscription_id}
    if not ids:
        return {}
    return {
        sid: (name, product)
        for sid, name, product in session.execute(
            select(Subscription.id, Subscription.name, Product.name)
            .join(Product, Product.id == Subscription.product_id)
            .where(Subscription.id.in_(ids))
        )
    }


def invoice_document(session: Session, number: str) -> dict[str, Any]:
    """The invoice as data (``w365 invoice show``, ``--json``, the CSV): every line with its
    proration and sources (SPEC M3). People read the rendered document (``document.py``)."""
    inv = load_invoice(session, number)
    contract = session.get(BillingContract, inv.contract_id)
    customer = session.get(Customer, inv.customer_id)
    tenant = get_tenant(session)
    subs = subscription_names(session, inv.lines)
    return {
        "tenant": tenant.name,
        "number": inv.number,
        "kind": inv.kind.value,
        "contract": contract.number if contract else None,
        "customer": customer.name if customer else None,
        "issue_date": inv.issue_date,
        "due_date": inv.due_date,
        "period_from": inv.period_from,
        "period_to": inv.period_to,
        "currency": inv.currency,
        **_totals(inv),
        "corrects": session.scalar(select(Invoice.number).where(Invoice.id == inv.corrects_invoice_id)) if inv.corrects_invoice_id else None,
        "tax_exempt_reference": inv.tax_exempt_reference,
        "tax_summary": [
            {"code": r.code, "rate": plain(r.rate), "taxable": as_currency(r.taxable, inv.currency), "tax": as_currency(r.tax, inv.currency)}
            for r in tax_summary([TaxedAmount(l.amount, l.tax_code, l.tax_rate, l.tax_amount) for l in inv.lines], inv.currency)
        ],
        "payment_status": inv.payment_status.value,
        "amount_paid": as_currency(inv.amount_paid, inv.currency),
        "paid_on": inv.paid_on,
        "lines": [
            {
                "line": l.line_no, "kind": l.kind.value, "subscription_id": l.subscription_id,
                "subscription": subs[l.subscription_id][0] if l.subscription_id in subs else None,
                "product": subs[l.subscription_id][1] if l.subscription_id in subs else None, "description": l.description,
                "period_from": l.period_from, "period_to": l.period_to,
                "billing_period_from": l.billing_period_from, "billing_period_to": l.billing_period_to,
                # As people write them (120, 2.5; 12.00): never Decimal.normalize()'s 1.2E+2 (issue 13).
                "quantity": plain(l.quantity), "unit_price": plain_price(l.unit_price), "days": l.days, "period_days": l.period_days,
                "proration_factor": l.proration_factor, "amount": as_currency(l.amount, inv.currency), "sales_unit": l.sales_unit,
                "source_currency": l.source_currency, "fx_rate": None if l.fx_rate is None else plain(l.fx_rate),
                "tax_code": l.tax_code, "tax_rate": plain(l.tax_rate), "tax_amount": as_currency(l.tax_amount, inv.currency),
                "lcl_ids": sorted(x.id for x in l.lcls), "slcl_ids": sorted(x.id for x in l.slcls),
            }
            for l in inv.lines
        ],
    }


CSV_COLUMNS = [
    "invoice", "line", "kind", "subscription_id", "subscription", "description", "period_from", "period_to",
    "quantity", "unit_price", "days", "period_days", "proration_factor", "amount", "currency", "lcl_ids", "slcl_ids",
    "tax_code", "tax_rate", "tax_amount", "customer", "product",
    # What the document is and, for a credit note, the invoice it corrects (SPEC I6; issue 16,
    # I27: a file-drop export is read by an accounting system, not only by people).
    "document", "corrects",
]


def to_csv(doc: dict[str, Any]) -> str:
    """The invoice as CSV for finance. Written through :mod:`w365.core.csvsafe`: a name that starts
    like a formula (``=``, ``+``, ``-``, ``@``, tab, CR) is text in a spreadsheet, numbers
    (negative credits included) stay numbers; rows end in CRLF (RFC 4180) (issue 12)."""
    buf = io.StringIO()
    w = csvsafe.writer(buf)
    w.writerow(CSV_COLUMNS)
    for l in doc["lines"]:
        w.writerow([
            doc["number"], l["line"], l["kind"], l["subscription_id"], l["subscription"], l["description"],
            l["period_from"], l["period_to"], format(l["quantity"], "f"), format(l["unit_price"], "f"), l["days"],
            l["period_days"], format(plain(l["proration_factor"]), "f"), format(l["amount"], "f"), doc["currency"],
            " ".join(map(str, l["lcl_ids"])), " ".join(map(str, l["slcl_ids"])), l["tax_code"] or "", format(l["tax_rate"], "f"),
            format(l["tax_amount"], "f"), doc["customer"], l["product"], doc["document"], doc["corrects"] or "",
        ])
    # SPEC I4: the total row's amount is the document's total (the lines' amounts + their taxes),
    # its tax_amount the tax total.
    w.writerow([doc["number"], "", "total", "", "", "", "", "", "", "", "", "", "", format(doc["total"], "f"), doc["currency"], "", "",
                "", "", format(doc["tax_total"], "f"), doc["customer"], "", doc["document"], doc["corrects"] or ""])
    return buf.getvalue()
