"""Scheduled suspensions (issue 13, item 8): a suspension on a future date is a scheduled change
like any other (SPEC C1, C6), merged by the Scheduled Update at 23:30 on its date, and billed
through that day and not after (SPEC S2, S6: negative, bill from D + 1), by the engine (the
loader's overlay of pending SLCLs, C12), the merge (``w365.core.ledger.scheduled_state``) and the
independent auditor (``w365.operations.audit``) alike. Migration 0004 widens the action's CHECK."""

import os
from datetime import date, datetime, time, timezone
from decimal import Decimal

import pytest
from sqlalchemy import MetaData, select, text
from sqlalchemy.exc import DBAPIError

import factories as f
from conftest import PG_ENV
from w365.operations.audit import audit_billing
from w365.interfaces.cli import main
from w365.store.models import (
    ChangeEffective,
    ChangeType,
    Invoice,
    InvoiceLine,
    LicenseChangeLog,
    ScheduledLicenseChangeLog,
    SLCLAction,
    SLCLStatus,
    SubscriptionStatus,
)
from w365.billing.invoicing.dispatcher import generate_change_log_invoices, generate_full_cycle_invoices
from w365.billing.scheduled_changes import merge_due_slcls
from w365.billing.changes import ChangeRequest, change_subscription
from w365.core.tenant_time import local_instant

UTC = timezone.utc
LA = "America/Los_Angeles"
CUSTOM = ChangeEffective.CUSTOM
DEC15 = date(2025, 12, 15)


def _lines(session):
    f.fresh(session)
    return [(l.kind.value, l.period_from, l.period_to, l.quantity, l.amount)
            for l in session.scalars(select(InvoiceLine).join(Invoice).order_by(Invoice.id, InvoiceLine.line_no))]


def _clean(session):
    report = audit_billing(f.fresh(session))
    session.commit()
    return report.differences


def _suspend_on(session, sub, day, now):
    return change_subscription(session, sub.id, ChangeRequest(action="suspend", effective=CUSTOM, effective_date=day), now=now).slcl


def test_c1_c6_c12_s2_suspension_scheduled_ahead_is_billed_through_its_day_and_merged_at_2330(store, session):
    """issue 13: Dec 15 suspension scheduled on Dec 2 (SPEC C1): an SLCL with action suspend, negative,
    due 23:30 Dec 15 in tenant time, billed from Dec 16 (S6). The December invoice bills it ahead
    (C12): Dec 1-15 only. It merges at 23:30 on Dec 15 (C6), not at 00:05; the subscription is
    suspended, not deactivated; nothing is billed again (C11) and January bills nothing (S2)."""
    f.set_timezone(session, LA)
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1))
    sub = f.subscription(session, c)  # 10 x 10.00 a month
    slcl = _suspend_on(session, sub, DEC15, datetime(2025, 11, 20, 18, tzinfo=UTC))
    session.commit()
    assert (slcl.action, slcl.direction, slcl.bill_from, slcl.status) == (SLCLAction.SUSPEND, "negative", date(2025, 12, 16), SLCLStatus.PENDING)
    assert slcl.scheduled_for == local_instant(DEC15, time(23, 30), LA)
    generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    assert _lines(session) == [("recurring", date(2025, 12, 1), date(2025, 12, 15), Decimal(10), Decimal("48.39"))]  # 10 x 10 x 15/31
    # No line bills the suspended days, so none links the SLCL: it stays Pending (C9), as a
    # scheduled cancellation does.
    assert session.get(ScheduledLicenseChangeLog, slcl.id).status == SLCLStatus.PENDING
    assert _clean(session) == []

    assert merge_due_slcls(local_instant(DEC15, time(0, 5), LA), engine=store.engine).merged == []
    assert merge_due_slcls(local_instant(DEC15, time(23, 30), LA), engine=store.engine).merged == [slcl.id]
    f.fresh(session)
    assert sub.status == SubscriptionStatus.SUSPENDED and sub.quantity == 10
    lcl = session.scalars(select(LicenseChangeLog).where(LicenseChangeLog.slcl_id == slcl.id)).one()
    assert (lcl.change_type, lcl.status_after, lcl.bill_from, lcl.direction) == (ChangeType.SUSPENSION, SubscriptionStatus.SUSPENDED, date(2025, 12, 16), "negative")
    assert session.get(ScheduledLicenseChangeLog, slcl.id).status == SLCLStatus.ARCHIVED
    session.commit()
    assert generate_change_log_invoices("monthly", date(2025, 12, 22), engine=store.engine).invoices == []
    assert generate_full_cycle_invoices("monthly", date(2026, 1, 1), engine=store.engine).invoices == []
    assert _clean(session) == []
    # Reactivated later: billed again from that day.
    change_subscription(session, sub.id, ChangeRequest(action="reactivate"), now=local_instant(date(2026, 1, 10), time(9), LA))
    session.commit()
    generate_full_cycle_invoices("monthly", date(2026, 2, 1), engine=store.engine)
    assert _lines(session)[-1][1:] == (date(2026, 2, 1), date(2026, 2, 28), Decimal(10), Decimal("100.00"))
    assert _clean(session) == []


def test_s2_s6_b4_suspension_scheduled_after_the_period_was_billed_is_credited_by_the_change_log_run(store, session):
    """issue 13 (SPEC S2, S6, B4): December billed in full on Dec 1; on Dec 5 a suspension is scheduled
    for Dec 20. Until a run bills it, the audit names the difference and the run due to settle it;
    the change-log run credits Dec 1-31 and re-bills Dec 1-20; merged at 23:30 Dec 20, nothing more."""
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1))
    sub = f.subscription(session, c)
    session.commit()
    generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    slcl = _suspend_on(session, sub, date(2025, 12, 20), datetime(2025, 12, 5, 12, tzinfo=UTC))
    session.commit()
    diffs = _clean(session)
    assert [(d.check, d.first_day, d.last_day, d.settled_by) for d in diffs] == [("day", date(2025, 12, 21), date(2025, 12, 31), "change-log invoice")]
    generate_change_log_invoices("monthly", date(2025, 12, 8), engine=store.engine)
    assert _lines(session)[1:] == [
        ("adjustment", date(2025, 12, 1), date(2025, 12, 31), Decimal(-10), Decimal("-100.00")),
        ("adjustment", date(2025, 12, 1), date(2025, 12, 20), Decimal(10), Decimal("64.52")),  # 10 x 10 x 20/31
    ]
    assert _clean(session) == []
    assert merge_due_slcls(datetime(2025, 12, 20, 23, 30, tzinfo=UTC), engine=store.engine).merged == [slcl.id]
    session.commit()
    assert generate_change_log_invoices("monthly", date(2025, 12, 22), engine=store.engine).invoices == []
    assert _clean(session) == []


def test_c10_scheduled_suspension_of_a_subscription_no_longer_active_fails_its_merge_with_the_reason(store, session):
    """issue 13 (SPEC C10): the re-check at merge time: a subscription suspended by hand meanwhile is
    not suspended twice; the SLCL is Merge Failed, saying why."""
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1))
    sub = f.subscription(session, c)
    slcl = _suspend_on(session, sub, DEC15, datetime(2025, 12, 2, tzinfo=UTC))
    change_subscription(session, sub.id, ChangeRequest(action="suspend"), now=datetime(2025, 12, 3, 12, tzinfo=UTC))
    session.commit()
    report = merge_due_slcls(datetime(2025, 12, 16, tzinfo=UTC), engine=store.engine)
    assert list(report.failed) == [slcl.id] and "only an active subscription can be suspended" in report.failed[slcl.id]


def test_c1_scheduling_rules_still_hold_for_suspensions(store, session):
    """issue 13 (SPEC C1, C8): only an active subscription can be suspended; one open SLCL at a time;
    a date in the past is refused; On Renewal works (billed from the new term's first day)."""
    from w365.errors import ValidationError

    c = f.contract(session, f.customer(session), start=date(2025, 12, 1), end=date(2026, 11, 30))
    sub = f.subscription(session, c)
    now = datetime(2025, 12, 2, 12, tzinfo=UTC)
    with pytest.raises(ValidationError, match="in the past"):
        _suspend_on(session, sub, date(2025, 12, 1), now)
    renewal = change_subscription(session, sub.id, ChangeRequest(action="suspend", effective=ChangeEffective.ON_RENEWAL), now=now).slcl
    assert (renewal.action, renewal.effective_date, renewal.bill_from) == (SLCLAction.SUSPEND, date(2026, 12, 1), date(2026, 12, 1))
    with pytest.raises(ValidationError, match="SPEC C8"):
        _suspend_on(session, sub, DEC15, now)


def test_cli_subscription_change_suspend_on_a_date(store, session, capsys):
    """issue 13: `w365 subscription change ID --suspend --effective custom --date D` schedules it."""
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1))
    sub = f.subscription(session, c)
    session.commit()
    assert main(["subscription", "change", str(sub.id), "--suspend", "--effective", "custom", "--date", "2099-01-15", "--json"]) == 0
    assert '"status": "pending"' in capsys.readouterr().out
    assert main(["slcl", "list", "--json"]) == 0
    assert '"action": "suspend"' in capsys.readouterr().out


def _alembic(url, action, revision):
    from alembic import command

    from w365 import store as w365_store
    from w365.store.session import get_engine

    cfg = w365_store.alembic_config(url)
    with get_engine(url).begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, revision)


def test_migration_0004_widens_the_slcl_action_check_without_touching_rows_and_downgrades(store, session, tmp_path, monkeypatch):
    """issue 13 (migration 0004): a 0003 store with scheduled changes goes to 0004 with every row,
    index, foreign key and trigger as it was and 'suspend' accepted; the downgrade is refused while
    a suspension is stored and narrows the CHECK again once none is."""
    from w365 import store as w365_store
    from w365.store.admin import create_scratch_database, drop_database
    from w365.store.session import get_engine

    url = create_scratch_database(os.environ[PG_ENV], "w365_test_0004") if store.is_postgres else f"sqlite:///{tmp_path / 'old.db'}"
    monkeypatch.setenv("W365_DATABASE_URL", url)
    engine = get_engine(url)

    def snapshot(conn):
        meta = MetaData()
        meta.reflect(conn)
        rows = {t.name: conn.execute(select(t).order_by(*t.primary_key.columns)).all() for t in meta.sorted_tables if t.name != "alembic_version"}
        if store.is_postgres:
            schema = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname")).scalars().all()
            schema += conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY tgname")).scalars().all()
        else:
            schema = conn.execute(text("SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') ORDER BY name")).all()
        return rows, schema

    insert = ("INSERT INTO scheduled_license_change_log (subscription_id, status, action, change_effective, currency, apply_refund, direction, "
              "effective_date, provision_on, scheduled_for, bill_from, source, attempts, created_at, updated_at) VALUES "
              "(:sub, :status, :action, 'custom', 'USD', false, 'negative', '2026-02-01', '2026-02-01', '2026-02-02 07:30:00', '2026-02-02', "
              "'user', 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00')")
    try:
        w365_store.upgrade(url, "0003")
        with engine.begin() as conn:  # raw SQL: the models are at the head
            conn.execute(text("INSERT INTO customer (name, created_at) VALUES ('Fabrikam', '2026-01-01 00:00:00')"))
            conn.execute(text("INSERT INTO provider (name, kind) VALUES ('pc', 'partner_center')"))
            conn.execute(text("INSERT INTO product (sku, name, kind, default_qrb, default_qrw_days) VALUES ('S', 'S', 'license', 'window', 7)"))
            conn.execute(text("INSERT INTO billing_contract (number, customer_id, frequency, currency, start_date, auto_renew, refunds_allowed, "
                              "change_billing, status, price_list, payment_terms_days, created_at) VALUES ('BC-1', 1, 'MONTHLY', 'USD', "
                              "'2026-01-01', true, false, 'immediate', 'active', 'default', 30, '2026-01-01 00:00:00')"))
            for i in (1, 2):
                conn.execute(text("INSERT INTO subscription (name, product_id, provider_id, customer_id, contract_id, quantity, selling_price, "
                                  "cost_price, sales_unit, currency, price_list, status, qrb, qrw_days, start_date, markup_pct, created_at, "
                                  "updated_at) VALUES (:n, 1, 1, 1, 1, 5, '10', '8', 'MONTHLY', 'USD', 'default', 'active', 'window', 7, "
                                  "'2026-01-01', '0', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"), {"n": f"sub {i}"})
            conn.execute(text(insert), {"sub": 1, "status": "pending", "action": "deactivate"})
            with pytest.raises(DBAPIError):
                with conn.begin_nested():
                    conn.execute(text(insert), {"sub": 2, "status": "pending", "action": "suspend"})
        with engine.connect() as conn:
            before_rows, before_schema = snapshot(conn)

        w365_store.upgrade(url, "0004")  # 0004 itself: later revisions (0005 on, issue 16) are not this test's
        assert w365_store.current_revision(url) == "0004"
        with engine.connect() as conn:
            after_rows, after_schema = snapshot(conn)
            assert after_rows == before_rows and after_schema == before_schema
            if not store.is_postgres:
                assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
                assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        with engine.begin() as conn:
            conn.execute(text(insert), {"sub": 2, "status": "pending", "action": "suspend"})
            with pytest.raises(DBAPIError):  # the C8 partial unique index is still there
                with conn.begin_nested():
                    conn.execute(text(insert), {"sub": 2, "status": "pending", "action": "suspend"})
            with pytest.raises(DBAPIError):  # and the CHECK still refuses what is no action
                with conn.begin_nested():
                    conn.execute(text(insert), {"sub": 2, "status": "archived", "action": "pause"})

        with pytest.raises(RuntimeError, match="1 scheduled change"):
            _alembic(url, "downgrade", "0003")
        assert w365_store.current_revision(url) == "0004"
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM scheduled_license_change_log WHERE action = 'suspend'"))
        _alembic(url, "downgrade", "0003")
        assert w365_store.current_revision(url) == "0003"
        with engine.begin() as conn:
            with pytest.raises(DBAPIError):
                with conn.begin_nested():
                    conn.execute(text(insert), {"sub": 2, "status": "pending", "action": "suspend"})
        with engine.connect() as conn:
            assert snapshot(conn) == (before_rows, before_schema)
        w365_store.upgrade(url)
        assert w365_store.current_revision(url) == w365_store.head_revision()
    finally:
        engine.dispose()
        if store.is_postgres:
            drop_database(url)
