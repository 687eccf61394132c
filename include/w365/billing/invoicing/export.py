"""Reading invoices for people and other systems: list, show (lines with their sources), CSV
and a readable HTML document (SPEC M3: every number can be traced to its change logs)."""

from __future__ import annotations

import io
from typing import Any

from jinja2 import Environment, select_autoescape
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


def invoice_document(session: Session, number: str) -> dict[str, Any]:
    inv = session.scalars(
        select(Invoice)
        .where(Invoice.number == number)
        .options(selectinload(Invoice.lines).selectinload(InvoiceLine.lcls), selectinload(Invoice.lines).selectinload(InvoiceLine.slcls))
    ).first()
    if inv is None:
        raise NotFound(f"no invoice {number!r}")
    contract = session.get(BillingContract, inv.contract_id)
    customer = session.get(Customer, inv.customer_id)
    tenant = get_tenant(session)
    subs = {
        sid: (name, product)
        for sid, name, product in session.execute(
            select(Subscription.id, Subscription.name, Product.name)
            .join(Product, Product.id == Subscription.product_id)
            .where(Subscription.id.in_({l.subscription_id for l in inv.lines if l.subscription_id}))
        )
    }
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
            format(l["tax_amount"], "f"), doc["customer"], l["product"],
        ])
    # SPEC I4: the total row's amount is the document's total (the lines' amounts + their taxes),
    # its tax_amount the tax total.
    w.writerow([doc["number"], "", "total", "", "", "", "", "", "", "", "", "", "", format(doc["total"], "f"), doc["currency"], "", "",
                "", "", format(doc["tax_total"], "f"), doc["customer"], ""])
    return buf.getvalue()


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Invoice {{ d.number }}</title>
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#222}
 table{border-collapse:collapse;width:100%} th,td{padding:.3rem .5rem;border-bottom:1px solid #ddd;text-align:left}
 td.n,th.n{text-align:right;font-variant-numeric:tabular-nums} .muted{color:#777;font-size:12px}
 .total td{font-weight:bold;border-top:2px solid #222}
</style></head><body>
<h1>{{ 'Credit note' if d.document == 'credit_note' else 'Invoice' }} {{ d.number }}</h1>
{% if d.corrects %}<p>Corrects invoice {{ d.corrects }}</p>{% endif %}
<p><strong>{{ d.tenant }}</strong> &rarr; <strong>{{ d.customer }}</strong><br>
Contract {{ d.contract }} &middot; {{ d.kind|replace('_', ' ') }} invoice &middot; period {{ d.period_from }} to {{ d.period_to }}<br>
Issued {{ d.issue_date }} &middot; due {{ d.due_date }} &middot; payment: {{ d.payment_status|replace('_', ' ') }}</p>
<table><thead><tr><th>#</th><th>Description</th><th>Period billed</th><th class="n">Qty</th>
<th class="n">Unit price / period</th><th class="n">Prorated</th><th class="n">Amount ({{ d.currency }})</th></tr></thead><tbody>
{% for l in d.lines %}<tr><td>{{ l.line }}</td><td>{{ l.description }}<div class="muted">{{ l.kind }}
{%- if l.lcl_ids %} &middot; change logs {{ l.lcl_ids|join(', ') }}{% endif %}
{%- if l.slcl_ids %} &middot; scheduled changes {{ l.slcl_ids|join(', ') }}{% endif %}
{%- if l.source_currency %} &middot; converted from {{ l.source_currency }} at {{ l.fx_rate }}{% endif %}</div></td>
<td>{{ l.period_from }} to {{ l.period_to }}</td>
<td class="n">{{ l.quantity }}</td><td class="n">{{ l.unit_price }}</td><td class="n">{{ l.days }}/{{ l.period_days }} days</td>
<td class="n">{{ l.amount }}</td></tr>
{% endfor %}<tr><td></td><td colspan="5">Subtotal (prices exclude tax)</td><td class="n">{{ d.subtotal }}</td></tr>
{% for t in d.tax_summary %}<tr><td></td><td colspan="5">Tax {{ t.code or 'none' }} {{ t.rate }} % on {{ t.taxable }}</td><td class="n">{{ t.tax }}</td></tr>
{% endfor %}<tr class="total"><td></td><td colspan="5">Total</td><td class="n">{{ d.total }}</td></tr>
</tbody></table>
{% if d.tax_exempt_reference %}<p>Tax exempt: {{ d.tax_exempt_reference }}</p>{% endif %}
<p class="muted">Amount = quantity &times; unit price &times; days / days in period, rounded half-up once per line; the subtotal is the sum of the lines, the tax is rounded once per line, total = subtotal + tax.</p>
</body></html>
"""


def to_html(doc: dict[str, Any]) -> str:
    env = Environment(autoescape=select_autoescape(default=True))
    return env.from_string(_HTML).render(d=doc)
