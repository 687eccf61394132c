"""The invoicing engine end to end on the store (issue 4): SPEC J4-J6, B1-B5, C4, C11, C12, M1-M3."""

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

import factories as f
from w365.store.models import (
    QRB,
    BillingContract,
    ChangeBilling,
    ChangeEffective,
    ExchangeRate,
    Invoice,
    InvoiceLine,
    JobException,
    ProductKind,
)
from w365.billing.invoicing.dispatcher import generate_change_log_invoices, generate_full_cycle_invoices
from w365.billing.invoicing.preview import preview_invoice
from w365.billing.invoicing.document import render_html
from w365.billing.invoicing.export import invoice_document, to_csv
from w365.billing.changes import ChangeRequest, change_subscription
from w365.operations.audit import Difference, audit_billing

UTC = timezone.utc


def _lines(session, number=None):
    f.fresh(session)
    q = select(InvoiceLine).join(Invoice).order_by(Invoice.id, InvoiceLine.line_no)
    if number:
        q = q.where(Invoice.number == number)
    return session.scalars(q).all()


def _invoices(session):
    f.fresh(session)
    return session.scalars(select(Invoice).order_by(Invoice.id)).all()


@pytest.mark.parametrize(
    "freq,months,start,dates",
    [
        ("MONTHLY", "monthly", date(2024, 1, 1), [date(2024, 2, 1), date(2024, 3, 1), date(2024, 4, 1)]),
        ("QUARTERLY", "quarterly", date(2024, 1, 1), [date(2024, 4, 1), date(2024, 7, 1), date(2024, 10, 1), date(2025, 1, 1)]),
        ("ANNUAL", "annual", date(2024, 1, 1), [date(2025, 1, 1), date(2026, 1, 1)]),
        ("TRIENNIAL", "annual", date(2024, 1, 1), [date(2027, 1, 1), date(2030, 1, 1)]),
        ("SEMIANNUAL", "annual", date(2024, 1, 1), [date(2024, 7, 1), date(2025, 1, 1)]),
        ("MONTHLY", "monthly", date(2024, 1, 31), [date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30)]),
    ],
)
def test_b1_b2_each_cadence_bills_its_period_and_advances_from_the_anchor(store, session, freq, months, start, dates):
    f.add_unit(session, "SEMIANNUAL", 6, "Semi-Annual")
    c = f.contract(session, f.customer(session), start=start, frequency=freq, term_months=36)
    f.subscription(session, c, quantity=2, price="10.00")
    session.commit()
    seen = []
    for run_date in [start] + dates[:-1]:
        report = generate_full_cycle_invoices(months, run_date, engine=store.engine)
        assert len(report.invoices) == 1 and report.invoices[0].period_from == run_date.isoformat()
        f.fresh(session)
        seen.append(session.get(BillingContract, c.id).next_invoice_date)
    assert seen == dates
    # SPEC B5: a monthly price on a longer period is multiplied by the months in it.
    period_months = {"MONTHLY": 1, "QUARTERLY": 3, "ANNUAL": 12, "TRIENNIAL": 36, "SEMIANNUAL": 6}[freq]
    assert {l.amount for l in _lines(session)} == {Decimal(2 * 10 * period_months).quantize(Decimal("0.01"))}


def test_j5_annual_contracts_billed_30_days_in_advance(store, session):
    c = f.contract(session, f.customer(session), start=date(2025, 1, 1), frequency="ANNUAL", next_invoice_date=date(2026, 1, 1))
    c.billed_from = date(2025, 1, 1)
    f.subscription(session, c, start=date(2025, 1, 1))
    session.commit()
    assert generate_full_cycle_invoices("annual", date(2025, 12, 1), advance_days=30, engine=store.engine).invoices == []
    report = generate_full_cycle_invoices("annual", date(2025, 12, 2), advance_days=30, engine=store.engine)
    assert [(i.period_from, i.period_to) for i in report.invoices] == [("2026-01-01", "2026-12-31")]
    assert _invoices(session)[0].issue_date == date(2025, 12, 2)


def test_c12_j6_dec15_case_end_to_end_and_rerun_is_a_no_op(store, session):
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1))
    sub = f.subscription(session, c)
    change_subscription(session, sub.id, ChangeRequest(quantity=15, effective=ChangeEffective.CUSTOM, effective_date=date(2025, 12, 15)),
                        now=datetime(2025, 11, 20, tzinfo=UTC))
    session.commit()
    first = generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    lines = _lines(session)
    assert [(l.period_from, l.period_to, l.quantity, l.amount) for l in lines] == [
        (date(2025, 12, 1), date(2025, 12, 14), Decimal(10), Decimal("45.16")),
        (date(2025, 12, 15), date(2025, 12, 31), Decimal(15), Decimal("82.26")),
    ]
    assert [len(l.slcls) for l in lines] == [0, 1]  # M3: the line names the scheduled change it bills
    assert _invoices(session)[0].total == Decimal("127.42")  # M2
    again = generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    assert (again.invoices, len(_invoices(session)), _invoices(session)[0].total) == ([], 1, Decimal("127.42"))
    assert first.invoices[0].number == "INV-000001"


def test_b4_decrease_on_the_10th_credited_and_rebilled_by_change_log_invoice(store, session):
    """SPEC B4, S6, M3; issue 11 (credit and re-bill): Dec billed at 10 seats; 10 -> 8 on Dec 10
    bills 10 seats through Dec 10 and 8 from Dec 11."""
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1))
    sub = f.subscription(session, c, qrb=QRB.ALLOWED)
    session.commit()
    first = generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine).invoices[0].number
    change_subscription(session, sub.id, ChangeRequest(quantity=8), now=datetime(2025, 12, 10, 12, tzinfo=UTC))
    session.commit()
    report = generate_change_log_invoices("monthly", date(2025, 12, 15), engine=store.engine)
    assert [(i.kind, i.period_from, i.period_to, i.total) for i in report.invoices] == [("change_log", "2025-12-01", "2025-12-31", "-13.55")]
    lines = _lines(session, report.invoices[0].number)
    assert [(l.kind.value, l.period_from, l.period_to, l.quantity, l.days, l.amount) for l in lines] == [
        ("adjustment", date(2025, 12, 1), date(2025, 12, 31), Decimal(-10), 31, Decimal("-100.00")),  # reverses the Dec line
        ("adjustment", date(2025, 12, 1), date(2025, 12, 10), Decimal(10), 10, Decimal("32.26")),
        ("adjustment", date(2025, 12, 11), date(2025, 12, 31), Decimal(8), 21, Decimal("54.19")),
    ]
    assert lines[0].description.startswith(f"Credit: reverses {first} line 1: ")
    change = max(l.id for l in sub.change_logs)
    assert [l.id for l in lines[0].lcls] == [min(l.id for l in sub.change_logs)]  # M3: what the reversed line billed
    assert change in [l.id for l in lines[2].lcls]  # M3: the LCL that set 8 seats
    assert generate_change_log_invoices("monthly", date(2025, 12, 15), engine=store.engine).invoices == []
    assert generate_change_log_invoices("monthly", date(2025, 12, 22), engine=store.engine).invoices == []


def test_b4_price_only_change_mid_period_credit_and_rebill(store, session):
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1))
    sub = f.subscription(session, c)
    session.commit()
    generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    change_subscription(session, sub.id, ChangeRequest(selling_price=Decimal("12.00")), now=datetime(2025, 12, 20, 9, tzinfo=UTC))
    session.commit()
    report = generate_change_log_invoices("monthly", date(2025, 12, 21), engine=store.engine)
    lines = _lines(session, report.invoices[0].number)
    # Dec 1 -- 10 x 10.00 -- Dec 19 | Dec 20 -- 10 x 12.00 -- Dec 31
    assert sorted((l.unit_price, l.quantity, l.amount) for l in lines) == [
        (Decimal("10.000000"), Decimal(-10), Decimal("-100.00")),
        (Decimal("10.000000"), Decimal(10), Decimal("61.29")),
        (Decimal("12.000000"), Decimal(10), Decimal("46.45")),
    ]


def test_b4_next_cycle_contract_gets_the_difference_on_its_next_full_cycle(store, session):
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1), change_billing=ChangeBilling.NEXT_CYCLE)
    sub = f.subscription(session, c)
    session.commit()
    generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    change_subscription(session, sub.id, ChangeRequest(quantity=13), now=datetime(2025, 12, 20, 9, tzinfo=UTC))
    session.commit()
    assert generate_change_log_invoices("monthly", date(2025, 12, 22), engine=store.engine).invoices == []
    report = generate_full_cycle_invoices("monthly", date(2026, 1, 1), engine=store.engine)
    lines = _lines(session, report.invoices[0].number)
    assert [(l.kind.value, l.period_from, l.period_to, l.quantity, l.amount) for l in lines] == [
        ("adjustment", date(2025, 12, 1), date(2025, 12, 31), Decimal(-10), Decimal("-100.00")),  # Dec credited ...
        ("adjustment", date(2025, 12, 1), date(2025, 12, 19), Decimal(10), Decimal("61.29")),  # ... and re-billed
        ("adjustment", date(2025, 12, 20), date(2025, 12, 31), Decimal(13), Decimal("50.32")),  # 13 x 10 x 12/31
        ("recurring", date(2026, 1, 1), date(2026, 1, 31), Decimal(13), Decimal("130.00")),
    ]


def test_c4_cancellation_with_and_without_refund(store, session):
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1), refunds_allowed=True)
    refunded = f.subscription(session, c, name="refunded", qrb=QRB.ALLOWED)
    kept = f.subscription(session, c, name="kept", qrb=QRB.ALLOWED)
    session.commit()
    generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    now = datetime(2025, 12, 10, tzinfo=UTC)
    change_subscription(session, refunded.id, ChangeRequest(action="deactivate", apply_refund=True), now=now)
    change_subscription(session, kept.id, ChangeRequest(action="deactivate"), now=now)
    session.commit()
    report = generate_change_log_invoices("monthly", date(2025, 12, 11), engine=store.engine)
    lines = _lines(session, report.invoices[0].number)
    # Only the refunded one is credited, for the unused prepaid days Dec 11-31 (C4): Dec is
    # reversed and Dec 1-10 re-billed.
    assert [(l.subscription_id, l.quantity, l.days, l.amount) for l in lines] == [
        (refunded.id, Decimal(-10), 31, Decimal("-100.00")), (refunded.id, Decimal(10), 10, Decimal("32.26"))]
    assert sum(l.amount for l in lines) == Decimal("-67.74")
    # Neither is billed for January.
    assert generate_full_cycle_invoices("monthly", date(2026, 1, 1), engine=store.engine).invoices == []


def test_s2_suspended_subscription_with_unbilled_lcls(store, session):
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1), next_invoice_date=date(2025, 12, 1))
    sub = f.subscription(session, c, qrb=QRB.ALLOWED)
    change_subscription(session, sub.id, ChangeRequest(quantity=12), now=datetime(2025, 12, 5, tzinfo=UTC))  # unbilled LCL
    change_subscription(session, sub.id, ChangeRequest(action="suspend"), now=datetime(2025, 12, 9, tzinfo=UTC))
    session.commit()
    generate_full_cycle_invoices("monthly", date(2025, 12, 10), engine=store.engine)
    assert [(l.period_from, l.period_to, l.quantity) for l in _lines(session)] == [
        (date(2025, 12, 1), date(2025, 12, 4), Decimal(10)),
        (date(2025, 12, 5), date(2025, 12, 9), Decimal(12)),
    ]
    assert generate_full_cycle_invoices("monthly", date(2026, 1, 1), engine=store.engine).invoices == []  # stopped


@pytest.mark.parametrize("currency,price,expected", [("JPY", "1000", Decimal("548")), ("KWD", "3.125", Decimal("1.714"))])
def test_m2_jpy_and_kwd_contracts(store, session, currency, price, expected):
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1), currency=currency)
    f.subscription(session, c, quantity=1, price=price, cost="0", start=date(2025, 12, 15))
    session.commit()
    report = generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    assert _lines(session)[0].amount == expected and Decimal(report.invoices[0].total) == expected


def test_s1_subscription_in_another_currency(store, session):
    """A EUR subscription on a USD contract is converted at the EUR->USD rate effective on the
    period's first day; without a rate the contract is skipped and reported, others billed."""
    c = f.contract(session, f.customer(session, "Fabrikam"), start=date(2025, 12, 1), number="BC-EUR")
    f.subscription(session, c, currency="EUR", price="10.00")
    other = f.contract(session, f.customer(session, "Northwind"), start=date(2025, 12, 1), number="BC-OK")
    f.subscription(session, other)
    session.commit()
    report = generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    f.fresh(session)
    assert [i.contract for i in report.invoices] == ["BC-OK"]
    assert report.skipped == [{"contract": "BC-EUR", "reason": "no EUR->USD exchange rate effective on 2025-12-01 for a subscription priced in EUR"}]
    exc = session.scalars(select(JobException)).one()
    assert (exc.job, exc.entity_key, exc.as_of) == ("generate_full_cycle_invoice_monthly", "BC-EUR", date(2025, 12, 1))
    session.add(ExchangeRate(from_currency="EUR", to_currency="USD", rate=Decimal("1.08"), effective_from=date(2025, 1, 1)))
    session.commit()
    report = generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    line = _lines(session, report.invoices[0].number)[0]
    assert (line.unit_price, line.amount, line.source_currency, line.fx_rate) == (Decimal("10.800000"), Decimal("108.00"), "EUR", Decimal("1.08"))
    assert f.fresh(session).scalar(select(func.count()).select_from(JobException)) == 0  # cleared once billed


def test_b3_one_time_charge_billed_once_unprorated(store, session):
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1))
    fee = f.product(session, sku="W365-SETUP", kind=ProductKind.ONE_TIME)
    f.subscription(session, c, prod=fee, unit="ONE_TIME", price="450.00", quantity=1, start=date(2025, 12, 20), name="Onboarding")
    session.commit()
    generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    generate_full_cycle_invoices("monthly", date(2026, 1, 1), engine=store.engine)
    generate_change_log_invoices("monthly", date(2026, 1, 5), engine=store.engine)
    assert [(l.kind.value, l.amount, l.proration_factor) for l in _lines(session)] == [("one_time", Decimal("450.00"), Decimal(1))]


def test_m2_gapless_numbering_and_totals_are_sums_of_rounded_lines(store, session):
    for i in range(3):
        c = f.contract(session, f.customer(session, f"C{i}"), start=date(2025, 12, 1), number=f"BC-{i}")
        for k in range(3):
            f.subscription(session, c, name=f"s{k}", quantity=1, price="10.00", start=date(2025, 12, 2 + k))
    session.commit()
    generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine, batch=2)
    invoices = _invoices(session)
    assert [i.number for i in invoices] == ["INV-000001", "INV-000002", "INV-000003"]
    for inv in invoices:
        assert inv.total == sum(l.amount for l in _lines(session, inv.number))


def test_j6_a_failed_batch_leaves_earlier_batches_and_a_rerun_bills_the_rest_once(store, session, monkeypatch):
    """One transaction per batch (on PostgreSQL the next batch is planned while one is written):
    a batch that fails writes nothing, the batches before it stay, and a rerun finishes the job."""
    import w365.billing.invoicing.dispatcher as dispatcher

    for i in range(5):
        c = f.contract(session, f.customer(session, f"C{i}"), start=date(2025, 12, 1), number=f"BC-{i}")
        f.subscription(session, c, quantity=1, price="10.00")
    session.commit()
    real_write, calls = dispatcher.write_plans, []

    def failing_second_batch(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full while writing batch 2")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(dispatcher, "write_plans", failing_second_batch)
    with pytest.raises(OSError, match="batch 2"):
        generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine, batch=2)
    assert [i.contract_id for i in _invoices(session)] == [c.id for c in session.scalars(select(BillingContract).order_by(BillingContract.id)).all()[:2]]
    monkeypatch.setattr(dispatcher, "write_plans", real_write)
    report = generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine, batch=2)
    assert sorted(i.contract for i in report.invoices) == ["BC-2", "BC-3", "BC-4"]
    per_contract = f.fresh(session).execute(select(Invoice.contract_id, func.count()).group_by(Invoice.contract_id)).all()
    assert len(per_contract) == 5 and all(n == 1 for _, n in per_contract)
    assert [i.sequence for i in _invoices(session)] == [1, 2, 3, 4, 5]  # the failed batch gave its numbers back


def test_preview_writes_nothing_and_exports_are_auditable(store, session):
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1), number="BC-P")
    f.subscription(session, c)
    session.commit()
    drafts = preview_invoice(session, "BC-P", date(2025, 11, 25))
    session.rollback()
    assert [(d["kind"], d["period_from"], d["total"]) for d in drafts] == [("full_cycle", "2025-12-01", "100.00")]
    assert _invoices(session) == []
    generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    doc = invoice_document(f.fresh(session), "INV-000001")
    csv_text = to_csv(doc)
    assert csv_text.splitlines()[1].startswith("INV-000001,1,recurring,")
    assert ",100.00,USD," in csv_text.splitlines()[1]
    # The HTML is the invoice document now (issue 16, SPEC I10): the same template as the page
    # and the PDF, amounts in the tenant's locale (en_US by default).
    html = render_html(f.fresh(session), "INV-000001")
    assert "Invoice INV-000001" in html and "$100.00" in html and "change logs" in html


def test_bad_contract_data_is_skipped_others_billed(store, session):
    good = f.contract(session, f.customer(session, "good"), start=date(2025, 12, 1), number="BC-GOOD")
    f.subscription(session, good)
    bad = f.contract(session, f.customer(session, "bad"), start=date(2025, 12, 1), number="BC-BAD", next_invoice_date=date(2025, 12, 1))
    f.subscription(session, bad)
    bad.next_invoice_date = date(2025, 11, 17)  # not a period boundary of a contract anchored on the 1st
    session.commit()
    report = generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    assert [i.contract for i in report.invoices] == ["BC-GOOD"]
    assert report.skipped[0]["contract"] == "BC-BAD" and "not a period boundary" in report.skipped[0]["reason"]


def test_j6_two_parallel_runs_never_bill_a_contract_twice(store, session):
    from w365.interfaces.demo import DemoSpec, load_demo

    load_demo(session, DemoSpec(customers=15, contracts_per_customer=2, subscriptions_per_contract=3, as_of=date(2026, 1, 1), fresh=True,
                                frequencies=("MONTHLY",)))
    session.commit()
    reports = f.run_in_parallel(lambda: generate_full_cycle_invoices("monthly", date(2026, 1, 31), engine=store.engine, batch=5))
    f.fresh(session)
    numbers = [i.contract for r in reports for i in r.invoices]
    per_period = session.execute(select(Invoice.contract_id, Invoice.period_from, func.count()).group_by(Invoice.contract_id, Invoice.period_from)).all()
    assert per_period and all(n == 1 for _, _, n in per_period)
    assert len(numbers) == len(per_period) == 30
    seqs = sorted(session.scalars(select(Invoice.sequence)))
    assert seqs == list(range(1, len(seqs) + 1))  # gapless even with two workers
    assert audit_billing(session).differences == []


def test_verify_billing_catches_a_day_billed_twice(store, session):
    """Issue 11: the audit behind `w365 verify billing` is not a tautology: a line billing days
    already billed (inserted behind the engine's back) shows in the days, the header and links."""
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1), change_billing=ChangeBilling.NEXT_CYCLE, number="BC-2X")
    sub = f.subscription(session, c)
    session.commit()
    report = generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    generate_full_cycle_invoices("monthly", date(2026, 1, 1), engine=store.engine)
    f.fresh(session)
    assert audit_billing(session).differences == []
    number = report.invoices[0].number
    inv = session.scalars(select(Invoice).where(Invoice.number == number)).one()
    session.add(InvoiceLine(invoice_id=inv.id, line_no=99, subscription_id=sub.id, kind="adjustment", description="double",
                            billing_period_from=date(2025, 12, 1), billing_period_to=date(2025, 12, 31), period_from=date(2025, 12, 5),
                            period_to=date(2025, 12, 6), quantity=Decimal(10), unit_price=Decimal(10), days=2, period_days=31,
                            proration_factor=Decimal("0.0645161290"), amount=Decimal("6.45")))
    session.commit()
    dup = dict(subscription=sub.id, first_day=date(2025, 12, 5), last_day=date(2025, 12, 6))
    assert audit_billing(session).differences == [
        Difference("invoice_total", "BC-2X", "106.45", "100.00", invoice=number),
        Difference("link", "BC-2X", "a link to the LCLs or SLCLs it bills", "none", invoice=number, line=99, **dup),
        Difference("day", "BC-2X", "10 x 10.000000", "20 x 10.000000", **dup),
    ]


@pytest.mark.parametrize("new_qty", [5, 11])
def test_c3_on_renewal_change_bills_new_quantity_from_the_first_day_of_the_new_term(store, session, new_qty):
    """SPEC C3, S6; issue 11: a renewed term starts with its new quantity, up or down. An annual
    contract renewing on 2026-01-01 with 8 seats changed On Renewal to 5 (or 11) bills the new
    quantity for the whole 2026 term, not 8 seats for Jan 1 (the D / D+1 rule is for changes
    inside a term)."""
    # 2025-01-01 ---- term 1: 8 seats ---- 2025-12-31 | 2026-01-01 ---- term 2: new_qty ---- 2026-12-31
    c = f.contract(session, f.customer(session), start=date(2025, 1, 1), frequency="ANNUAL", end=date(2025, 12, 31))
    sub = f.subscription(session, c, quantity=8, price="10.00", qrb=QRB.WINDOW)
    session.commit()
    generate_full_cycle_invoices("annual", date(2025, 1, 1), engine=store.engine)
    res = change_subscription(session, sub.id, ChangeRequest(quantity=new_qty, effective=ChangeEffective.ON_RENEWAL),
                              now=datetime(2025, 6, 1, tzinfo=UTC))
    slcl = res.slcl
    assert (slcl.effective_date, slcl.bill_from, slcl.scheduled_for) == (date(2026, 1, 1), date(2026, 1, 1), datetime(2026, 1, 1, 0, 5, tzinfo=UTC))
    session.commit()
    # Billed 30 days ahead (J5): the scheduled change is laid over the new term (C12).
    report = generate_full_cycle_invoices("annual", date(2025, 12, 2), advance_days=30, engine=store.engine)
    lines = _lines(session, report.invoices[0].number)
    assert [(l.period_from, l.period_to, l.quantity, l.amount) for l in lines] == [
        (date(2026, 1, 1), date(2026, 12, 31), Decimal(new_qty), Decimal(new_qty * 120).quantize(Decimal("0.01")))
    ]
    # The merge on the renewal day writes an LCL billed from that day: nothing more to bill (C11).
    from w365.billing.scheduled_changes import merge_due_slcls

    merged = merge_due_slcls(datetime(2026, 1, 1, 0, 5, tzinfo=UTC), engine=store.engine)
    assert merged.merged == [slcl.id] and merged.failed == {}
    f.fresh(session)
    assert max(sub.change_logs, key=lambda l: l.id).bill_from == date(2026, 1, 1)
    assert generate_change_log_invoices("annual", date(2026, 1, 5), engine=store.engine).invoices == []
