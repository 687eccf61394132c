"""Add Incentive Plan: commission per salesperson from invoiced revenue and margin (SPEC J1, M2)."""

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

import factories as f
from w365.orchestration import jobs
from w365.store.models import IncentivePlan, JobException, ProductKind, UsageKind, UsageRecord
from w365.errors import W365Error
from w365.billing.invoicing.dispatcher import generate_full_cycle_invoices
from w365.billing.usage import bill_usage_month

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def seed(store):
    with store.session() as s:
        avery = f.customer(s, "Fabrikam", salesperson="Jordan")  # the contract's salesperson wins
        c1 = f.contract(s, avery, start=date(2026, 1, 1), number="BC-1")
        c1.salesperson = "Avery"
        f.subscription(s, c1, quantity=10, price="10.00", cost="8.00", now=T0)  # 100 revenue, 80 cost
        f.subscription(s, c1, quantity=1, price="120.00", cost="96.00", unit="ANNUAL", name="annual", now=T0)  # 10 / 8 a month
        az = f.subscription(s, c1, quantity=1, price="0", cost="0", name="azure", markup_pct=Decimal("20"), now=T0,
                            prod=f.product(s, sku="AZ", kind=ProductKind.USAGE))
        s.add(UsageRecord(kind=UsageKind.FINAL, subscription_id=az.id, customer_id=avery.id, usage_date=date(2025, 12, 20),
                          meter_id="m", quantity=Decimal(1), unit_price=Decimal(1), pre_tax_total=Decimal("50.0000"), currency="USD"))
        jordan = f.customer(s, "Litware", salesperson="Jordan")
        c2 = f.contract(s, jordan, start=date(2026, 1, 1), currency="EUR", number="BC-2")
        f.subscription(s, c2, quantity=3, price="33.33", cost="30.00", now=T0)  # 99.99 EUR revenue, 90 cost
        nobody = f.customer(s, "Nobody Inc")
        c3 = f.contract(s, nobody, start=date(2026, 1, 1), number="BC-3")
        f.subscription(s, c3, quantity=1, price="5.00", cost="1.00", now=T0)
        s.commit()
    generate_full_cycle_invoices("monthly", date(2026, 1, 1))
    bill_usage_month(date(2025, 12, 1), as_of=date(2026, 1, 1))  # 50 cost x 1.2 = 60 revenue


def plans(store):
    with store.session() as s:
        return {(p.salesperson, p.currency): (p.period_from, p.period_to, p.revenue, p.cost, p.margin, p.commission_rate, p.commission, p.invoice_count)
                for p in s.scalars(select(IncentivePlan))}


def test_j1_incentive_plan_from_invoiced_revenue_and_margin(store):
    seed(store)
    report = jobs.run("add_incentive_plan", "2026-02-01")  # closes January
    assert (report["period_from"], report["period_to"]) == ("2026-01-01", "2026-01-31")
    got = plans(store)
    jan = (date(2026, 1, 1), date(2026, 1, 31))
    # Avery, USD: 100 + 10 + 60 (usage) = 170 revenue; cost 80 + 8 + 50 = 138; margin 32; 5% = 1.60
    assert got[("Avery", "USD")] == (*jan, Decimal("170.00"), Decimal("138.00"), Decimal("32.00"), Decimal("0.05"), Decimal("1.60"), 2)
    # Jordan, EUR: 99.99 - 90.00 = 9.99 margin; 5% = 0.4995 -> 0.50 (half up, once)
    assert got[("Jordan", "EUR")] == (*jan, Decimal("99.99"), Decimal("90.00"), Decimal("9.99"), Decimal("0.05"), Decimal("0.50"), 1)
    assert set(got) == {("Avery", "USD"), ("Jordan", "EUR")}
    assert report["unassigned_count"] == 1 and "no salesperson" in next(iter(report["unassigned"].values()))
    with store.session() as s:
        assert s.scalar(select(JobException.entity_type).where(JobException.job == "add_incentive_plan")) == "invoice"


def test_j1_incentive_plan_rerun_is_idempotent_and_rate_is_configurable(store, monkeypatch):
    seed(store)
    jobs.run("add_incentive_plan", "2026-02-01")
    first = plans(store)
    jobs.run("add_incentive_plan", "2026-02-01")
    assert plans(store) == first
    monkeypatch.setenv("AIRFLOW__W365__COMMISSION_RATE", "0.10")
    jobs.run("add_incentive_plan", "2026-02-01")
    assert plans(store)[("Avery", "USD")][6] == Decimal("3.20")
    jobs.run("add_incentive_plan", "2026-02-01", commission_rate="0.2")  # the param wins
    assert plans(store)[("Avery", "USD")][5:7] == (Decimal("0.2"), Decimal("6.40"))
    assert len(plans(store)) == 2


def test_j1_month_to_date_counts_invoices_through_the_day_before(store):
    seed(store)
    jobs.run("add_incentive_plan", "2026-01-01")  # period: December, through Dec 31: nothing issued
    assert plans(store) == {}
    jobs.run("add_incentive_plan", "2026-01-02")  # January to date: the Jan 1 invoices
    assert plans(store)[("Avery", "USD")][1] == date(2026, 1, 1)


def test_j1_bad_commission_rate_is_refused(store):
    seed(store)
    with pytest.raises(W365Error, match="between 0 and 1"):
        jobs.run("add_incentive_plan", "2026-02-01", commission_rate="5")
    with pytest.raises(W365Error):
        jobs.run("add_incentive_plan", "2026-02-01", commission_rate="lots")
    assert plans(store) == {}


def test_i4_j1_revenue_is_before_tax(store):
    """SPEC I4, J1: the tax on an invoice is not revenue: 10 x 10.00 = 100.00 + VAT 20.00 is
    invoiced 120.00; revenue 100.00, cost 80.00, margin 20.00, commission 5 % = 1.00."""
    from w365.billing.tax_codes import add_tax_rate

    with store.session() as s:
        add_tax_rate(s, "VAT20", "20", date(2025, 1, 1))
        c = f.contract(s, f.customer(s, "Fabrikam", salesperson="Avery", tax_code="VAT20"), start=date(2026, 1, 1), number="BC-T")
        f.subscription(s, c, quantity=10, price="10.00", cost="8.00", now=T0)
        s.commit()
    [inv] = generate_full_cycle_invoices("monthly", date(2026, 1, 1)).invoices
    assert (inv.total, inv.tax_total) == ("120.00", "20.00")
    jobs.run("add_incentive_plan", "2026-02-01")
    jan = (date(2026, 1, 1), date(2026, 1, 31))
    assert plans(store) == {("Avery", "USD"): (*jan, Decimal("100.00"), Decimal("80.00"), Decimal("20.00"), Decimal("0.05"), Decimal("1.00"), 1)}
