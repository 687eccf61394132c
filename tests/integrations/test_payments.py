"""Update Payment Status of Invoice from Accounting System (SPEC P2, M1, M2)."""

import json
from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import func, select

import factories as f
from pc_server import pc  # noqa: F401 - pc is a fixture
from w365.orchestration import jobs
from w365.store.models import Invoice, InvoiceKind, JobException, PaymentStatus

AS_OF = date(2026, 2, 10)


def seed(store):
    with store.session() as s:
        cust = f.customer(s)
        usd = f.contract(s, cust, number="BC-USD")
        jpy = f.contract(s, cust, currency="JPY", number="BC-JPY")
        for seq, (c, total) in enumerate(((usd, "100.00"), (usd, "250.50"), (usd, "80.00"), (usd, "99.99"), (jpy, "15000"), (usd, "10.00")), start=1):
            s.add(Invoice(number=f"INV-{seq:06d}", sequence=seq, contract_id=c.id, customer_id=cust.id, kind=InvoiceKind.FULL_CYCLE,
                          currency=c.currency, issue_date=date(2026, 1, seq), due_date=date(2026, 2, seq), period_from=date(2026, 1, seq),
                          period_to=date(2026, 1, seq), total=Decimal(total), created_at=datetime(2026, 1, 1, tzinfo=timezone.utc)))
        s.commit()


CSV = """invoice_number,status,amount_paid,paid_on
INV-000001,paid,100.00,2026-02-03
INV-000002,partially_paid,50.25,2026-02-04
INV-000003,,,
INV-000004,,99.99,2026-02-05
INV-000005,paid,15000.5,2026-02-05
INV-000006,paid,12.00,2026-02-06
INV-999999,paid,10.00,2026-02-06
INV-000003,unpaid,abc,
"""


def state(store):
    with store.session() as s:
        return {i.number: (i.payment_status, i.amount_paid, i.paid_on) for i in s.scalars(select(Invoice))}


def run_file(store, tmp_path, text=CSV):
    path = tmp_path / "payments.csv"
    path.write_text(text)
    return jobs.run("update_payment_status", AS_OF.isoformat(), path=str(path))


def test_p2_file_adapter_marks_paid_and_partially_paid_and_reports_the_rest(store, tmp_path):
    seed(store)
    report = run_file(store, tmp_path)
    st = state(store)
    assert st["INV-000001"] == (PaymentStatus.PAID, Decimal("100.00"), date(2026, 2, 3))
    assert st["INV-000002"] == (PaymentStatus.PARTIALLY_PAID, Decimal("50.25"), date(2026, 2, 4))
    assert st["INV-000004"] == (PaymentStatus.PAID, Decimal("99.99"), date(2026, 2, 5))  # status from the amount
    # over-payment: recorded as received, and reported
    assert st["INV-000006"] == (PaymentStatus.PAID, Decimal("12.00"), date(2026, 2, 6))
    assert report["problems"]["INV-000006"] == "over-payment: 12.00 USD paid on an invoice of 10.00 USD (2.00 USD too much)"
    assert report["problems"]["INV-999999"].startswith("unknown invoice number")
    assert "at most 0 are allowed for JPY" in report["problems"]["INV-000005"]  # ¥ has no minor unit
    assert st["INV-000005"][0] == PaymentStatus.UNPAID
    assert "malformed payment record" in report["problems"]["payments.csv line 9"]
    assert st["INV-000003"][0] == PaymentStatus.UNPAID  # line 4 had neither status nor amount
    assert "neither status nor amount_paid" in report["problems"]["INV-000003"]
    with store.session() as s:
        assert set(s.scalars(select(JobException.entity_key))) == set(report["problems"])


def test_p2_rerun_changes_nothing(store, tmp_path):
    seed(store)
    first = run_file(store, tmp_path)
    before = state(store)
    again = run_file(store, tmp_path)
    assert state(store) == before
    assert again["updated"] == [] and again["unchanged"] == len(first["updated"])
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(JobException)) == len(first["problems"])


def test_p2_payment_reversal_is_set_not_added(store, tmp_path):
    seed(store)
    run_file(store, tmp_path, "invoice_number,status,amount_paid,paid_on\nINV-000001,paid,100.00,2026-02-03\n")
    run_file(store, tmp_path, "invoice_number,status,amount_paid,paid_on\nINV-000001,unpaid,0,\n")
    assert state(store)["INV-000001"] == (PaymentStatus.UNPAID, Decimal("0"), None)


def test_p2_rest_adapter_pages_through_the_accounting_feed(store, pc, monkeypatch):
    seed(store)
    pc.static_token = "acct-token-123"
    pc.payments = [
        {"invoiceNumber": "INV-000001", "status": "paid", "amountPaid": Decimal("100.00"), "paidOn": "2026-02-03"},
        {"invoiceNumber": "INV-000002", "status": "Partially Paid", "amountPaid": Decimal("0.01"), "paidOn": "2026-02-04"},
        {"invoiceNumber": "INV-000004", "status": "paid"},
        {"invoiceNumber": "INV-404", "status": "paid"},
    ]
    monkeypatch.setenv("AIRFLOW_CONN_W365_ACCOUNTING", json.dumps({
        "conn_type": "http", "host": pc.base_url, "password": "acct-token-123", "extra": {"backoff_base": "0.001"}}))
    report = jobs.run("update_payment_status", AS_OF.isoformat())
    st = state(store)
    assert st["INV-000002"] == (PaymentStatus.PARTIALLY_PAID, Decimal("0.01"), date(2026, 2, 4))
    assert st["INV-000004"] == (PaymentStatus.PAID, Decimal("99.99"), AS_OF)  # paid in full, on the run date
    assert list(report["problems"]) == ["INV-404"]
    assert sum(1 for m, p, h in pc.requests if p.startswith("/payments")) == 2  # two pages


def test_p2_no_accounting_system_configured_is_reported_not_failed(store):
    seed(store)
    report = jobs.run("update_payment_status", AS_OF.isoformat())
    assert report["status"].startswith("not configured")
    assert all(st[0] == PaymentStatus.UNPAID for st in state(store).values())
