"""Auto Renew Billing Contract (SPEC B2, C2, S6, S8)."""

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

import factories as f
from w365.orchestration import jobs
from w365.store.models import (
    BillingContract,
    ChangeEffective,
    ChangeSource,
    ContractStatus,
    LicenseChangeLog,
    ProviderKind,
    ProvisioningStatus,
    ScheduledLicenseChangeLog,
    SLCLStatus,
    Subscription,
    SubscriptionStatus,
)
from w365.errors import ValidationError
from w365.billing.invoicing.dispatcher import generate_full_cycle_invoices
from w365.operations.renewals import renewal
from w365.billing.changes import ChangeRequest, change_subscription
from w365.operations.ledger_check import verify_ledger

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("start, term, old_end, as_of, new_end, renewed_on", [
    # B2: from the anchor, never chained: Jan 31 anchors give Feb 28, Mar 31, ...
    (date(2025, 1, 31), 1, date(2025, 2, 27), date(2025, 2, 28), date(2025, 3, 30), date(2025, 2, 28)),
    (date(2024, 1, 1), 12, date(2024, 12, 31), date(2025, 1, 1), date(2025, 12, 31), date(2025, 1, 1)),
    # missed runs or a backfill: straight to the term containing the run date
    (date(2024, 1, 1), 12, date(2024, 12, 31), date(2026, 3, 5), date(2026, 12, 31), date(2026, 1, 1)),
    (date(2024, 1, 1), 36, date(2026, 12, 31), date(2027, 1, 1), date(2029, 12, 31), date(2027, 1, 1)),
    # an end date off the term boundary renews to the next boundary
    (date(2025, 1, 1), 12, date(2025, 6, 30), date(2025, 7, 2), date(2025, 12, 31), date(2025, 7, 1)),
])
def test_b2_renewal_dates_come_from_the_anchor(start, term, old_end, as_of, new_end, renewed_on):
    assert renewal(start, term, old_end, as_of) == (new_end, renewed_on)


def seed(store, auto_renew):
    with store.session() as s:
        cust = f.customer(s)
        man = f.provider(s, ProviderKind.MANUAL, name="Manual")
        c = f.contract(s, cust, start=date(2025, 1, 1), end=date(2025, 12, 31), term_months=12, auto_renew=auto_renew,
                       frequency="MONTHLY", number="BC-1")
        a = f.subscription(s, c, quantity=10, name="A", start=date(2025, 1, 1), now=datetime(2025, 1, 1, tzinfo=timezone.utc))
        b = f.subscription(s, c, prov=man, quantity=3, name="B", start=date(2025, 1, 1), now=datetime(2025, 1, 1, tzinfo=timezone.utc))
        f.contract(s, cust, start=date(2025, 6, 1), end=date(2026, 5, 31), number="BC-2")  # not due
        s.commit()
        return c.id, a.id, b.id


def test_c2_auto_renew_extends_the_term_and_reopens_the_reduction_window(store):
    cid, a, _b = seed(store, auto_renew=True)
    with store.session() as s:  # on Jan 10 the 7-day window after provisioning (Jan 1 2025) is long closed
        with pytest.raises(ValidationError, match="reduction window"):
            change_subscription(s, a, ChangeRequest(quantity=8), now=datetime(2025, 12, 20, tzinfo=timezone.utc))
    report = jobs.run("auto_renew_billing_contract", "2026-01-01")
    assert report["renewed"] == [{"contract": "BC-1", "old_end": "2025-12-31", "new_end": "2026-12-31", "renewed_on": "2026-01-01"}]
    with store.session() as s:
        c = s.get(BillingContract, cid)
        assert (c.status, c.end_date, c.last_renewed_on) == (ContractStatus.ACTIVE, date(2026, 12, 31), date(2026, 1, 1))
        # SPEC C2: the window reopens at renewal: a reduction on Jan 3 is allowed again
        res = change_subscription(s, a, ChangeRequest(quantity=8), now=datetime(2026, 1, 3, 12, tzinfo=timezone.utc))
        assert res.lcl.quantity_after == 8
        s.rollback()
    again = jobs.run("auto_renew_billing_contract", "2026-01-01")
    assert again["due"] == 0 and again["renewed"] == []
    with store.session() as s:
        assert s.get(BillingContract, cid).end_date == date(2026, 12, 31)


def test_s6_no_auto_renew_expires_and_stops_billing_after_the_end_date(store):
    cid, a, b = seed(store, auto_renew=True)
    with store.session() as s:
        # scheduled while the contract still renewed; then auto-renew is switched off
        change_subscription(s, a, ChangeRequest(quantity=12, effective=ChangeEffective.CUSTOM, effective_date=date(2026, 2, 1)),
                            now=datetime(2025, 12, 20, tzinfo=timezone.utc))
        s.get(BillingContract, cid).auto_renew = False
        s.commit()
    report = jobs.run("auto_renew_billing_contract", "2026-01-02")
    (exp,) = report["expired"]
    assert exp["contract"] == "BC-1" and len(exp["deactivation_lcls"]) == 2 and len(exp["cancelled_slcls"]) == 1
    with store.session() as s:
        assert s.get(BillingContract, cid).status == ContractStatus.EXPIRED
        for sid in (a, b):
            sub = s.get(Subscription, sid)
            last = sub.change_logs[-1]
            assert sub.status == SubscriptionStatus.DEACTIVATED
            # billed through the end date, nothing after (negative change: bill_from = D + 1)
            assert (last.change_type.value, last.source, last.effective_date, last.bill_from, last.direction) == (
                "deactivation", ChangeSource.RENEWAL, date(2025, 12, 31), date(2026, 1, 1), "negative")
        # the manual provider's deactivation awaits provisioning; Partner Center's is done
        assert s.get(Subscription, b).change_logs[-1].provisioning_status == ProvisioningStatus.PENDING
        assert s.get(Subscription, a).change_logs[-1].provisioning_status == ProvisioningStatus.PROVISIONED
        slcl = s.scalars(select(ScheduledLicenseChangeLog)).one()
        assert slcl.status == SLCLStatus.CANCELLED and "expired" in slcl.reason
        assert verify_ledger(s)[1] == []
        lcls = s.scalar(select(func.count()).select_from(LicenseChangeLog))
    # billing stops: the monthly full-cycle run of Jan 2 has nothing to bill for BC-1
    bills = generate_full_cycle_invoices("monthly", date(2026, 1, 2), contracts=["BC-1"])
    assert bills.contracts_considered == 0 and bills.invoices == []
    again = jobs.run("auto_renew_billing_contract", "2026-01-02")
    assert again["due"] == 0
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(LicenseChangeLog)) == lcls


def test_b2_contract_without_a_term_length_is_reported_and_others_go_on(store):
    with store.session() as s:
        cust = f.customer(s)
        f.add_unit(s, "BIWEEKLY", None, "Odd unit without months")
        f.contract(s, cust, start=date(2025, 1, 1), end=date(2025, 3, 31), term_months=None, frequency="BIWEEKLY", number="BC-ODD")
        f.contract(s, cust, start=date(2025, 1, 1), end=date(2025, 12, 31), number="BC-OK")
        s.commit()
    report = jobs.run("auto_renew_billing_contract", "2026-01-05")
    assert [r["contract"] for r in report["renewed"]] == ["BC-OK"]
    assert "no term_months" in report["problems"]["BC-ODD"]
    assert jobs.run("auto_renew_billing_contract", "2026-01-05")["problems"] == report["problems"]


def test_b2_renew_date_is_bound_to_the_run_date_not_the_clock(store):
    seed(store, auto_renew=True)
    late = jobs.run("auto_renew_billing_contract", (date(2025, 12, 31) + timedelta(days=400)).isoformat())
    assert late["renewed"][0]["new_end"] == "2027-12-31" and late["renewed"][0]["renewed_on"] == "2027-01-01"
