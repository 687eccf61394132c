"""The production topology, proven without Docker (issue 7; SPEC J4, J6).

What docker-compose.yaml runs, started as processes: Airflow's metadata on PostgreSQL, the
billing store in its own PostgreSQL database, the CeleryExecutor with Redis as broker, an
api-server, a scheduler, a dag-processor and two Celery workers. The sharded full-cycle invoicing
DAG bills a demo tenant: its shards run on both workers and every due contract is billed exactly
once. Then one worker is killed while it runs a shard; the run is completed by a rerun on the
other worker, and nothing is billed twice. Bounded in time; every process started is stopped and
the databases and the Redis database are removed.

Runs when PostgreSQL (``W365_TEST_DATABASE_URL``) and Redis (``W365_TEST_REDIS_URL`` or
127.0.0.1:6379) answer; ``.ci/run`` sets both when they do.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from airflow_home import DAGS, REPO
from airflow_procs import AirflowREST, airflow_cli, answers, component, free_port, stop, wait_until_listening, write_passwords

pytestmark = [pytest.mark.topology, pytest.mark.airflow]

JOB = "generate_full_cycle_invoice_monthly"
SHARDS = 6
PASSWORD = "topology-admin"


def _redis_url() -> str | None:
    url = os.environ.get("W365_TEST_REDIS_URL")
    if url:
        return url
    return "redis://127.0.0.1:6379/0" if answers("127.0.0.1", 6379) else None


@pytest.fixture
def services() -> dict[str, str]:
    pg = os.environ.get("W365_TEST_DATABASE_URL")
    redis = _redis_url()
    if not pg:
        if os.environ.get("W365_REQUIRE_POSTGRES"):  # CI: production's topology must be tested
            pytest.fail("W365_REQUIRE_POSTGRES is set but W365_TEST_DATABASE_URL is not")
        pytest.skip("topology test needs PostgreSQL: set W365_TEST_DATABASE_URL")
    if not redis:
        pytest.skip("topology test needs Redis on 127.0.0.1:6379 (or W365_TEST_REDIS_URL)")
    return {"pg": pg, "redis": redis}


def _env(home: Path, airflow_db: str, store: str, broker: str, port: int) -> dict[str, str]:
    af = make_url(airflow_db)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "W365_"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "PYTHONPATH": str(REPO / "tests"),  # for the workers' hostname_callable below
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": af.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False),
        "AIRFLOW__CELERY__BROKER_URL": broker,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + af.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow_procs.worker_name",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": "w365-topology-test-only",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # only the runs this test triggers
        "AIRFLOW__W365__TIMEZONE": "UTC",
        "AIRFLOW__W365__INVOICE_SHARDS": str(SHARDS),
        "W365_DATABASE_URL": store,
    })
    return env


def _billed(store: str) -> dict[str, Any]:
    from w365.store.models import BillingContract, Invoice
    from w365.store.session import read_scope, get_engine
    from w365.operations.audit import audit_billing

    with read_scope(get_engine(store)) as s:
        per_period = s.execute(select(Invoice.contract_id, Invoice.period_from, func.count()).group_by(Invoice.contract_id, Invoice.period_from)).all()
        seqs = sorted(s.scalars(select(Invoice.sequence)))
        due_feb = s.scalar(select(func.count()).select_from(BillingContract).where(BillingContract.next_invoice_date <= date(2026, 2, 28)))
        diffs = audit_billing(s).differences
    return {"per_period": per_period, "sequences": seqs, "still_due_feb": due_feb, "diffs": diffs}


def _shard_hosts(api: AirflowREST, run_id: str) -> Counter[str]:
    return Counter(ti["hostname"] for ti in api.task_instances(JOB, run_id) if ti["task_id"] == "invoice_shard" and ti["hostname"])


def test_celery_topology_shards_on_two_workers_and_survives_a_killed_worker(services: dict[str, str], tmp_path: Path) -> None:
    from w365 import store as w365_store
    from w365.store.admin import create_scratch_database, drop_database
    from w365.store.session import dispose_engines, session_scope, get_engine
    from w365.interfaces.demo import DemoSpec, load_demo

    airflow_db = create_scratch_database(services["pg"], "w365_topology_airflow")
    store = create_scratch_database(services["pg"], "w365_topology_billing")
    redis_db = random.randint(5, 15)
    broker = str(make_url(services["redis"]).set(database=str(redis_db)))
    home = tmp_path / "airflow"
    home.mkdir()
    port = free_port()
    env = _env(home, airflow_db, store, broker, port)
    procs: dict[str, Any] = {}
    stack = ExitStack()  # stops every component, whatever happens
    try:
        w365_store.upgrade(store)
        with session_scope(get_engine(store)) as s:
            # 120 monthly contracts starting Jan 1-28, 2026, nothing billed yet: all due on Jan 31.
            load_demo(s, DemoSpec(customers=60, contracts_per_customer=2, subscriptions_per_contract=3, as_of=date(2026, 1, 1),
                                  fresh=True, frequencies=("MONTHLY",), slcl_percent=0))
        airflow_cli(env, "db", "migrate")
        airflow_cli(env, "pools", "set", "w365_provider_api", "4", "Partner Center rate limit")
        write_passwords(home, {"admin": PASSWORD})

        topology = [
            ("api-server", env, ("api-server", "--port", str(port))),
            ("scheduler", env, ("scheduler", "--skip-serve-logs")),
            ("dag-processor", env, ("dag-processor",)),
            ("w1", dict(env, W365_WORKER_NAME="w1"), ("celery", "worker", "--celery-hostname", "w1@%h")),
            ("w2", dict(env, W365_WORKER_NAME="w2"), ("celery", "worker", "--celery-hostname", "w2@%h")),
        ]
        for name, penv, args in topology:
            procs[name] = stack.enter_context(component(penv, home, name, *args))
        wait_until_listening(procs["api-server"], port, home / "api-server.log")
        api = AirflowREST(f"http://127.0.0.1:{port}", "admin", PASSWORD)
        api.wait_for_dag(JOB)
        api.send("PATCH", f"/api/v2/dags/{JOB}", {"is_paused": False})

        # 1. Both workers bill; every due contract billed exactly once.
        run1 = api.send("POST", f"/api/v2/dags/{JOB}/dagRuns", {"logical_date": "2026-01-31T00:15:00Z", "dag_run_id": "topology-jan"})
        assert api.wait_for_run(JOB, run1["dag_run_id"], 420) == "success", (home / "scheduler.log").read_text()[-3000:]
        hosts = _shard_hosts(api, run1["dag_run_id"])
        assert set(hosts) == {"w1", "w2"}, hosts  # the shards ran on both workers
        jan = _billed(store)
        assert len(jan["per_period"]) == 120 and all(n == 1 for *_, n in jan["per_period"])
        assert jan["sequences"] == list(range(1, 121)) and jan["diffs"] == []

        # 2. Kill worker 1 while it runs a shard of February's run; a rerun completes the run.
        run2 = api.send("POST", f"/api/v2/dags/{JOB}/dagRuns", {"logical_date": "2026-02-28T00:15:00Z", "dag_run_id": "topology-feb"})
        deadline = time.monotonic() + 240
        killed = False
        while time.monotonic() < deadline and not killed:
            for ti in api.task_instances(JOB, run2["dag_run_id"]):
                if ti["task_id"] == "invoice_shard" and ti["state"] == "running" and ti["hostname"] == "w1":
                    stop(procs["w1"], signal.SIGKILL)
                    killed = True
                    break
            time.sleep(0.2)
        assert killed, "worker 1 never ran a shard of the second run"
        state = api.wait_for_run(JOB, run2["dag_run_id"], 420)
        if state != "success":
            # The killed shard failed: ops clear the failed tasks (a rerun) and it completes on w2.
            api.send("POST", f"/api/v2/dags/{JOB}/clearTaskInstances",
                     {"dag_run_id": run2["dag_run_id"], "only_failed": True, "dry_run": False, "reset_dag_runs": True})
            state = api.wait_for_run(JOB, run2["dag_run_id"], 420)
        assert state == "success"
        # And a full rerun of the whole run (all shards) bills nothing more.
        api.send("POST", f"/api/v2/dags/{JOB}/clearTaskInstances",
                 {"dag_run_id": run2["dag_run_id"], "only_failed": False, "dry_run": False, "reset_dag_runs": True})
        assert api.wait_for_run(JOB, run2["dag_run_id"], 300) == "success"
        feb = _billed(store)
        assert len(feb["per_period"]) == 240 and all(n == 1 for *_, n in feb["per_period"]), Counter(n for *_, n in feb["per_period"])
        assert feb["sequences"] == list(range(1, 241))  # gapless: the killed shard's transaction rolled back
        assert feb["still_due_feb"] == 0 and feb["diffs"] == []
    finally:
        stack.close()
        dispose_engines()
        for url in (airflow_db, store):
            drop_database(url)
        try:
            import redis

            redis.Redis.from_url(broker).flushdb()
        except Exception:  # noqa: BLE001 - best effort
            pass
