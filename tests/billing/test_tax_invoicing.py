"""Tax and credit notes end to end on the store (SPEC I2-I7, issue 16): the invoice runs tax each
line, total the documents, issue negative ones as credit notes, and the auditor agrees."""

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select, text

import factories as f
from w365.billing.changes import ChangeRequest, change_subscription
from w365.billing.invoicing.dispatcher import generate_change_log_invoices, generate_full_cycle_invoices
from w365.billing.invoicing.export import invoice_document, list_invoices
from w365.billing.tax_codes import add_tax_rate, list_tax_rates
from w365.errors import ValidationError
from w365.operations.audit import Difference, audit_billing
from w365.store.models import QRB, BillingContract, Invoice, InvoiceLine, JobException, Tenant

UTC = timezone.utc
D = Decimal


def _taxes(session):
    add_tax_rate(session, "VAT20", "20", date(2025, 1, 1), "VAT 20 %")
    add_tax_rate(session, "REDUCED", "5", date(2025, 1, 1), "Reduced 5 %")


def _lines(session, number):
    f.fresh(session)
    return session.scalars(select(InvoiceLine).join(Invoice).where(Invoice.number == number).order_by(InvoiceLine.line_no)).all()


def _clean_audit(session):
    report = audit_billing(f.fresh(session))
    session.commit()
    assert report.differences == [], [str(d) for d in report.differences]


def test_i2_i4_mixed_codes_product_override_and_the_documents_totals(store, session):
    """SPEC I2, I4: the customer is VAT20; product B overrides it with REDUCED (5 %).

    December, monthly, billed Dec 1:
      A: 10 x 10.00 = 100.00 at 20 % -> 20.00
      B:  3 x 11.11 =  33.33 at  5 % ->  1.6665 -> 1.67
      subtotal 133.33, tax 21.67, total 155.00
    """
    _taxes(session)
    cust = f.customer(session, tax_code="VAT20")
    c = f.contract(session, cust, start=date(2025, 12, 1))
    f.subscription(session, c, name="A", quantity=10, price="10.00")
    b_product = f.product(session, sku="SKU-B")
    b_product.tax_code = "REDUCED"
    f.subscription(session, c, name="B", quantity=3, price="11.11", prod=b_product)
    session.commit()
    report = generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    [summary] = report.invoices
    assert (summary.number, summary.document, summary.subtotal, summary.tax_total, summary.total) == (
        "INV-000001", "invoice", "133.33", "21.67", "155.00")
    assert [(l.amount, l.tax_code, l.tax_rate, l.tax_amount) for l in _lines(session, "INV-000001")] == [
        (D("100.00"), "VAT20", D("20"), D("20.00")), (D("33.33"), "REDUCED", D("5"), D("1.67"))]
    doc = invoice_document(session, "INV-000001")
    assert (doc["document"], doc["subtotal"], doc["tax_total"], doc["total"], doc["corrects"]) == (
        "invoice", D("133.33"), D("21.67"), D("155.00"), None)
    assert doc["tax_summary"] == [
        {"code": "VAT20", "rate": D("20"), "taxable": D("100.00"), "tax": D("20.00")},
        {"code": "REDUCED", "rate": D("5"), "taxable": D("33.33"), "tax": D("1.67")},
    ]
    [row] = list_invoices(session)
    assert (row["document"], row["subtotal"], row["tax_total"], row["total"]) == ("invoice", D("133.33"), D("21.67"), D("155.00"))
    _clean_audit(session)


def test_i2_an_exempt_customer_is_not_taxed_and_the_reference_is_on_the_invoice(store, session):
    """SPEC I2: exemption beats the customer's code and the product override: 100.00, tax 0."""
    _taxes(session)
    cust = f.customer(session, tax_code="VAT20", tax_exempt_reference="EXEMPT-CHARITY-42")
    c = f.contract(session, cust, start=date(2025, 12, 1))
    prod = f.product(session, sku="SKU-R")
    prod.tax_code = "REDUCED"
    f.subscription(session, c, quantity=10, price="10.00", prod=prod)
    session.commit()
    generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    assert [(l.tax_code, l.tax_rate, l.tax_amount) for l in _lines(session, "INV-000001")] == [(None, D(0), D("0.00"))]
    inv = session.scalars(select(Invoice)).one()
    assert (inv.subtotal, inv.tax_total, inv.total, inv.tax_exempt_reference) == (D("100.00"), D("0.00"), D("100.00"), "EXEMPT-CHARITY-42")
    _clean_audit(session)


def test_i3_the_rate_effective_on_the_lines_first_day_and_no_rewriting_of_issued_tax(store, session):
    """SPEC I3: VAT 19 % through 2025-12-31, 21 % from 2026-01-01. December's 100.00 bears
    19.00, January's 21.00. A rate from 2025-12-01 would change December's issued tax: refused,
    naming the invoice and the earliest date accepted (Dec 2)."""
    add_tax_rate(session, "VAT", "19", date(2025, 1, 1))
    add_tax_rate(session, "VAT", "21", date(2026, 1, 1))
    c = f.contract(session, f.customer(session, tax_code="VAT"), start=date(2025, 12, 1))
    f.subscription(session, c, quantity=10, price="10.00")
    session.commit()
    generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    generate_full_cycle_invoices("monthly", date(2026, 1, 1), engine=store.engine)
    assert [(l.tax_rate, l.tax_amount) for l in _lines(session, "INV-000001")] == [(D("19"), D("19.00"))]
    assert [(l.tax_rate, l.tax_amount) for l in _lines(session, "INV-000002")] == [(D("21"), D("21.00"))]
    with pytest.raises(ValidationError) as exc:
        add_tax_rate(session, "VAT", "20", date(2025, 12, 1))
    assert str(exc.value) == (
        "tax code VAT: 20 % from 2025-12-01 would change issued tax: INV-000001 line 1 (from 2025-12-01) was taxed at 19 %; "
        "issued invoices keep their tax. Give an effective date of 2025-12-02 or later (SPEC I3)")
    session.rollback()
    add_tax_rate(session, "VAT", "20", date(2025, 12, 2))  # governs no issued line: accepted
    session.commit()
    assert [(r["rate"], r["effective_from"], r["effective_to"]) for r in list_tax_rates(session)] == [
        (D("19"), date(2025, 1, 1), date(2025, 12, 1)), (D("20"), date(2025, 12, 2), date(2025, 12, 31)),
        (D("21"), date(2026, 1, 1), None)]
    _clean_audit(session)


def _refunded_cancellation(store, session, *, then_code=None):
    """December billed Dec 1 at 10 x 10.00 (INV-000001); cancelled with refund on Dec 10."""
    _taxes(session)
    cust = f.customer(session, tax_code="VAT20")
    c = f.contract(session, cust, start=date(2025, 12, 1), refunds_allowed=True)
    sub = f.subscription(session, c, quantity=10, price="10.00", qrb=QRB.ALLOWED)
    session.commit()
    generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    if then_code:
        cust.tax_code = then_code
    change_subscription(session, sub.id, ChangeRequest(action="deactivate", apply_refund=True), now=datetime(2025, 12, 10, tzinfo=UTC))
    session.commit()
    return generate_change_log_invoices("monthly", date(2025, 12, 11), engine=store.engine)


def test_i6_a_refunded_cancellation_is_a_credit_note_referring_to_the_invoice(store, session):
    """SPEC I6, I5, C4: December reversed (-100.00, tax -20.00) and Dec 1-10 re-billed
    (10 x 10.00 x 10/31 = 32.26, tax 6.452 -> 6.45): subtotal -67.74, tax -13.55, total -81.29.
    Negative: credit note CN-000001 (sequence -1), correcting INV-000001; the next invoice is
    INV-000002: neither series has a gap."""
    report = _refunded_cancellation(store, session)
    [cn] = report.invoices
    assert (cn.number, cn.document, cn.subtotal, cn.tax_total, cn.total) == ("CN-000001", "credit_note", "-67.74", "-13.55", "-81.29")
    assert [(l.amount, l.tax_code, l.tax_rate, l.tax_amount) for l in _lines(session, "CN-000001")] == [
        (D("-100.00"), "VAT20", D("20"), D("-20.00")), (D("32.26"), "VAT20", D("20"), D("6.45"))]
    doc = invoice_document(session, "CN-000001")
    assert (doc["document"], doc["corrects"], doc["total"]) == ("credit_note", "INV-000001", D("-81.29"))
    inv = session.scalars(select(Invoice).where(Invoice.number == "CN-000001")).one()
    assert inv.sequence == -1
    other = f.contract(session, f.customer(session, name="Contoso", tax_code="VAT20"), start=date(2026, 1, 1))
    f.subscription(session, other, quantity=1, price="50.00")
    session.commit()
    [nxt] = generate_full_cycle_invoices("monthly", date(2026, 1, 1), engine=store.engine).invoices
    assert (nxt.number, nxt.document, nxt.total) == ("INV-000002", "invoice", "60.00")
    tenant = f.fresh(session).get(Tenant, 1)
    assert (tenant.next_invoice_number, tenant.next_credit_note_number) == (3, 2)
    _clean_audit(session)


def test_i5_a_reversal_takes_back_the_tax_charged_even_after_the_code_changed(store, session):
    """SPEC I5: the customer moves to REDUCED (5 %) after December was billed at 20 %. The
    reversal takes back 20.00 (the line's own code and rate); the re-billed Dec 1-10 (32.26) is
    taxed under today's code: 1.613 -> 1.61. Total -67.74 - 18.39 = -86.13."""
    [cn] = _refunded_cancellation(store, session, then_code="REDUCED").invoices
    assert [(l.amount, l.tax_code, l.tax_amount) for l in _lines(session, cn.number)] == [
        (D("-100.00"), "VAT20", D("-20.00")), (D("32.26"), "REDUCED", D("1.61"))]
    assert (cn.number, cn.tax_total, cn.total) == ("CN-000001", "-18.39", "-86.13")
    _clean_audit(session)


def test_i3_a_code_without_a_rate_on_the_day_skips_the_contract_with_its_reason(store, session):
    """SPEC I3, J6: NEWTAX's first rate is from 2026-06-01; December cannot be taxed: that
    contract is skipped (not billed, not advanced, the reason recorded); the other is billed."""
    add_tax_rate(session, "NEWTAX", "10", date(2026, 6, 1))
    bad = f.contract(session, f.customer(session, tax_code="NEWTAX"), start=date(2025, 12, 1), number="BC-NEWTAX")
    f.subscription(session, bad)
    good = f.contract(session, f.customer(session, name="Contoso"), start=date(2025, 12, 1), number="BC-GOOD")
    f.subscription(session, good)
    session.commit()
    report = generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    reason = ("tax code NEWTAX has no rate effective on 2025-12-01 (its first is from 2026-06-01): "
              "add the rate with `w365 tax add` (SPEC I3)")
    assert report.skipped == [{"contract": "BC-NEWTAX", "reason": reason}]
    assert [(i.number, i.contract) for i in report.invoices] == [("INV-000001", "BC-GOOD")]
    f.fresh(session)
    assert session.get(BillingContract, bad.id).next_invoice_date == date(2025, 12, 1)
    assert session.scalars(select(JobException.reason).where(JobException.entity_key == "BC-NEWTAX")).all() == [reason]


def test_i7_the_auditor_names_a_wrong_tax(store, session):
    """SPEC I7: a line's tax, a document's tax total and its kind are re-derived independently."""
    test_i2_i4_mixed_codes_product_override_and_the_documents_totals(store, session)
    with store.engine.begin() as conn:
        if store.is_postgres:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            for name in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ('invoice', 'invoice_line')")).scalars():
                conn.execute(text(f'DROP TRIGGER "{name}"'))
        conn.execute(text("UPDATE invoice_line SET tax_amount = '1.66' WHERE line_no = 2"))
    report = audit_billing(f.fresh(session))
    contract = session.scalars(select(BillingContract.number)).one()
    assert report.differences == [
        Difference("tax_total", contract, "21.66", "21.67", invoice="INV-000001"),
        Difference("invoice_total", contract, "154.99", "155.00", invoice="INV-000001"),
        Difference("tax_amount", contract, "1.67", "1.66", invoice="INV-000001", line=2, subscription=report.differences[2].subscription,
                   first_day=date(2025, 12, 1), last_day=date(2025, 12, 31)),
    ]


def test_i4_preview_and_dry_run_show_the_tax_they_would_bill(store, session):
    """SPEC I4: a preview (and a dry run) says what the document would be and its tax, and
    writes nothing: 10 x 10.00 = 100.00 + VAT 20.00 = 120.00."""
    from w365.billing.invoicing.preview import preview_invoice

    _taxes(session)
    c = f.contract(session, f.customer(session, tax_code="VAT20"), start=date(2025, 12, 1), number="BC-P")
    f.subscription(session, c, quantity=10, price="10.00")
    session.commit()
    [d] = preview_invoice(session, "BC-P", date(2025, 12, 1))
    session.rollback()
    assert (d["document"], d["subtotal"], d["tax_total"], d["total"]) == ("invoice", "100.00", "20.00", "120.00")
    assert [(l["amount"], l["tax_code"], l["tax_rate"], l["tax_amount"]) for l in d["lines"]] == [("100.00", "VAT20", "20", "20.00")]
    report = generate_full_cycle_invoices("monthly", date(2025, 12, 1), dry_run=True, engine=store.engine)
    assert [(x["total"], x["tax_total"]) for x in report.drafts] == [("120.00", "20.00")] and report.invoices == []
    assert f.fresh(session).scalars(select(Invoice)).all() == []


def test_i2_i4_usage_invoices_are_taxed_with_the_products_override(store, session):
    """SPEC I2, I4, B3: a usage invoice goes through the same writer: December's usage of 50.00
    at cost with a 20 % markup is 60.00; the Azure product's REDUCED (5 %) beats the customer's
    VAT20: tax 3.00, total 63.00. The document (page, HTML export, PDF: one template) and the CSV
    show subtotal, tax per code and total."""
    from w365.billing.invoicing.document import render_html
    from w365.billing.invoicing.export import to_csv
    from w365.billing.usage import bill_usage_month
    from w365.store.models import ProductKind, UsageKind, UsageRecord

    _taxes(session)
    cust = f.customer(session, tax_code="VAT20")
    c = f.contract(session, cust, start=date(2025, 12, 1))
    azure = f.product(session, sku="AZ", kind=ProductKind.USAGE)
    azure.tax_code = "REDUCED"
    sub = f.subscription(session, c, quantity=1, price="0", cost="0", name="azure", markup_pct=D("20"), prod=azure)
    session.add(UsageRecord(kind=UsageKind.FINAL, subscription_id=sub.id, customer_id=cust.id, usage_date=date(2025, 12, 20),
                            meter_id="m", quantity=D(1), unit_price=D(1), pre_tax_total=D("50.0000"), currency="USD"))
    session.commit()
    bill_usage_month(date(2025, 12, 1), as_of=date(2026, 1, 1), engine=store.engine)
    inv = f.fresh(session).scalars(select(Invoice).where(Invoice.kind == "usage")).one()
    assert (inv.subtotal, inv.tax_total, inv.total) == (D("60.00"), D("3.00"), D("63.00"))
    assert [(l.tax_code, l.tax_rate, l.tax_amount) for l in inv.lines] == [("REDUCED", D("5"), D("3.00"))]
    html = render_html(session, inv.number)
    assert "prices exclude tax" in html and '<td class="n" id="subtotal">$60.00</td>' in html
    assert '<tr><td>Reduced 5 % (REDUCED)</td><td class="n">5%</td><td class="n">$60.00</td><td class="n">$3.00</td></tr>' in html
    assert '<td class="n" id="tax-total">$3.00</td>' in html and '<td class="n" id="total-due">$63.00</td>' in html
    import csv
    import io

    from w365.billing.invoicing.export import CSV_COLUMNS

    header, line, total = list(csv.reader(io.StringIO(to_csv(invoice_document(session, inv.number)))))
    assert header == CSV_COLUMNS
    col = {name: i for i, name in enumerate(CSV_COLUMNS)}
    assert [line[col[k]] for k in ("amount", "tax_code", "tax_rate", "tax_amount")] == ["60.00", "REDUCED", "5", "3.00"]
    assert [total[col[k]] for k in ("kind", "amount", "tax_amount")] == ["total", "63.00", "3.00"]
    _clean_audit(session)


@pytest.mark.parametrize("currency, price, rate, amount, tax, total", [
    # JPY, no minor unit: 1 x 1,235 = 1,235; 10 % = 123.5 -> 124 (half-up); total 1,359.
    ("JPY", "1235", "10", D("1235"), D("124"), D("1359")),
    # KWD, three decimals: 1 x 12.345 = 12.345; 5 % = 0.61725 -> 0.617; total 12.962.
    ("KWD", "12.345", "5", D("12.345"), D("0.617"), D("12.962")),
])
def test_i4_jpy_and_kwd_invoices_round_tax_to_their_minor_unit(store, session, currency, price, rate, amount, tax, total):
    """SPEC I4, M2: the tax of a line is rounded once to the invoice currency's minor unit, and
    the independent auditor (its own ISO 4217 table and rounding) agrees."""
    add_tax_rate(session, "T", rate, date(2025, 1, 1))
    c = f.contract(session, f.customer(session, tax_code="T"), start=date(2025, 12, 1), currency=currency)
    f.subscription(session, c, quantity=1, price=price, cost="0")
    session.commit()
    [inv] = generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine).invoices
    assert (inv.subtotal, inv.tax_total, inv.total) == (str(amount), str(tax), str(total))
    assert [(l.amount, l.tax_amount) for l in _lines(session, inv.number)] == [(amount, tax)]
    _clean_audit(session)


def test_i7_i8_the_auditor_accepts_negative_invoices_issued_before_credit_notes():
    """SPEC I7, I8: invoices numbered before ``tenant.credit_notes_from`` (migration 0006 sets it
    to the next invoice number) were issued when a negative correction was an invoice: accepted.
    One numbered after it must be a credit note."""
    from types import SimpleNamespace

    from w365.operations.audit.tax import check_document

    line = SimpleNamespace(amount=D("-67.74"), tax_amount=D("0"))
    found: list[tuple[str, str, str]] = []

    def inv(seq):
        return SimpleNamespace(sequence=seq, document="invoice", total=D("-67.74"), tax_total=D("0"), currency="USD",
                               corrects_invoice_id=None, contract_id=1)

    check_document(inv(7), [line], {}, lambda *d: found.append(d), credit_notes_from=8)
    assert found == []
    check_document(inv(8), [line], {}, lambda *d: found.append(d), credit_notes_from=8)
    assert found == [("document", "credit_note (total -67.74)", "invoice")]
