"""The invoice document people read (issue 16, SPEC I10-I19): the invoice page, the HTML export
and the PDF come from ONE Jinja template, ``templates/invoice_document.html``, and ONE context,
:func:`invoice_document_context`, so what the customer receives is what operators see.

* Seller block from the tenant, bill-to block from the customer (addresses, tax ID; SPEC I11).
* Dates, payment terms, the billing period; lines with their period and quantity as people write
  them (``Jan 15, 2026 – Jan 31, 2026``, ``17 of 31 days``, ``120``, ``2.5``; never a factor or
  an exponent; SPEC I12).
* Amounts in the invoice's currency with its ISO 4217 minor units, in the tenant's locale
  (``$1,234.56``, ``1.234,56 €``, ``¥1,235``, ``KWD 1,234.567``; ``w365.core.local_format``, I13).
* A tax summary and totals from :func:`document_totals`, the one place tax figures enter (I14):
  the tax the engine stored per line (code, rate, tax; SPEC I4) summed per code and rate, and the
  invoice's stored subtotal, tax total and total, never recomputed.
* A credit note is titled "Credit note CN-000001" and names the invoice it corrects (SPEC I6).
* Autoescaped: a customer called ``<script>`` or ``=HYPERLINK(...)`` is text (I16).

WeasyPrint (the PDF) is imported inside :func:`render_pdf` only: DAG files and the api-server
never load it until a PDF is asked for.
"""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from w365.billing.invoicing.export import load_invoice, subscription_names
from w365.billing.subscriptions import get_tenant
from w365.core import local_format as fmt
from w365.core.tax import TaxedAmount, tax_summary
from w365.errors import W365Error
from w365.store.models import BillingContract, Customer, DocumentType, Invoice, InvoiceKind, TaxCode, Tenant

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "invoice_document.html"
STYLESHEET = "invoice_document.css"
KIND_LABELS = {InvoiceKind.FULL_CYCLE: "Billing cycle", InvoiceKind.CHANGE_LOG: "Changes", InvoiceKind.USAGE: "Usage"}
TITLES = {DocumentType.INVOICE: "Invoice", DocumentType.CREDIT_NOTE: "Credit note"}
# Countries whose addresses end "City, Region Postal code" (the rest: "Postal code City").
CITY_FIRST = frozenset({"US", "CA", "AU"})


@cache
def environment() -> Environment:
    """The template environment (autoescape on for every template; cached per process)."""
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True, default_for_string=True),
                       trim_blocks=True, lstrip_blocks=True)


def stylesheet() -> str:
    """The document's style sheet (inlined by the export and the PDF; a file for the page)."""
    return (TEMPLATES / STYLESHEET).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------ the context


def document_totals(session: Session, invoice: Invoice) -> dict[str, Any]:
    """THE place tax figures enter the document (SPEC I14), as Decimals in the invoice currency:
    ``subtotal``, ``taxes`` (one entry per tax code and rate: ``name``, ``rate`` as a fraction
    such as ``Decimal("0.2")``, ``base``, ``amount``), ``tax_total`` and ``total``.

    The figures are the ones the engine stored (SPEC I4): each line's tax, summed per code and
    rate by ``core.tax.tax_summary`` (the same arithmetic as ``w365 invoice show``), and the
    invoice's subtotal, tax total and total, shown as issued, never recomputed. Untaxed lines
    (no code: an exempt customer, a tenant without tax, an invoice issued before tax) add no row."""
    cur = invoice.currency
    rows = tax_summary([TaxedAmount(l.amount, l.tax_code, l.tax_rate, l.tax_amount) for l in invoice.lines], cur)
    codes = {r.code for r in rows if r.code is not None}
    names = {code: name for code, name in session.execute(select(TaxCode.code, TaxCode.name).where(TaxCode.code.in_(codes)))}
    taxes = [
        {"name": r.code if names.get(r.code, r.code) == r.code else f"{names[r.code]} ({r.code})",
         "rate": r.rate / 100, "base": r.taxable, "amount": r.tax}
        for r in rows if r.code is not None
    ]
    return {"subtotal": invoice.subtotal, "taxes": taxes, "tax_total": invoice.tax_total, "total": invoice.total}


def _address(lines: tuple[str | None, ...], city: str | None, region: str | None, postal: str | None,
             country: str | None, locale: str) -> list[str]:
    """Address lines as a letter shows them; empty parts are left out."""
    out = [x for x in lines if x]
    if country in CITY_FIRST:
        place = ", ".join(x for x in (city, " ".join(x for x in (region, postal) if x)) if x)
        out.append(place)
    else:
        out.append(" ".join(x for x in (postal, city) if x))
        out.append(region or "")
    out.append(fmt.country(country, locale))
    return [x for x in out if x]


def _seller(tenant: Tenant) -> dict[str, Any]:
    return {
        "name": tenant.legal_name or tenant.name,
        "address": _address((tenant.address_line1, tenant.address_line2), tenant.city, tenant.region, tenant.postal_code,
                            tenant.country, tenant.locale),
        "tax_id": tenant.tax_id,
    }


def _bill_to(customer: Customer | None, locale: str) -> dict[str, Any]:
    if customer is None:
        return {"name": "", "address": []}
    return {
        "name": customer.name,
        "address": _address((customer.billing_address_line1, customer.billing_address_line2), customer.billing_city,
                            customer.billing_region, customer.billing_postal_code, customer.billing_country, locale),
    }


def _terms(issue: date, due: date) -> str:
    days = (due - issue).days
    return "Due on receipt" if days <= 0 else f"Net {days} day{'s' if days != 1 else ''}"


def invoice_document_context(session: Session, invoice: Invoice) -> dict[str, Any]:
    """Everything the template shows, formatted for the tenant's locale (SPEC I10-I14)."""
    tenant = get_tenant(session)
    locale = tenant.locale or fmt.DEFAULT_LOCALE
    cur = invoice.currency
    contract = session.get(BillingContract, invoice.contract_id)
    subs = subscription_names(session, invoice.lines)
    totals = document_totals(session, invoice)

    def money(value: Decimal) -> str:
        return fmt.money(value, cur, locale)

    lines = []
    for l in invoice.lines:
        name, product = subs.get(l.subscription_id or 0, (None, None))
        detail = [l.kind.value.replace("_", " ")]
        if name:
            detail.append(f"{product} · {name} (subscription #{l.subscription_id})" if product and product != name
                          else f"{name} (subscription #{l.subscription_id})")
        if l.source_currency and l.fx_rate is not None:
            detail.append(f"converted from {l.source_currency} at {fmt.quantity(l.fx_rate, locale)}")
        refs = sorted(x.id for x in l.lcls)
        if refs:
            detail.append("change logs " + ", ".join(map(str, refs)))
        # The line's tax as stored (SPEC I4): rate and code, and its tax; untaxed: empty.
        tax = {"rate": fmt.percent(l.tax_rate / 100, locale), "code": l.tax_code, "amount": money(l.tax_amount)} if l.tax_code else None
        lines.append({
            "line": l.line_no,
            "description": l.description,
            "detail": " · ".join(detail),
            "period": f"{fmt.day(l.period_from, locale)} – {fmt.day(l.period_to, locale)}",
            "days": "" if l.days == l.period_days else f"{l.days} of {l.period_days} days",
            "quantity": fmt.quantity(l.quantity, locale),
            "unit_price": fmt.unit_price(l.unit_price, cur, locale),
            "amount": money(l.amount),
            "tax": tax,
        })
    corrects = session.scalar(select(Invoice.number).where(Invoice.id == invoice.corrects_invoice_id)) if invoice.corrects_invoice_id else None
    return {
        "title": TITLES.get(invoice.document, "Invoice"),
        "credit_note": invoice.document == DocumentType.CREDIT_NOTE,
        "corrects": corrects,  # the invoice a credit note corrects (SPEC I6)
        "tax_exempt_reference": invoice.tax_exempt_reference,  # the customer's, when issued (SPEC I2)
        "line_tax": any(l["tax"] for l in lines),  # a Tax column only when some line is taxed
        "lang": locale.split("_")[0],
        "locale": locale,
        "number": invoice.number,
        "kind_label": KIND_LABELS.get(invoice.kind, invoice.kind.value.replace("_", " ")),
        "contract": contract.number if contract else "",
        "currency": cur,
        "issue_date": fmt.day(invoice.issue_date, locale),
        "due_date": fmt.day(invoice.due_date, locale),
        "payment_terms": _terms(invoice.issue_date, invoice.due_date),
        "period_from": fmt.day(invoice.period_from, locale),
        "period_to": fmt.day(invoice.period_to, locale),
        "seller": _seller(tenant),
        "bill_to": _bill_to(session.get(Customer, invoice.customer_id), locale),
        "lines": lines,
        "taxes": [{"name": t["name"], "rate": "" if t.get("rate") is None else fmt.percent(t["rate"], locale),
                   "base": money(t["base"]), "amount": money(t["amount"])} for t in totals["taxes"]],
        "subtotal": money(totals["subtotal"]),
        "tax_total": money(totals["tax_total"]),
        "total": money(totals["total"]),
        "figures": totals,  # the Decimals, for callers that need numbers (tests, e-mail subject lines)
    }


# ------------------------------------------------------------------------------ rendering


def _render(session: Session, invoice_number: str, *, standalone: bool) -> str:
    doc = invoice_document_context(session, load_invoice(session, invoice_number))
    css = Markup(stylesheet()) if standalone else ""  # a style sheet, not text: never escaped
    return environment().get_template(TEMPLATE).render(doc=doc, standalone=standalone, css=css)


def render_html(session: Session, invoice_number: str) -> str:
    """The whole document, its style sheet inlined (the HTML export; the PDF's source).
    ``invoice_number`` is the invoice's number as `w365 invoice` takes it (``INV-000123``)."""
    return _render(session, invoice_number, standalone=True)


def render_fragment(session: Session, invoice_number: str) -> Markup:
    """The document's ``<article>`` alone, for the invoice page's layout (which links the style
    sheet: the page's CSP allows no inline style). Already escaped by the template."""
    return Markup(_render(session, invoice_number, standalone=False))


class PDFUnavailable(W365Error):
    """WeasyPrint or the Pango library it needs is not installed."""


class _QuietFontSubsetting(logging.Filter):
    """WeasyPrint warns on every PDF when HarfBuzz's subsetter is missing and it subsets fonts
    with fontTools instead: the PDF is the same, the line is noise in every task log and CLI run
    (the Dockerfile installs libharfbuzz-subset0)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Using fontTools instead of HarfBuzz-Subset")


_QUIET = _QuietFontSubsetting()


def render_pdf(session: Session, invoice_number: str) -> bytes:
    """The document as PDF (A4), rendered by WeasyPrint from :func:`render_html`'s HTML."""
    return html_to_pdf(render_html(session, invoice_number), invoice_number)


def html_to_pdf(html: str, invoice_number: str = "") -> bytes:
    """:func:`render_html`'s document as PDF. Callers that hold a transaction render the HTML in
    it and this after it (a PDF takes a second or two; the store need not wait)."""
    try:
        from weasyprint import HTML
        from weasyprint.urls import URLFetcher
    except (ImportError, OSError) as exc:  # OSError: the Pango library is missing
        what = f"invoice {invoice_number}" if invoice_number else "the invoice"
        raise PDFUnavailable(f"cannot render {what} as PDF: WeasyPrint is not usable here ({exc})") from None
    weasyprint_log = logging.getLogger("weasyprint")
    if _QUIET not in weasyprint_log.filters:
        weasyprint_log.addFilter(_QUIET)
    # The document loads nothing: no URL of any scheme (file:, http:, data:) is fetched.
    pdf = HTML(string=html, url_fetcher=URLFetcher(allowed_protocols=frozenset())).write_pdf()
    assert pdf is not None  # write_pdf() without a target returns the bytes
    return bytes(pdf)
