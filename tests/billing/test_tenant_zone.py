"""The tenant's time zone has one source, Airflow's [w365] timezone (SPEC S4, issue 14): the
store's copy is derived from it while nothing is billed (`w365 db upgrade`) and checked when it is
set (`w365 tenant set`, `w365 demo load --timezone`), so no job has to find a mismatch at 00:05."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from conftest import one_error

from w365.interfaces.cli import main
from w365.interfaces.demo import DemoSpec, load_demo
from w365.orchestration import jobs
from w365.store.models import Tenant

LA, BERLIN = "America/Los_Angeles", "Europe/Berlin"


def _zone(store) -> str:
    with store.session() as s:
        return s.scalar(select(Tenant.time_zone))


def test_s4_db_upgrade_derives_the_store_zone_from_the_setting_while_nothing_is_billed(store, monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW__W365__TIMEZONE", LA)
    assert _zone(store) == "UTC"  # a new store
    assert main(["db", "upgrade"]) == 0
    assert f"tenant time zone UTC -> {LA}" in capsys.readouterr().out
    assert _zone(store) == LA
    assert jobs.tenant_timezone() == LA


def test_s4_tenant_set_refuses_a_zone_the_schedules_do_not_run_in(store, monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW__W365__TIMEZONE", LA)
    assert main(["tenant", "set", "--timezone", BERLIN]) == 1
    assert one_error(capsys) == (
        f"error: tenant time zone: {BERLIN} is not the zone the DAG schedules run in ({LA}, Airflow's [w365] timezone): "
        f"set AIRFLOW__W365__TIMEZONE={BERLIN} (or timezone = {BERLIN} under [w365] in airflow.cfg) first, then run this "
        "again (SPEC S4)"
    )
    assert _zone(store) == "UTC"  # nothing written
    assert main(["demo", "load", "--timezone", BERLIN]) == 1
    assert "is not the zone the DAG schedules run in" in one_error(capsys)
    assert main(["tenant", "set", "--timezone", LA]) == 0
    assert _zone(store) == LA


def test_s4_a_billed_store_keeps_its_zone_and_says_so(store, monkeypatch, capsys):
    with store.session() as s:
        load_demo(s, DemoSpec(customers=2, as_of=date(2026, 1, 5), timezone=LA))
        s.commit()
    monkeypatch.setenv("AIRFLOW__W365__TIMEZONE", LA)
    assert jobs.run("generate_full_cycle_invoice_monthly", "2026-01-05")["invoices"]
    monkeypatch.setenv("AIRFLOW__W365__TIMEZONE", BERLIN)  # the setting changed after billing
    assert main(["db", "upgrade"]) == 0
    assert f"warning: the store's invoices are dated in {LA} but the DAG schedules run in {BERLIN}" in capsys.readouterr().out
    assert _zone(store) == LA  # never changed under invoices
    assert main(["tenant", "set", "--timezone", BERLIN]) == 1
    assert one_error(capsys).endswith(f"the store's invoices were dated in {LA}; it cannot change now (SPEC S4)")
