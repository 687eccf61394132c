"""A demo with a past (issue 13, item 5): `w365 demo load --history-days N` loads the demo tenant
as of N days ago and runs the real jobs through every day since (w365.interfaces.demo_history): invoices
span months (SPEC B1, J4), change-log invoices credit and re-bill (B4), scheduled changes are
billed ahead and merged (C6, C11, C12), metrics have a snapshot a day (M-metrics), and the books
end settled: the independent audit (w365.operations.audit, SPEC S3, S6, M2, M3) finds no difference at all
and the ledger (S3) no drift. Deterministic for a seed."""

import json
from datetime import date, time, timedelta

import pytest
from sqlalchemy import func, select

import factories as f
from conftest import reset_store
from w365.operations.audit import audit_billing
from w365.interfaces.cli import main
from w365.store.models import (
    BillingContract,
    ContractMetricSnapshot,
    Invoice,
    InvoiceKind,
    LicenseChangeLog,
    ScheduledLicenseChangeLog,
    SLCLStatus,
)
from w365.interfaces.demo import DemoSpec, load_demo
from w365.interfaces.demo_history import cron_times, day_events, run_history, _schedule
from w365.core.tenant_time import start_of_day
from w365.operations.ledger_check import verify_ledger

LA = "America/Los_Angeles"
TODAY = date(2026, 12, 20)  # a Sunday: 60 days back is Oct 21


def _history(store, session, days, seed=365):
    first = TODAY - timedelta(days=days)
    load_demo(session, DemoSpec(as_of=first, fresh=True, timezone=LA, seed=seed), now=start_of_day(first, LA))
    session.commit()
    return first, run_history(first, TODAY - timedelta(days=1), seed=seed, engine=store.engine)


def _books(session):
    f.fresh(session)
    invoices = [(i.number, i.contract_id, i.kind.value, i.issue_date, i.period_from, i.total)
                for i in session.scalars(select(Invoice).order_by(Invoice.sequence))]
    slcls = [(s.id, s.status.value, s.action.value, s.effective_date) for s in session.scalars(select(ScheduledLicenseChangeLog).order_by(ScheduledLicenseChangeLog.id))]
    lcls = session.scalar(select(func.count()).select_from(LicenseChangeLog))
    session.commit()
    return invoices, slcls, lcls


def test_issue13_60_days_of_history_bill_months_merge_changes_and_leave_the_books_settled(store, session):
    """issue 13 (SPEC B1, B4, C6, C12, J4, S3, M2, M3): 60 days run through the real jobs."""
    first, report = _history(store, session, 60)
    f.fresh(session)
    invoices = session.scalars(select(Invoice)).all()
    months = {(i.issue_date.year, i.issue_date.month) for i in invoices}
    assert months == {(2026, 10), (2026, 11), (2026, 12)}  # issued on their run days, never today
    assert all(first <= i.issue_date < TODAY for i in invoices)
    assert any(i.kind == InvoiceKind.CHANGE_LOG for i in invoices) and report.change_log_invoices > 0
    assert len(invoices) == report.invoices
    archived = session.scalars(select(ScheduledLicenseChangeLog).where(ScheduledLicenseChangeLog.status == SLCLStatus.ARCHIVED)).all()
    assert len(archived) == report.merged > 0 and report.merge_failed == 0
    # Each change entered through the change service: an LCL now, or a scheduled change.
    now = session.scalar(select(func.count()).select_from(LicenseChangeLog).where(LicenseChangeLog.created_by == "demo history", LicenseChangeLog.source == "user"))
    later = session.scalar(select(func.count()).select_from(ScheduledLicenseChangeLog).where(ScheduledLicenseChangeLog.requested_by == "demo history"))
    assert now + later == sum(report.changes.values()) and now > 0 and later > 0
    # A metric snapshot for every day, of every contract.
    contracts = session.scalar(select(func.count()).select_from(BillingContract))
    per_day = dict(session.execute(select(ContractMetricSnapshot.as_of, func.count()).group_by(ContractMetricSnapshot.as_of)).tuples().all())
    assert per_day == {first + timedelta(days=n): contracts for n in range(60)}
    assert sum(per_day.values()) == report.metric_snapshots
    # The books: no difference at all (not even one a coming run would settle), no drift.
    audit = audit_billing(session)
    assert audit.days_checked > 1000 and audit.invoices_checked == len(invoices)
    assert audit.differences == [], [str(d) for d in audit.differences[:5]]
    count, drift = verify_ledger(session)
    assert count > 0 and drift == []
    # Jobs with nothing due were not started; those that bill were.
    assert report.skipped_runs > 0 and report.runs["metrics"] == 60 and report.runs["full_cycle"] > 0


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)  # one backend is enough to compare two runs
def test_issue13_history_is_deterministic(store, session):
    """issue 13: the same seed gives the same books, to the cent and the SLCL."""
    _history(store, session, 30, seed=7)
    first = _books(session)
    session.close()
    reset_store(store)
    _history(store, session, 30, seed=7)
    assert _books(session) == first and first[0]


def test_issue13_cli_demo_load_history_days_then_verify(store, capsys, monkeypatch):
    """issue 13: the flag start.sh uses; `w365 verify billing` and `w365 verify ledger` exit 0 after
    it; a second history on a store with invoices is refused with one line, nothing written.
    (issue 14: --timezone must be the schedules' zone, [w365] timezone, as in start.sh.)"""
    monkeypatch.setenv("AIRFLOW__W365__TIMEZONE", LA)
    assert main(["demo", "load", "--timezone", LA, "--history-days", "21", "--as-of", TODAY.isoformat(), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["history"]["first_day"] == "2026-11-29" and out["history"]["last_day"] == "2026-12-19" and out["history"]["days"] == 21
    assert out["demo"]["contracts"] == 12 and out["history"]["invoices"] > 0
    assert main(["verify", "billing"]) == 0
    assert "0 difference(s)" in capsys.readouterr().out
    assert main(["verify", "ledger"]) == 0
    capsys.readouterr()
    before = f.row_counts(store)
    assert main(["demo", "load", "--history-days", "5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--history-days needs a store without invoices" in err[0]
    assert f.row_counts(store) == before
    assert main(["demo", "load", "--history-days", "3661"]) == 2
    assert "argument --history-days: 3661 is above the maximum of 3,660 days" in capsys.readouterr().err


def test_issue13_the_day_follows_the_catalogue():
    """issue 13 (SPEC J1, C6): the jobs run at their catalogue times in tenant time; the change-log
    jobs weekly on Monday with Monthly's off; changes come after the morning runs, before 23:30."""
    assert cron_times("30 0 * * 1", date(2026, 11, 30)) == [time(0, 30)]  # a Monday
    assert cron_times("30 0 * * 1", date(2026, 12, 1)) == []
    assert cron_times("5 0 * * *", date(2026, 12, 1)) == [time(0, 5)]
    assert cron_times("0 9 1,15 * *", date(2026, 12, 15)) == [time(9, 0)] and cron_times("0 9 1,15 * *", date(2026, 12, 2)) == []
    assert cron_times("0 */12 * * 0", date(2026, 12, 6)) == [time(0, 0), time(12, 0)]  # Sunday as 0
    assert cron_times("0 0 * * 7", date(2026, 12, 6)) == [time(0, 0)]  # and as 7
    monday = [(e.at, e.kind, e.group, e.advance_days) for e in day_events(_schedule(), date(2026, 11, 30))]
    assert monday == [
        (time(0, 0), "renew", None, 0), (time(0, 5), "merge", None, 0),
        (time(0, 15), "full_cycle", "annual", 30), (time(0, 15), "full_cycle", "monthly", 0), (time(0, 15), "full_cycle", "quarterly", 0),
        (time(0, 30), "change_log", "annual", 0), (time(0, 30), "change_log", "quarterly", 0),
        (time(6, 0), "metrics", None, 0), (time(9, 0), "changes", None, 0), (time(23, 30), "merge", None, 0),
    ]
    assert [e.kind for e in day_events(_schedule(), date(2026, 12, 1))].count("change_log") == 0
