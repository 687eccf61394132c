"""Airflow for the DAG tests (issue 6): the metadata database, the provider pool, parsing dags/,
running a DAG with ``dag.test()`` and reading back what it billed.

The Airflow environment itself (a temporary AIRFLOW_HOME, dags/, plugins/) is set at the top of
``conftest.py``, before anything imports Airflow. Import the fixtures from here in a test module:
``from airflow_home import airflow_db, tenant_tz``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
LA = "America/Los_Angeles"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Airflow's metadata DB in the session's AIRFLOW_HOME, migrated once, with the provider pool
    (as scripts/start.sh and docker-compose's airflow-init create it)."""
    home = os.environ["AIRFLOW_HOME"]
    assert "w365-test-airflow-" in home, "tests/conftest.py must set a temporary AIRFLOW_HOME first"
    subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True, env=os.environ, timeout=300)
    from airflow.models.pool import Pool

    from w365.orchestration.catalogue import PROVIDER_POOL

    Pool.create_or_update_pool(PROVIDER_POOL, slots=4, description="Partner Center rate limit", include_deferred=False)
    return home


@pytest.fixture
def tenant_tz(monkeypatch: pytest.MonkeyPatch) -> str:
    """DAG schedules in America/Los_Angeles (``[w365] timezone``), as ops would configure it."""
    monkeypatch.setenv("AIRFLOW__W365__TIMEZONE", LA)
    return LA


def parse_dags() -> Any:
    """dags/ parsed the way Airflow parses it (the DagBag of ``airflow dags report``)."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def load_demo_tenant(store: Any, **spec: Any) -> dict[str, int]:
    """The demo tenant in Los Angeles, committed, so tasks (their own sessions) see it."""
    from w365.interfaces.demo import DemoSpec, load_demo

    spec.setdefault("timezone", LA)
    spec.setdefault("as_of", date(2026, 1, 1))
    with store.session() as s:
        stats = load_demo(s, DemoSpec(**spec))
        s.commit()
    return stats


def run_dag(dag: Any, logical_date: Any, **kwargs: Any) -> Any:
    """One run with ``dag.test()`` (``logical_date=None``: a run without one, bound to
    ``run_after``); tasks run in this process, so they see W365_DATABASE_URL. Retries are off:
    dag.test() would otherwise sit out the backoff of a failing task (minutes, by design)."""
    for task in dag.tasks:
        task.retries = 0
    return dag.test(logical_date=logical_date, **kwargs)


def task_states(run: Any) -> dict[str, str]:
    return {(ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state) for ti in run.get_task_instances()}


def invoices(store: Any) -> list[tuple[Any, ...]]:
    """Every invoice with its lines: what finance sees, to compare runs exactly."""
    from sqlalchemy import select

    from w365.store.models import BillingContract, Invoice, InvoiceLine

    with store.session() as s:
        rows = s.execute(
            select(Invoice.number, BillingContract.number, Invoice.kind, Invoice.issue_date, Invoice.period_from,
                   Invoice.period_to, Invoice.currency, Invoice.total, Invoice.id)
            .join(BillingContract, BillingContract.id == Invoice.contract_id).order_by(Invoice.number)
        ).all()
        lines = {}
        for inv_id, amount, qty in s.execute(select(InvoiceLine.invoice_id, InvoiceLine.amount, InvoiceLine.quantity).order_by(InvoiceLine.id)):
            lines.setdefault(inv_id, []).append((amount, qty))
    return [(*r[:-1], tuple(lines.get(r[-1], ()))) for r in rows]
