"""Update Metrics On Billing Contract: MRR and ACV (SPEC J1, B5, S1, S3, M2)."""

from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import select

import factories as f
from w365.orchestration import jobs
from w365.store.models import (
    BillingContract,
    ChangeEffective,
    ContractMetricSnapshot,
    ContractStatus,
    ExchangeRate,
    ProductKind,
    UsageKind,
    UsageRecord,
)
from w365.billing.scheduled_changes import merge_due_slcls
from w365.billing.changes import ChangeRequest, change_subscription

T0 = datetime(2025, 12, 1, tzinfo=timezone.utc)


def seed(store):
    with store.session() as s:
        cust = f.customer(s)
        c = f.contract(s, cust, start=date(2025, 12, 1), number="BC-USD")
        f.subscription(s, c, quantity=10, price="10.00", name="monthly seats", now=T0)  # 100.00 a month
        f.subscription(s, c, quantity=2, price="120.00", unit="ANNUAL", name="annual seats", now=T0)  # 20.00 a month
        f.subscription(s, c, quantity=1, price="9.20", currency="EUR", name="EUR seats", now=T0)  # 9.20 EUR x 1.08701
        f.subscription(s, c, quantity=1, price="450.00", unit="ONE_TIME", name="setup", now=T0,
                       prod=f.product(s, sku="SETUP", kind=ProductKind.ONE_TIME))  # not recurring
        gone = f.subscription(s, c, quantity=5, price="10.00", name="cancelled seats", now=T0)
        up = f.subscription(s, c, quantity=1, price="10.00", name="growing seats", now=T0)
        azure = f.subscription(s, c, quantity=1, price="0", cost="0", name="azure", now=T0, markup_pct=Decimal("10"),
                               prod=f.product(s, sku="AZURE", kind=ProductKind.USAGE))
        s.add(ExchangeRate(from_currency="EUR", to_currency="USD", rate=Decimal("1.08701"), effective_from=date(2025, 1, 1)))
        change_subscription(s, gone.id, ChangeRequest(action="deactivate"), now=datetime(2025, 12, 5, tzinfo=timezone.utc))
        # +4 seats from Jan 20 (scheduled: not revenue until it is merged)
        change_subscription(s, up.id, ChangeRequest(quantity=5, effective=ChangeEffective.CUSTOM, effective_date=date(2026, 1, 20)),
                            now=datetime(2025, 12, 10, tzinfo=timezone.utc))
        for day, total in ((date(2025, 12, 5), "60.0000"), (date(2025, 12, 20), "40.0000"), (date(2026, 1, 3), "999.0000")):
            s.add(UsageRecord(kind=UsageKind.FINAL, subscription_id=azure.id, customer_id=cust.id, usage_date=day, meter_id="m",
                              quantity=Decimal(1), unit_price=Decimal(1), pre_tax_total=Decimal(total), currency="USD"))
        s.add(UsageRecord(kind=UsageKind.INTERIM, subscription_id=azure.id, customer_id=cust.id, usage_date=date(2025, 12, 6),
                          meter_id="m", quantity=Decimal(1), unit_price=Decimal(1), pre_tax_total=Decimal("500"), currency="USD"))
        s.commit()
        return c.id


def snapshots(store):
    with store.session() as s:
        return [(m.contract_id, m.as_of, m.mrr, m.acv) for m in s.scalars(select(ContractMetricSnapshot).order_by(ContractMetricSnapshot.as_of))]


def test_j1_mrr_and_acv_per_contract_rounded_once(store):
    cid = seed(store)
    report = jobs.run("update_metrics_on_billing_contract", "2026-01-15")
    # licences: 100 + 20 + 9.20 x 1.08701 (= 10.000492) + 10 (growing seats, 1 until Jan 20)
    # trailing month (December) final usage: 100 x 1.10 = 110 (interim and January usage not counted)
    # MRR = 250.000492 -> 250.00; ACV = 12 x 250.000492 = 3000.005904 -> 3000.01 (not 12 x 250.00)
    assert report["mrr_by_currency"] == {"USD": "250.00"} and report["acv_by_currency"] == {"USD": "3000.01"}
    with store.session() as s:
        c = s.get(BillingContract, cid)
        assert (c.mrr, c.acv, c.metrics_as_of) == (Decimal("250.00"), Decimal("3000.01"), date(2026, 1, 15))
    assert snapshots(store) == [(cid, date(2026, 1, 15), Decimal("250.00"), Decimal("3000.01"))]


def test_j1_metrics_rerun_replaces_the_snapshot_and_history_builds_a_trend(store):
    cid = seed(store)
    jobs.run("update_metrics_on_billing_contract", "2026-01-15")
    jobs.run("update_metrics_on_billing_contract", "2026-01-15")
    assert len(snapshots(store)) == 1
    merge_due_slcls(datetime(2026, 1, 20, 12, tzinfo=timezone.utc))  # Scheduled Update merges the +4 seats
    jobs.run("update_metrics_on_billing_contract", "2026-01-21")
    # a backfill of an older date writes its snapshot but keeps the newer figures on the contract
    jobs.run("update_metrics_on_billing_contract", "2026-01-16")
    snaps = snapshots(store)
    assert [(d, m) for _c, d, m, _a in snaps] == [
        (date(2026, 1, 15), Decimal("250.00")), (date(2026, 1, 16), Decimal("250.00")), (date(2026, 1, 21), Decimal("290.00"))]
    with store.session() as s:
        c = s.get(BillingContract, cid)
        assert (c.mrr, c.metrics_as_of) == (Decimal("290.00"), date(2026, 1, 21))


def test_j1_contract_without_exchange_rate_is_reported_others_valued(store):
    seed(store)
    with store.session() as s:
        cust = f.customer(s, "Litware")
        gbp = f.contract(s, cust, currency="GBP", number="BC-GBP")
        f.subscription(s, gbp, quantity=1, price="5.00", currency="USD", now=T0)  # no USD->GBP rate
        s.commit()
    report = jobs.run("update_metrics_on_billing_contract", "2026-01-15")
    assert "no USD->GBP exchange rate" in report["problems"]["BC-GBP"]
    assert report["contracts"] == 1 and report["mrr_by_currency"] == {"USD": "250.00"}


def test_j1_expired_contract_gets_one_zero_snapshot(store):
    cid = seed(store)
    jobs.run("update_metrics_on_billing_contract", "2026-01-15")
    with store.session() as s:
        s.get(BillingContract, cid).status = ContractStatus.EXPIRED
        s.commit()
    assert jobs.run("update_metrics_on_billing_contract", "2026-01-16")["zeroed"] == 1
    assert jobs.run("update_metrics_on_billing_contract", "2026-01-17")["zeroed"] == 0
    assert [m for _c, _d, m, _a in snapshots(store)] == [Decimal("250.00"), Decimal("0.00")]


