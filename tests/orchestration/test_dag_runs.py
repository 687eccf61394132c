"""The catalogue DAGs run end to end with ``dag.test()`` on a demo tenant (issue 6).

Airflow's metadata DB is SQLite in the session's temporary AIRFLOW_HOME; the billing store is the
``store`` fixture (SQLite, and PostgreSQL when configured). ``dag.test()`` runs every task in this
process, through Airflow's task runner and execution API, so the tasks see W365_DATABASE_URL.

Backfill (SPEC J6): Airflow 3 backfills are executed by a running scheduler (plus an api-server
for the task runners). Here the equivalent is a run per logical date of the 10 days, in date
order, exactly the runs ``airflow backfill create --from-date … --to-date …`` would create (the
dates come from the DAG's own timetable), done twice, the second time on top of the first as
``--reprocess-behavior completed`` would. See docs/dags.md.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pendulum
import pytest
from sqlalchemy import func, select

from airflow_home import LA, airflow_db, invoices, load_demo_tenant, parse_dags, run_dag, task_states, tenant_tz  # noqa: F401
from pc_server import pc  # noqa: F401 - fixture: a local Partner Center

pytestmark = pytest.mark.airflow


@pytest.fixture
def dags(airflow_db: str, tenant_tz: str) -> Any:
    bag = parse_dags()
    assert bag.import_errors == {}
    return bag.dags


def at(day: date, hh: int, mm: int) -> pendulum.DateTime:
    return pendulum.datetime(day.year, day.month, day.day, hh, mm, tz=LA)


# ---------------------------------------------------------------------------- full-cycle invoice


def test_full_cycle_run_bills_the_due_contracts_in_shards(dags: Any, store: Any) -> None:
    """SPEC J4/J6: a scheduled full-cycle run bills every monthly contract due on its logical
    date, shard by shard (dynamic task mapping); a rerun of the same date bills nothing more."""
    from w365.orchestration import jobs

    load_demo_tenant(store)
    dag = dags["generate_full_cycle_invoice_monthly"]
    as_of = at(date(2026, 1, 1), 0, 15)
    due = jobs.due_contract_shards("monthly", as_of.isoformat(), 0, shards=100)
    assert len(due) >= 2, "the demo tenant should have several monthly contracts due"

    run = run_dag(dag, as_of)
    assert run.state == "success", task_states(run)
    states = task_states(run)
    assert sum(k.startswith("invoice_shard[") for k in states) == min(4, len(due))
    billed = invoices(store)
    assert {b[1] for b in billed} == set(_numbers(store, [i for shard in due for i in shard]))
    assert {b[3] for b in billed} == {date(2026, 1, 1)}  # issue date = the logical date, not today
    assert all(b[2] == "full_cycle" or getattr(b[2], "value", "") == "full_cycle" for b in billed)

    rerun = run_dag(dag, as_of)
    assert rerun.state == "success"
    assert invoices(store) == billed
    assert task_states(rerun).get("invoice_shard") == "skipped"  # nothing due: zero shards


def test_manual_params_preview_and_bill_ahead(dags: Any, store: Any) -> None:
    """SPEC J5: a manual trigger with dry_run previews (writes nothing); advance_days bills the
    contracts due within that many days; the contract filter limits the run."""
    load_demo_tenant(store, fresh=True)
    dag = dags["generate_full_cycle_invoice_monthly"]
    as_of = at(date(2026, 1, 1), 0, 15)
    preview = run_dag(dag, as_of, run_conf={"dry_run": True, "advance_days": 30})
    assert preview.state == "success"
    assert invoices(store) == []

    one = _numbers(store, _monthly_ids(store))[0]
    # Another manual run of the same tenant day, a minute later (dag.test reuses a run of the same
    # logical date). Its conf names every param: dag.test runs tasks in this process on one DAG
    # object, and Airflow's param merge writes a run's conf into the DAG's Param objects (a worker
    # parses the DAG afresh for every task, so runs never share params there).
    run = run_dag(dag, as_of.add(minutes=1), run_conf={"advance_days": 30, "dry_run": False, "contract": one})
    assert run.state == "success", task_states(run)
    assert {b[1] for b in invoices(store)} == {one}


def test_manual_run_without_a_logical_date_uses_run_after(dags: Any, store: Any) -> None:
    """SPEC J6: a manual run without a logical date is bound to its run_after, never to now()."""
    load_demo_tenant(store, fresh=True)
    dag = dags["generate_full_cycle_invoice_monthly"]
    run = run_dag(dag, None, run_after=at(date(2026, 1, 31), 0, 15), run_conf={"advance_days": 0, "dry_run": False, "contract": ""})
    assert run.state == "success", task_states(run)
    billed = invoices(store)
    assert billed and {b[3] for b in billed} == {date(2026, 1, 31)}


def test_a_skipped_contract_fails_the_run_after_billing_the_others(dags: Any, store: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 6 decision: an invoicing run that could not bill a contract (bad data) bills the
    others and then fails, loudly and without retrying, naming the contract and the reason."""
    from w365.orchestration import jobs
    from w365.store.models import BillingContract

    load_demo_tenant(store)
    ids = [i for shard in jobs.due_contract_shards("monthly", "2026-01-01", 0, shards=1) for i in shard]
    bad = ids[0]
    with store.session() as s:  # a next invoice date off the contract's period boundaries
        contract = s.get(BillingContract, bad)
        contract.next_invoice_date -= timedelta(days=1)
        number = contract.number
        s.commit()
    run = run_dag(dags["generate_full_cycle_invoice_monthly"], at(date(2026, 1, 1), 0, 15))
    states = task_states(run)
    assert run.state == "failed" and states["summarise"] == "failed", states
    assert all(v == "success" for k, v in states.items() if k != "summarise")
    assert number not in {b[1] for b in invoices(store)} and len(invoices(store)) == len(ids) - 1
    assert f"1 contract(s) not billed: {number}: next invoice date" in caplog.text


def test_a_time_zone_mismatch_fails_with_a_clear_message(dags: Any, store: Any, caplog: pytest.LogCaptureFixture) -> None:
    """SPEC S4: the schedule zone ([w365] timezone) must be the store's tenant zone, or the run
    would bill the wrong local date; the task says so and bills nothing."""
    load_demo_tenant(store, timezone="Europe/Berlin")
    run = run_dag(dags["generate_full_cycle_invoice_monthly"], at(date(2026, 1, 1), 0, 15))
    assert run.state == "failed"
    assert task_states(run)["list_due_contracts"] == "failed"
    assert "time zone mismatch" in caplog.text and "Europe/Berlin" in caplog.text
    assert invoices(store) == []
    # ... and the failure went through the one notifier ([w365] failure_notifier, log by default)
    assert "[w365] Generate Full Cycle Invoice - Monthly Contracts failed (list_due_contracts, as of 2026-01-01T08:15:00+00:00)" in caplog.text


def test_a_run_with_the_default_params_bills_every_due_contract(dags: Any, store: Any) -> None:
    """issue 13 (item 2), SPEC J4/J5: the Trigger form submitted as it opens sends every param's
    default (the contract filter empty: null); that run bills every due contract, exactly like a
    scheduled run, and so does a change-log run with its defaults."""
    from w365.orchestration import jobs

    load_demo_tenant(store)
    dag = dags["generate_full_cycle_invoice_monthly"]
    assert dag.params.validate() == {"advance_days": 0, "dry_run": False, "contract": None}
    as_of = at(date(2026, 1, 1), 0, 15)
    due = [i for shard in jobs.due_contract_shards("monthly", as_of.isoformat(), 0, shards=1) for i in shard]
    assert len(due) >= 2
    run = run_dag(dag, as_of, run_conf=dag.params.validate())  # what the form posts as it opens
    assert run.state == "success", task_states(run)
    assert {b[1] for b in invoices(store)} == set(_numbers(store, due))
    change_log = dags["generate_change_log_invoice_monthly"]
    assert change_log.params.validate() == {"dry_run": False, "contract": None}
    assert run_dag(change_log, at(date(2026, 1, 5), 0, 30), run_conf=change_log.params.validate()).state == "success"


def test_a_future_logical_date_is_refused_by_the_first_task(dags: Any, store: Any, caplog: pytest.LogCaptureFixture) -> None:
    """issue 13 (item 9): a run dated in the future (Airflow's scheduler would never start it, and
    it would block the job) fails in its first task at once, naming the logical date and now, and
    does nothing; one dated now or in the past runs."""
    load_demo_tenant(store)
    future = pendulum.now("UTC").add(days=2).replace(microsecond=0)
    run = run_dag(dags["generate_full_cycle_invoice_monthly"], future)
    states = task_states(run)
    assert run.state == "failed" and states["list_due_contracts"] == "failed", states
    assert all(v != "success" for k, v in states.items() if k != "list_due_contracts"), states
    assert f"refused: the logical date {future.isoformat()} is in the future (now is 20" in caplog.text
    assert "To bill ahead, use the param advance_days." in caplog.text
    assert invoices(store) == []

    caplog.clear()
    run = run_dag(dags["scheduled_update"], future.add(minutes=1))
    assert run.state == "failed" and task_states(run) == {"merge_due_slcls": "failed"}
    assert "Scheduled Update works as of its run's logical date" in caplog.text and "advance_days" not in caplog.text

    present = pendulum.now("UTC").subtract(minutes=1).replace(microsecond=0)
    run = run_dag(dags["scheduled_update"], present)
    assert run.state == "success", task_states(run)


def test_the_future_check_has_a_small_tolerance_and_ignores_runs_without_a_logical_date() -> None:
    """issue 13: clocks of different machines may differ by a little: five minutes ahead passes,
    six do not; a run without a logical date is bound to run_after and never refused."""
    from airflow.sdk.exceptions import AirflowFailException

    from w365.orchestration.airflow_support import check_not_future

    now = pendulum.datetime(2026, 11, 1, 12, tz="UTC")
    check_not_future({"logical_date": now.add(minutes=5)}, now=now)
    check_not_future({"logical_date": now.subtract(years=1)}, now=now)
    check_not_future({"logical_date": None}, now=now)
    with pytest.raises(AirflowFailException, match=r"2026-11-01T12:06:00\+00:00 is in the future \(now is 2026-11-01T12:00:00\+00:00\)"):
        check_not_future({"logical_date": now.add(minutes=6)}, now=now)


# ------------------------------------------------------------------------------ backfill, J6


def test_backfill_of_10_days_twice_gives_the_same_invoices(dags: Any, store: Any) -> None:
    """SPEC J6: backfilling 10 past days runs each day as of its logical date (invoices dated
    that day, whatever the wall clock); backfilling the same days again bills nothing twice and
    leaves exactly the same invoices (numbers, lines, totals)."""
    from airflow.serialization.serialized_objects import DagSerialization

    load_demo_tenant(store, fresh=True, customers=20)
    dag = dags["generate_full_cycle_invoice_monthly"]
    # The logical dates `airflow backfill create --from-date 2026-01-01 --to-date 2026-01-10`
    # creates: the DAG's own timetable between the two dates.
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    dates = [i.logical_date for i in scheduler_dag.iter_dagrun_infos_between(at(date(2026, 1, 1), 0, 0), at(date(2026, 1, 10), 23, 59))]
    assert [d.in_timezone(LA).strftime("%m-%d %H:%M") for d in dates] == [f"01-{d:02d} 00:15" for d in range(1, 11)]

    def backfill() -> list[tuple[Any, ...]]:
        for logical_date in dates:
            run = run_dag(dag, logical_date)
            assert run.state == "success", (logical_date, task_states(run))
        return invoices(store)

    first = backfill()
    assert len({b[3] for b in first}) >= 3, "contracts start on several of the 10 days"
    assert {b[3] for b in first} <= {date(2026, 1, d) for d in range(1, 11)}
    assert all(b[4] == b[3] for b in first)  # fresh contracts: the first period starts that day
    second = backfill()
    assert second == first


# -------------------------------------------------------------------------- other job kinds


def test_scheduled_update_run_merges_the_due_slcls(dags: Any, store: Any) -> None:
    """SPEC C6/S6: the 23:30 Scheduled Update run merges the SLCLs due by then (archived, an LCL
    written); a rerun of the same slot merges nothing twice."""
    from w365.store.models import LicenseChangeLog, ScheduledLicenseChangeLog, SLCLStatus

    load_demo_tenant(store)
    with store.session() as s:
        pending = s.execute(select(ScheduledLicenseChangeLog.id, ScheduledLicenseChangeLog.scheduled_for)
                            .where(ScheduledLicenseChangeLog.status.in_([SLCLStatus.PENDING, SLCLStatus.AWAITING_MERGE]))
                            .order_by(ScheduledLicenseChangeLog.scheduled_for)).all()
    assert pending
    first_due = pendulum.instance(pending[0][1]).in_timezone(LA)
    slot = at(first_due.date(), 23, 30)
    due = {i for i, when in pending if pendulum.instance(when) <= slot}
    with store.session() as s:
        lcls_before = s.scalar(select(func.count()).select_from(LicenseChangeLog))

    run = run_dag(dags["scheduled_update"], slot)
    assert run.state == "success", task_states(run)
    with store.session() as s:
        statuses = dict(s.execute(select(ScheduledLicenseChangeLog.id, ScheduledLicenseChangeLog.status)
                                  .where(ScheduledLicenseChangeLog.id.in_(due))).all())
        lcls_after = s.scalar(select(func.count()).select_from(LicenseChangeLog))
    assert set(statuses.values()) <= {SLCLStatus.ARCHIVED, SLCLStatus.MERGE_FAILED}
    archived = sum(st == SLCLStatus.ARCHIVED for st in statuses.values())
    assert archived >= 1 and lcls_after - lcls_before >= archived

    assert run_dag(dags["scheduled_update"], slot).state == "success"
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(LicenseChangeLog)) == lcls_after


def test_a_sync_run_changes_the_tenant_and_publishes_its_asset(dags: Any, store: Any, pc: Any, tmp_path: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 6 / SPEC P1: the Partner Center sync DAG, against a local Partner Center (the
    integrations tests' server and set-up), writes the provider's change as a change log and, on
    success, publishes its Asset: the event the metrics DAG's asset-or-time schedule listens to."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    from test_all_jobs_run import configure
    from w365.store.models import ChangeSource, LicenseChangeLog

    configure(store, pc, tmp_path, monkeypatch)  # demo tenant (UTC) + one subscription grown by 2 seats
    with store.session() as s:
        from w365.billing.subscriptions import get_tenant

        get_tenant(s).time_zone = LA
        s.commit()
        before = s.scalar(select(func.count()).select_from(LicenseChangeLog).where(LicenseChangeLog.source == ChangeSource.PROVIDER))
    dag = dags["sync_subscriptions_from_provider"]
    run = run_dag(dag, at(date(2026, 1, 1), 2, 0))
    assert run.state == "success", task_states(run)
    with store.session() as s:
        after = s.scalar(select(func.count()).select_from(LicenseChangeLog).where(LicenseChangeLog.source == ChangeSource.PROVIDER))
    assert after == before + 1
    with create_session() as session:
        published = set(session.scalars(select(AssetModel.uri).join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
                                        .where(AssetEvent.source_run_id == run.run_id)))
    assert published == {"w365://provider/subscriptions"}

    assert run_dag(dag, at(date(2026, 1, 1), 2, 0)).state == "success"  # a rerun: no new change
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(LicenseChangeLog).where(LicenseChangeLog.source == ChangeSource.PROVIDER)) == after


# ---------------------------------------------------------------------------------- helpers


def _monthly_ids(store: Any) -> list[int]:
    from w365.store.models import BillingContract

    with store.session() as s:
        return list(s.scalars(select(BillingContract.id).where(BillingContract.frequency == "MONTHLY").order_by(BillingContract.id)))


def _numbers(store: Any, ids: list[int]) -> list[str]:
    from w365.store.models import BillingContract

    with store.session() as s:
        return list(s.scalars(select(BillingContract.number).where(BillingContract.id.in_(ids)).order_by(BillingContract.id)))

