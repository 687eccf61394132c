"""A real Airflow 3 backfill, twice (SPEC J6): ``airflow backfill create`` executed by a running
scheduler (LocalExecutor) and api-server (the task runners' execution API), as ops would run it.

Slow (about two minutes): it starts Airflow's components as processes in a throw-away
AIRFLOW_HOME, with the scheduler's own cron scheduling off (``use_job_schedule = False``) so only
the backfill runs. They are stopped, with all their children, whatever happens.
``test_dag_runs.py`` checks the same property faster, with ``dag.test()``, on both store backends.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from airflow_home import DAGS, LA, invoices, load_demo_tenant
from airflow_procs import airflow_cli, component, free_port, wait_until_listening

pytestmark = pytest.mark.airflow

JOB = "generate_full_cycle_invoice_monthly"
DEADLINE = 150  # seconds for one backfill of 10 days


def _env(home: Path, store_url: str, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": "w365-backfill-test-only",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__W365__TIMEZONE": LA,
        "W365_DATABASE_URL": store_url,
    })
    return env


@contextmanager
def _api_server(env: dict[str, str], home: Path, port: int) -> Iterator[None]:
    with component(env, home, "api-server", "api-server", "--port", str(port)) as proc:
        wait_until_listening(proc, port, home / "api-server.log", 120)
        yield


def _wait_for_backfill(home: Path, backfill_id: int, scheduler: subprocess.Popen[bytes]) -> list[tuple[str, str]]:
    db = home / "airflow.db"
    deadline = time.monotonic() + DEADLINE
    runs: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        assert scheduler.poll() is None, (home / "scheduler.log").read_text()[-3000:]
        with sqlite3.connect(db, timeout=30) as c:
            done = c.execute("SELECT completed_at FROM backfill WHERE id = ?", (backfill_id,)).fetchone()
            runs = c.execute("SELECT logical_date, state FROM dag_run WHERE backfill_id = ? ORDER BY logical_date", (backfill_id,)).fetchall()
        if done and done[0]:
            return runs
        time.sleep(2)
    raise AssertionError(f"backfill {backfill_id} not complete after {DEADLINE}s: {runs}")


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_airflow_backfill_create_twice_gives_the_same_invoices(store: Any, tmp_path: Path) -> None:
    """SPEC J6 with Airflow's own backfill: 10 tenant days of the monthly full-cycle job
    (`airflow backfill create ... --max-active-runs 1`), then the same 10 days again with
    `--reprocess-behavior completed`: every run succeeds, invoices are dated by their run's logical
    date, and the second backfill leaves exactly the same invoices."""
    load_demo_tenant(store, fresh=True, customers=20)
    home = tmp_path / "airflow"
    home.mkdir()
    port = free_port()
    env = _env(home, store.url, port)
    airflow_cli(env, "db", "migrate")
    airflow_cli(env, "pools", "set", "w365_provider_api", "4", "Partner Center rate limit")
    airflow_cli(env, "dags", "reserialize")
    window = ["--from-date", "2026-01-01T00:00:00-08:00", "--to-date", "2026-01-10T23:59:59-08:00", "--max-active-runs", "1"]
    reprocess = ([], ["--reprocess-behavior", "completed"])
    results = []
    with _api_server(env, home, port):
        for n, extra in enumerate(reprocess, start=1):
            # Created while no scheduler runs: on SQLite a creation that has to retry (busy
            # database) must not race the scheduler. The scheduler then executes the backfill.
            airflow_cli(env, "backfill", "create", "--dag-id", JOB, *window, *extra, attempts=5)
            with component(env, home, "scheduler", "scheduler", "--skip-serve-logs") as scheduler:
                runs = _wait_for_backfill(home, n, scheduler)
            results.append((runs, invoices(store)))
    (first_runs, first), (second_runs, second) = results
    assert [state for _, state in first_runs] == ["success"] * 10, first_runs
    assert [state for _, state in second_runs] == ["success"] * 10, second_runs
    assert [d[:10] for d, _ in first_runs] == [f"2026-01-{d:02d}" for d in range(1, 11)]
    assert first and len({inv[3] for inv in first}) >= 3
    assert {inv[3].isoformat() for inv in first} <= {f"2026-01-{d:02d}" for d in range(1, 11)}
    assert second == first
