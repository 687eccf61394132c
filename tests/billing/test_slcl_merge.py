"""The Scheduled Update merge (issue 3): SPEC C6, C9, C10, C11, C12, and its concurrency."""

from datetime import date, datetime, time, timezone

from sqlalchemy import func, select

import factories as f
from w365.store.models import QRB, ChangeEffective, ChangeSource, LicenseChangeLog, ScheduledLicenseChangeLog, SLCLStatus
from w365.interfaces.demo import DemoSpec, load_demo
from w365.billing.invoicing.dispatcher import generate_change_log_invoices, generate_full_cycle_invoices
from w365.billing.scheduled_changes import cancel_slcl, merge_due_slcls, retry_slcl
from w365.billing.changes import ChangeRequest, change_subscription
from w365.core.tenant_time import local_instant

UTC = timezone.utc
CUSTOM = ChangeEffective.CUSTOM
LA = "America/Los_Angeles"


def _schedule(session, sub, day, now, **req):
    return change_subscription(session, sub.id, ChangeRequest(effective=CUSTOM, effective_date=day, **req), now=now).slcl


def test_c6_dec15_change_merged_on_dec15(store, session):
    f.set_timezone(session, LA)
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1))
    sub = f.subscription(session, c)
    slcl = _schedule(session, sub, date(2025, 12, 15), datetime(2025, 12, 2, tzinfo=UTC), quantity=15)
    session.commit()
    # The 23:30 run of Dec 14 does not take it; the 00:05 run of Dec 15 does.
    assert merge_due_slcls(local_instant(date(2025, 12, 14), time(23, 30), LA), engine=store.engine).merged == []
    report = merge_due_slcls(local_instant(date(2025, 12, 15), time(0, 5), LA), engine=store.engine)
    assert report.merged == [slcl.id]
    f.fresh(session)
    assert sub.quantity == 15
    lcl = session.scalars(select(LicenseChangeLog).where(LicenseChangeLog.slcl_id == slcl.id)).one()
    assert (lcl.source, lcl.quantity_before, lcl.quantity_after, lcl.bill_from) == (ChangeSource.SLCL, 10, 15, date(2025, 12, 15))
    assert lcl.effective_at == datetime(2025, 12, 15, 8, 5, tzinfo=UTC)
    assert session.get(ScheduledLicenseChangeLog, slcl.id).status == SLCLStatus.ARCHIVED
    # Idempotent: a second run for the same instant changes nothing.
    assert merge_due_slcls(local_instant(date(2025, 12, 15), time(0, 5), LA), engine=store.engine).merged == []
    assert session.scalar(select(func.count()).select_from(LicenseChangeLog)) == 2


def test_c10_failed_check_marks_merge_failed_and_the_batch_goes_on(store, session):
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1))
    good = f.subscription(session, c, name="good")
    bad = f.subscription(session, c, name="bad")
    now = datetime(2025, 12, 2, tzinfo=UTC)
    ok = _schedule(session, good, date(2025, 12, 20), now, quantity=20)
    reduce = _schedule(session, bad, date(2025, 12, 5), now, quantity=5)  # inside the window when scheduled
    session.commit()
    # Someone narrows the reduction behaviour before the merge: the re-check (C10) refuses it.
    bad.qrb = QRB.DISALLOWED
    session.commit()
    report = merge_due_slcls(datetime(2025, 12, 21, tzinfo=UTC), engine=store.engine)
    assert report.merged == [ok.id]
    assert list(report.failed) == [reduce.id] and "Disallowed" in report.failed[reduce.id]
    f.fresh(session)
    failed = session.get(ScheduledLicenseChangeLog, reduce.id)
    assert failed.status == SLCLStatus.MERGE_FAILED and "SPEC C2" in failed.reason and bad.quantity == 10
    # Fixed, then retried by an operator: merged now.
    bad.qrb = QRB.ALLOWED
    session.commit()
    assert retry_slcl(store.engine, reduce.id, now=datetime(2025, 12, 21, tzinfo=UTC))["status"] == "archived"
    f.fresh(session)
    assert bad.quantity == 5


def test_c9_cancel_and_statuses(store, session):
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1))
    sub = f.subscription(session, c)
    slcl = _schedule(session, sub, date(2026, 1, 10), datetime(2025, 12, 2, tzinfo=UTC), quantity=12)
    out = cancel_slcl(session, slcl.id, now=datetime(2025, 12, 3, tzinfo=UTC))
    session.commit()
    assert out["status"] == "cancelled" and slcl.status == SLCLStatus.CANCELLED
    assert merge_due_slcls(datetime(2026, 2, 1, tzinfo=UTC), engine=store.engine).merged == []
    # A cancelled one no longer blocks a new one (C8 counts open ones only).
    assert _schedule(session, sub, date(2026, 1, 12), datetime(2025, 12, 3, tzinfo=UTC), quantity=13).status == SLCLStatus.PENDING


def test_c11_c12_billed_slcl_merges_without_billing_again(store, session):
    # Dec 15 change scheduled; the Dec 1-31 invoice bills it ahead (C12): Dec 1-14 old, Dec 15-31 new.
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1))
    sub = f.subscription(session, c)
    slcl = _schedule(session, sub, date(2025, 12, 15), datetime(2025, 11, 20, tzinfo=UTC), quantity=15)
    session.commit()
    generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    f.fresh(session)
    assert session.get(ScheduledLicenseChangeLog, slcl.id).status == SLCLStatus.AWAITING_MERGE
    assert merge_due_slcls(datetime(2025, 12, 15, 0, 5, tzinfo=UTC), engine=store.engine).merged == [slcl.id]
    # C11: the LCL it wrote is already billed: the change-log job finds nothing to bill.
    assert generate_change_log_invoices("monthly", date(2025, 12, 22), engine=store.engine).invoices == []


def test_merge_is_safe_with_two_workers_at_once(store, session):
    """Two mergers in parallel never apply one SLCL twice (row locks with SKIP LOCKED on
    PostgreSQL; SQLite serialises writers)."""
    load_demo(session, DemoSpec(customers=20, contracts_per_customer=2, subscriptions_per_contract=5, slcl_percent=100,
                                as_of=date(2026, 1, 1), changes_per_subscription=1))
    session.commit()
    total = session.scalar(select(func.count()).select_from(ScheduledLicenseChangeLog))
    session.rollback()  # hold no lock while the workers run
    assert total > 100
    reports = f.run_in_parallel(lambda: merge_due_slcls(datetime(2026, 6, 1, tzinfo=UTC), engine=store.engine, batch=25))
    merged = [i for r in reports for i in r.merged]
    assert len(merged) == len(set(merged)) == total  # each exactly once, none lost
    if store.is_postgres:
        assert all(r.merged for r in reports)  # both workers really took work
    assert session.scalar(select(func.count()).select_from(LicenseChangeLog).where(LicenseChangeLog.slcl_id.is_not(None))) == total
    assert session.scalar(select(func.count()).select_from(ScheduledLicenseChangeLog).where(ScheduledLicenseChangeLog.status != SLCLStatus.ARCHIVED)) == 0
