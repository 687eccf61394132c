"""`w365 tax add/list` and the tax fields of `w365 invoice list/show --json` (SPEC I1, I4, I6)."""

import json
from datetime import date, datetime, timezone

import factories as f
from conftest import one_error
from w365.billing.changes import ChangeRequest, change_subscription
from w365.billing.invoicing.dispatcher import generate_change_log_invoices, generate_full_cycle_invoices
from w365.interfaces.cli import main
from w365.store.models import QRB


def test_i1_tax_add_and_list(store, capsys):
    """SPEC I1: codes and rates by hand; the list shows the days each rate is in force."""
    assert main(["tax", "add", "vat20", "20", "--from", "2025-01-01", "--name", "VAT 20 %", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"code": "VAT20", "rate": "20", "effective_from": "2025-01-01"}
    assert main(["tax", "add", "VAT20", "21.5", "--from", "2026-07-01"]) == 0
    assert capsys.readouterr().out == "tax code VAT20: 21.5 % from 2026-07-01\n"
    assert main(["tax", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"code": "VAT20", "name": "VAT 20 %", "rate": "20", "effective_from": "2025-01-01", "effective_to": "2026-06-30"},
        {"code": "VAT20", "name": "VAT 20 %", "rate": "21.5", "effective_from": "2026-07-01", "effective_to": None},
    ]
    assert main(["tax", "list", "--on", "2026-07-01", "--json"]) == 0
    assert [r["rate"] for r in json.loads(capsys.readouterr().out)] == ["21.5"]


def test_i1_a_bad_tax_add_is_one_clear_error_line(store, capsys):
    """SPEC I1: bounds and duplicates refused with one line, no traceback."""
    assert main(["tax", "add", "VAT20", "101", "--from", "2025-01-01"]) == 2
    assert one_error(capsys) == "error: argument RATE: 101 is above the maximum of 100 (see `w365 tax add --help`)"
    assert main(["tax", "add", "VAT20", "20", "--from", "2025-01-01"]) == 0
    capsys.readouterr()
    assert main(["tax", "add", "VAT20", "19", "--from", "2025-01-01"]) == 1
    assert one_error(capsys) == ("error: tax code VAT20: a rate effective 2025-01-01 exists already (20 %); "
                                 "rates are never edited: add one with a later effective date")


def test_i4_i6_invoice_list_and_show_json_give_subtotal_tax_total_and_total(store, session, capsys):
    """SPEC I4, I6: INV-000001 100.00 + VAT 20.00 = 120.00; the refunded cancellation on Dec 10
    is credit note CN-000001: -100.00 + 32.26 = -67.74, tax -20.00 + 6.45 = -13.55, -81.29."""
    assert main(["tax", "add", "VAT20", "20", "--from", "2025-01-01"]) == 0
    c = f.contract(session, f.customer(session, tax_code="VAT20"), start=date(2025, 12, 1), refunds_allowed=True, number="BC-1")
    sub = f.subscription(session, c, quantity=10, price="10.00", qrb=QRB.ALLOWED)
    session.commit()
    generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    change_subscription(session, sub.id, ChangeRequest(action="deactivate", apply_refund=True), now=datetime(2025, 12, 10, tzinfo=timezone.utc))
    session.commit()
    generate_change_log_invoices("monthly", date(2025, 12, 11), engine=store.engine)
    capsys.readouterr()
    assert main(["invoice", "list", "--json"]) == 0
    rows = [{k: r[k] for k in ("number", "document", "subtotal", "tax_total", "total")} for r in json.loads(capsys.readouterr().out)]
    assert rows == [
        {"number": "CN-000001", "document": "credit_note", "subtotal": "-67.74", "tax_total": "-13.55", "total": "-81.29"},
        {"number": "INV-000001", "document": "invoice", "subtotal": "100.00", "tax_total": "20.00", "total": "120.00"},
    ]
    assert main(["invoice", "show", "CN-000001", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["document"], doc["corrects"], doc["subtotal"], doc["tax_total"], doc["total"]) == (
        "credit_note", "INV-000001", "-67.74", "-13.55", "-81.29")
    assert [(l["amount"], l["tax_code"], l["tax_rate"], l["tax_amount"]) for l in doc["lines"]] == [
        ("-100.00", "VAT20", "20", "-20.00"), ("32.26", "VAT20", "20", "6.45")]
    assert doc["tax_summary"] == [{"code": "VAT20", "rate": "20", "taxable": "-67.74", "tax": "-13.55"}]
    assert main(["invoice", "show", "CN-000001"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Credit note CN-000001 (change_log) for Fabrikam, contract BC-1, corrects INV-000001\n")
    assert "subtotal -67.74, tax -13.55, total -81.29 USD (prices exclude tax)" in out


def test_i2_tax_assign_a_customer_exemption_and_a_product_override(store, session, capsys):
    """SPEC I2: an upgraded store's customers and products get their codes by hand."""
    cust = f.customer(session, name="Contoso")
    prod = f.product(session, sku="SKU-AZ")
    session.commit()
    assert main(["tax", "add", "US-WA", "6.5", "--from", "2025-01-01"]) == 0
    assert main(["tax", "add", "ZERO", "0", "--from", "2025-01-01"]) == 0
    capsys.readouterr()
    assert main(["tax", "assign", "--customer", "Contoso", "--code", "us-wa", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"customer": "Contoso", "tax_code": "US-WA", "tax_exempt_reference": None}
    assert main(["tax", "assign", "--customer", "Contoso", "--code", "US-WA", "--exempt", "WA-RESALE-7"]) == 0
    assert capsys.readouterr().out == "customer Contoso, tax_code US-WA, tax_exempt_reference WA-RESALE-7\n"
    assert main(["tax", "assign", "--product", "SKU-AZ", "--code", "ZERO"]) == 0
    assert capsys.readouterr().out == "product SKU-AZ, tax_code ZERO\n"
    f.fresh(session)
    assert (session.get(type(cust), cust.id).tax_exempt_reference, session.get(type(prod), prod.id).tax_code) == ("WA-RESALE-7", "ZERO")
    assert main(["tax", "assign", "--customer", "Contoso", "--code", "GST"]) == 1
    assert one_error(capsys) == "error: customer Contoso: tax_code GST is not a tax code (add it with `w365 tax add` or tax_codes.csv)"
    assert main(["tax", "assign", "--customer", "Nobody", "--no-code"]) == 2
    assert one_error(capsys) == "error: argument --customer: no customer 'Nobody'"
