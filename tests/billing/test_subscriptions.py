"""Changing subscriptions (issue 3): SPEC S5-S9, C1-C8, C10, with the seeds' worked examples."""

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import text

import factories as f
from w365.store.models import (
    QRB,
    ChangeEffective,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    LCLKind,
    ProviderKind,
    ProvisioningStatus,
    SLCLStatus,
)
from w365.errors import ValidationError
from w365.billing.scheduled_changes import list_slcls
from w365.billing.changes import ChangeRequest, change_subscription, delete_subscription
from w365.operations.ledger_check import verify_ledger

UTC = timezone.utc
CUSTOM = ChangeEffective.CUSTOM


def _setup(session, tz="UTC", start=date(2025, 12, 1), **sub_kw):
    f.set_timezone(session, tz)
    c = f.contract(session, f.customer(session), start=start, **{k: sub_kw.pop(k) for k in ("refunds_allowed",) if k in sub_kw})
    return c, f.subscription(session, c, **sub_kw)


def test_s5_immediate_change_writes_a_provisioned_lcl_now(store, session):
    c, sub = _setup(session)
    now = datetime(2025, 12, 10, 15, 30, tzinfo=UTC)
    res = change_subscription(session, sub.id, ChangeRequest(quantity=12), now=now)
    assert res.slcl is None and res.lcl.effective_at == now
    assert (res.lcl.quantity_before, res.lcl.quantity_after, res.lcl.bill_from) == (10, 12, date(2025, 12, 10))
    assert res.lcl.provisioning_status == ProvisioningStatus.PROVISIONED
    assert sub.quantity == 12


def test_s5_manual_provider_change_awaits_provisioning(store, session):
    c, sub = _setup(session, prov=None)
    manual = f.provider(session, ProviderKind.MANUAL, name="Manual Distributor")
    res = change_subscription(session, sub.id, ChangeRequest(quantity=11, provider_id=manual.id), now=datetime(2025, 12, 2, tzinfo=UTC))
    assert res.lcl.provisioning_status == ProvisioningStatus.PENDING


def test_s6_seed_example_pst_increase_custom_date(store, session):
    # Tenant in America/Los_Angeles; increase for 2023-02-20 requested on 2023-02-10 -> SLCL
    # scheduled for 2023-02-20 00:05 PST (08:05 UTC).
    c, sub = _setup(session, "America/Los_Angeles", start=date(2023, 1, 1))
    res = change_subscription(session, sub.id, ChangeRequest(quantity=15, effective=CUSTOM, effective_date=date(2023, 2, 20)),
                              now=datetime(2023, 2, 10, 18, 0, tzinfo=UTC))
    assert res.lcl is None
    assert res.slcl.scheduled_for == datetime(2023, 2, 20, 8, 5, tzinfo=UTC)
    assert (res.slcl.status, res.slcl.effective_date, res.slcl.provision_on) == (SLCLStatus.PENDING, date(2023, 2, 20), date(2023, 2, 20))
    # SPEC S7: "Scheduled For" is stored and shown, in tenant time.
    assert list_slcls(session)[0]["scheduled_for"] == "2023-02-20T00:05:00-08:00"


def test_s6_custom_today_gives_an_lcl_scheduled_at_0005_or_2330(store, session):
    c, sub = _setup(session, "America/Los_Angeles", start=date(2023, 1, 1), qrb=QRB.ALLOWED)
    now = datetime(2023, 2, 20, 18, 0, tzinfo=UTC)  # 10:00 PST on Feb 20
    up = change_subscription(session, sub.id, ChangeRequest(quantity=15, effective=CUSTOM, effective_date=date(2023, 2, 20)), now=now)
    assert up.lcl.effective_at == datetime(2023, 2, 20, 8, 5, tzinfo=UTC) and up.lcl.bill_from == date(2023, 2, 20)
    down = change_subscription(session, sub.id, ChangeRequest(quantity=9, effective=CUSTOM, effective_date=date(2023, 2, 20)), now=now)
    assert down.lcl.effective_at == datetime(2023, 2, 21, 7, 30, tzinfo=UTC)  # 23:30 PST
    assert down.lcl.bill_from == date(2023, 2, 21)  # the old quantity bills through Feb 20


@pytest.mark.parametrize(
    "tz,day,qty,expected",
    [
        ("America/Los_Angeles", date(2024, 3, 10), 15, datetime(2024, 3, 10, 8, 5, tzinfo=UTC)),  # PST at 00:05
        ("America/Los_Angeles", date(2024, 3, 10), 5, datetime(2024, 3, 11, 6, 30, tzinfo=UTC)),  # PDT at 23:30
        ("America/Los_Angeles", date(2024, 11, 3), 15, datetime(2024, 11, 3, 7, 5, tzinfo=UTC)),  # PDT at 00:05
        ("America/Los_Angeles", date(2024, 11, 3), 5, datetime(2024, 11, 4, 7, 30, tzinfo=UTC)),  # PST at 23:30
        ("Europe/London", date(2024, 3, 31), 15, datetime(2024, 3, 31, 0, 5, tzinfo=UTC)),
        ("Europe/London", date(2024, 3, 31), 5, datetime(2024, 3, 31, 22, 30, tzinfo=UTC)),
        ("Europe/London", date(2024, 10, 27), 15, datetime(2024, 10, 26, 23, 5, tzinfo=UTC)),
        ("Europe/London", date(2024, 10, 27), 5, datetime(2024, 10, 27, 23, 30, tzinfo=UTC)),
    ],
)
def test_s6_scheduled_changes_on_dst_switch_days(store, session, tz, day, qty, expected):
    c, sub = _setup(session, tz, start=date(2024, 1, 1), qrb=QRB.ALLOWED)
    res = change_subscription(session, sub.id, ChangeRequest(quantity=qty, effective=CUSTOM, effective_date=day),
                              now=datetime(2024, 2, 1, tzinfo=UTC))
    assert res.slcl.scheduled_for == expected


def test_c2_reduction_outside_window_is_refused_inside_allowed(store, session):
    c, sub = _setup(session, start=date(2025, 12, 1))  # QRB window of 7 days from Dec 1
    with pytest.raises(ValidationError, match=r"subscription #\d+ .*outside the 7-day reduction window.*SPEC C2"):
        change_subscription(session, sub.id, ChangeRequest(quantity=8), now=datetime(2025, 12, 20, tzinfo=UTC))
    res = change_subscription(session, sub.id, ChangeRequest(quantity=8), now=datetime(2025, 12, 5, tzinfo=UTC))
    assert res.lcl.quantity_after == 8
    # Increases are never limited by the window.
    assert change_subscription(session, sub.id, ChangeRequest(quantity=30), now=datetime(2025, 12, 28, tzinfo=UTC)).lcl


def test_c2_window_reopens_at_renewal_and_disallowed_refuses(store, session):
    c, sub = _setup(session, start=date(2025, 1, 1))
    c.end_date = date(2025, 12, 31)
    res = change_subscription(session, sub.id, ChangeRequest(quantity=4, effective=ChangeEffective.ON_RENEWAL),
                              now=datetime(2025, 6, 1, tzinfo=UTC))
    assert res.slcl.effective_date == date(2026, 1, 1)  # C3: the contract's next renewal date
    other = f.subscription(session, c, name="E5", qrb=QRB.DISALLOWED)
    with pytest.raises(ValidationError, match="Disallowed"):
        change_subscription(session, other.id, ChangeRequest(quantity=1), now=datetime(2025, 1, 2, tzinfo=UTC))


@pytest.mark.parametrize(
    "req,kind",
    [
        (dict(quantity=11), LCLKind.STANDARD),
        (dict(selling_price=Decimal("11.00")), LCLKind.AUDIT),  # C7: price only -> audit
        (dict(cost_price=Decimal("7.50"), sales_unit=None), LCLKind.AUDIT),
        (dict(quantity=11, selling_price=Decimal("11.00")), LCLKind.STANDARD),  # C7: both -> standard
    ],
)
def test_c7_lcl_kinds(store, session, req, kind):
    c, sub = _setup(session)
    res = change_subscription(session, sub.id, ChangeRequest(**req), now=datetime(2025, 12, 3, tzinfo=UTC))
    assert res.lcl.kind == kind


def test_c8_second_pending_slcl_is_refused(store, session):
    c, sub = _setup(session)
    now = datetime(2025, 12, 2, tzinfo=UTC)
    first = change_subscription(session, sub.id, ChangeRequest(quantity=12, effective=CUSTOM, effective_date=date(2026, 1, 5)), now=now)
    with pytest.raises(ValidationError, match=rf"already has scheduled change #{first.slcl.id} .*SPEC C8"):
        change_subscription(session, sub.id, ChangeRequest(quantity=14, effective=CUSTOM, effective_date=date(2026, 1, 9)), now=now)


def test_c4_refund_needs_a_contract_that_allows_refunds(store, session):
    c, sub = _setup(session, qrb=QRB.ALLOWED)
    with pytest.raises(ValidationError, match=r"does not allow refunds \(SPEC C4\)"):
        change_subscription(session, sub.id, ChangeRequest(action="deactivate", apply_refund=True), now=datetime(2025, 12, 9, tzinfo=UTC))
    c.refunds_allowed = True
    res = change_subscription(session, sub.id, ChangeRequest(action="deactivate", apply_refund=True, effective=CUSTOM, effective_date=date(2025, 12, 20)),
                              now=datetime(2025, 12, 9, tzinfo=UTC))
    assert res.slcl.apply_refund and res.slcl.scheduled_for == datetime(2025, 12, 20, 23, 30, tzinfo=UTC)


def test_c10_currency_and_price_list_must_match(store, session):
    c, sub = _setup(session)
    now = datetime(2025, 12, 2, tzinfo=UTC)
    with pytest.raises(ValidationError, match=r"in EUR but the subscription is in USD \(SPEC C10\)"):
        change_subscription(session, sub.id, ChangeRequest(quantity=12, currency="EUR"), now=now)
    with pytest.raises(ValidationError, match="price list 'partner'"):
        change_subscription(session, sub.id, ChangeRequest(quantity=12, price_list="partner"), now=now)
    with pytest.raises(ValidationError, match="not in the unit mapping"):
        change_subscription(session, sub.id, ChangeRequest(sales_unit="FORTNIGHT"), now=now)


def test_suspended_subscription_refuses_changes_until_reactivated(store, session):
    c, sub = _setup(session, qrb=QRB.ALLOWED)
    now = datetime(2025, 12, 3, tzinfo=UTC)
    change_subscription(session, sub.id, ChangeRequest(action="suspend"), now=now)
    with pytest.raises(ValidationError, match="is suspended: reactivate it"):
        change_subscription(session, sub.id, ChangeRequest(quantity=20), now=now)
    res = change_subscription(session, sub.id, ChangeRequest(action="reactivate"), now=now)
    assert res.lcl.change_type.value == "reactivation" and res.lcl.direction == "positive"


def _bill(session, contract, sub):
    inv = Invoice(number="INV-X", sequence=1, contract_id=contract.id, customer_id=contract.customer_id, kind=InvoiceKind.FULL_CYCLE,
                  currency="USD", issue_date=date(2025, 12, 1), due_date=date(2025, 12, 31), period_from=date(2025, 12, 1),
                  period_to=date(2025, 12, 31), total=Decimal("100"))
    session.add(inv)
    session.flush()
    session.add(InvoiceLine(invoice_id=inv.id, line_no=1, subscription_id=sub.id, kind="recurring", description="x",
                            billing_period_from=date(2025, 12, 1), billing_period_to=date(2025, 12, 31), period_from=date(2025, 12, 1),
                            period_to=date(2025, 12, 31), quantity=Decimal(10), unit_price=Decimal(10), days=31, period_days=31,
                            proration_factor=Decimal(1), amount=Decimal(100)))
    session.flush()


def test_s8_billed_subscription_cannot_be_deleted_unbilled_is_deactivated(store, session):
    c, sub = _setup(session, qrb=QRB.ALLOWED)
    other = f.subscription(session, c, name="Unbilled", qrb=QRB.ALLOWED)
    _bill(session, c, sub)
    with pytest.raises(ValidationError, match=r"has been billed and cannot be deleted.*SPEC S8"):
        delete_subscription(session, sub.id, now=datetime(2025, 12, 5, tzinfo=UTC))
    res = delete_subscription(session, other.id, now=datetime(2025, 12, 5, tzinfo=UTC))
    assert other.status.value == "deactivated" and res.lcl.change_type.value == "deactivation"
    assert session.execute(text("SELECT count(*) FROM subscription")).scalar() == 2  # never deleted


def test_s9_sales_unit_or_provider_change_after_billing_needs_force(store, session):
    c, sub = _setup(session)
    _bill(session, c, sub)
    now = datetime(2025, 12, 5, tzinfo=UTC)
    with pytest.raises(ValidationError, match=r"changing the sales unit \(MONTHLY -> ANNUAL\) after the subscription has been billed.*SPEC S9"):
        change_subscription(session, sub.id, ChangeRequest(sales_unit="ANNUAL", selling_price=Decimal("120")), now=now)
    other = f.provider(session, name="Another provider")
    with pytest.raises(ValidationError, match="changing the provider after the subscription has been billed"):
        change_subscription(session, sub.id, ChangeRequest(provider_id=other.id), now=now)
    forced = change_subscription(session, sub.id, ChangeRequest(sales_unit="ANNUAL", selling_price=Decimal("120"), force=True), now=now)
    assert forced.lcl.sales_unit_after == "ANNUAL"


def test_s3_current_state_is_the_fold_of_the_ledger_and_drift_is_reported(store, session):
    c, sub = _setup(session, qrb=QRB.ALLOWED)
    for q, day in ((12, 2), (9, 3), (15, 4)):
        change_subscription(session, sub.id, ChangeRequest(quantity=q), now=datetime(2025, 12, day, tzinfo=UTC))
    change_subscription(session, sub.id, ChangeRequest(selling_price=Decimal("9.50")), now=datetime(2025, 12, 5, tzinfo=UTC))
    session.commit()
    count, drifts = verify_ledger(session)
    assert (count, drifts) == (1, [])
    # Someone edits the row behind the ledger's back: the check names the subscription and field.
    session.execute(text("UPDATE subscription SET quantity = 99 WHERE id = :i"), {"i": sub.id})
    session.commit()
    _, drifts = verify_ledger(session)
    assert len(drifts) == 1 and drifts[0].subscription_id == sub.id and "quantity 15 -> 99" in drifts[0].problem


def test_custom_date_in_the_past_is_refused(store, session):
    c, sub = _setup(session)
    with pytest.raises(ValidationError, match="in the past"):
        change_subscription(session, sub.id, ChangeRequest(quantity=12, effective=CUSTOM, effective_date=date(2025, 12, 1)),
                            now=datetime(2025, 12, 5, tzinfo=UTC))
