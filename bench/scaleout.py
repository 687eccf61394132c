"""Scale-out: the sharded full-cycle DAG on the CeleryExecutor topology, 1 worker then 2 (issue 15).

    .venv/bin/python bench/scaleout.py [--url postgresql://postgres@127.0.0.1:5432/test]
        [--redis redis://127.0.0.1:6379/0] [--customers 2000] [--shards 4]

What docker-compose.yaml runs, started as processes (as tests/deployment/test_topology.py does):
Airflow's metadata and the billing store on PostgreSQL, Redis as the broker, an api-server, a
scheduler, a dag-processor and N Celery workers with one task process each. The demo tenant
(``--customers`` x 5 monthly contracts x 10 subscriptions, all due on 2026-01-31) is loaded once
into a template database; each phase bills an identical copy of it, so both phases do the same
work. Timed: the DAG run of ``generate_full_cycle_invoice_monthly`` for 2026-01-31 from its
start to its end (Airflow's own start/end dates), and the sum of its shard tasks' durations.
Not timed: starting the components, loading the tenant. The books digest of both phases must be
identical (same invoices, lines and totals; ``_common.books_digest``, as in full_cycle.py).

The machine bounds the result: both workers, the scheduler, the api-server and PostgreSQL share
its cores; the speed-up is printed with the load average seen during each phase.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from contextlib import ExitStack
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
sys.path.insert(0, str(ROOT / "tests"))  # the topology test's process helpers

from _common import DEFAULT_URL, books_digest, final_json  # noqa: E402
from airflow_procs import AirflowREST, airflow_cli, component, free_port, wait_until_listening, write_passwords  # noqa: E402

JOB = "generate_full_cycle_invoice_monthly"
LOGICAL = "2026-01-31T00:15:00Z"
PASSWORD = "scaleout-admin"


def _env(home: Path, airflow_db: str, store: str, broker: str, port: int, shards: int) -> dict[str, str]:
    from sqlalchemy.engine import make_url

    af = make_url(airflow_db).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "W365_"))}
    env.update({
        "AIRFLOW_HOME": str(home), "PYTHONPATH": str(ROOT / "tests"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": af,
        "AIRFLOW__CELERY__BROKER_URL": broker, "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + af,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",  # one task process per worker
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow_procs.worker_name",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin", "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__WORKERS": "1", "AIRFLOW__API_AUTH__JWT_SECRET": "w365-scaleout-bench-only",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1", "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__W365__TIMEZONE": "UTC", "AIRFLOW__W365__INVOICE_SHARDS": str(shards), "W365_DATABASE_URL": store,
    })
    return env


def _copy_database(base_url: str, template_url: str, name: str) -> str:
    """A new database on the server, an exact copy of ``template_url``'s (PostgreSQL's template)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    template = make_url(template_url).database
    admin = create_engine(make_url(base_url).set(drivername="postgresql+psycopg2"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    return make_url(template_url).set(database=name).render_as_string(hide_password=False)


def phase(workers: int, *, base_url: str, template: str, redis: str, shards: int, tmp: Path) -> dict[str, object]:
    from sqlalchemy.engine import make_url

    from w365.store.admin import create_scratch_database, drop_database

    suffix = f"{os.getpid()}_{workers}"
    airflow_db = create_scratch_database(base_url, "w365_scaleout_airflow")
    store = _copy_database(base_url, template, f"w365_scaleout_billing_{suffix}")
    broker = str(make_url(redis).set(database=str(random.randint(5, 15))))
    home = tmp / f"airflow-{workers}"
    home.mkdir(parents=True)
    port = free_port()
    env = _env(home, airflow_db, store, broker, port, shards)
    try:
        with ExitStack() as stack:
            airflow_cli(env, "db", "migrate")
            airflow_cli(env, "pools", "set", "w365_provider_api", "4", "Partner Center rate limit")
            write_passwords(home, {"admin": PASSWORD})
            procs = [("api-server", env, ("api-server", "--port", str(port))), ("scheduler", env, ("scheduler", "--skip-serve-logs")),
                     ("dag-processor", env, ("dag-processor",))]
            procs += [(f"w{i}", dict(env, W365_WORKER_NAME=f"w{i}"), ("celery", "worker", "--celery-hostname", f"w{i}@%h"))
                      for i in range(1, workers + 1)]
            started = {name: stack.enter_context(component(penv, home, name, *args)) for name, penv, args in procs}
            wait_until_listening(started["api-server"], port, home / "api-server.log")
            api = AirflowREST(f"http://127.0.0.1:{port}", "admin", PASSWORD)
            api.wait_for_dag(JOB)
            api.send("PATCH", f"/api/v2/dags/{JOB}", {"is_paused": False})
            time.sleep(5)  # let every worker connect to the broker before the shards are queued
            load_before = os.getloadavg()[0]
            run = api.send("POST", f"/api/v2/dags/{JOB}/dagRuns", {"logical_date": LOGICAL, "dag_run_id": f"scaleout-{workers}"})
            state = api.wait_for_run(JOB, run["dag_run_id"], 1800)
            if state != "success":
                raise SystemExit(f"{workers} worker(s): the run ended {state}; see {home}/scheduler.log")
            info = api.get(f"/api/v2/dags/{JOB}/dagRuns/{run['dag_run_id']}")
            tis = api.task_instances(JOB, run["dag_run_id"])
            shard_tis = [t for t in tis if t["task_id"] == "invoice_shard"]
            seconds = _span(info["start_date"], info["end_date"])
            return {
                "workers": workers, "run_seconds": round(seconds, 2), "shards": len(shard_tis),
                "shard_seconds": round(sum(t.get("duration") or 0 for t in shard_tis), 2),
                "hosts": sorted({t["hostname"] for t in shard_tis}), "load_avg_1m": round(max(load_before, os.getloadavg()[0]), 2),
                "books": books_digest(store),
            }
    finally:
        drop_database(airflow_db)
        drop_database(store)
        try:
            import redis as redis_lib

            redis_lib.Redis.from_url(broker).flushdb()
        except Exception:  # noqa: BLE001 - best effort
            pass


def _span(start: str, end: str) -> float:
    return (datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=DEFAULT_URL)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--customers", type=int, default=2000, help="x 5 monthly contracts x 10 subscriptions")
    ap.add_argument("--shards", type=int, default=4)
    args = ap.parse_args()

    import tempfile

    from w365 import store as w365_store
    from w365.interfaces.demo import DemoSpec, load_demo
    from w365.store.admin import create_scratch_database, drop_database
    from w365.store.session import dispose_engines, get_engine, session_scope

    template = create_scratch_database(args.url, "w365_scaleout_template")
    try:
        t0 = time.perf_counter()
        w365_store.upgrade(template)
        with session_scope(get_engine(template)) as s:
            stats = load_demo(s, DemoSpec(customers=args.customers, contracts_per_customer=5, subscriptions_per_contract=10,
                                          as_of=date(2026, 1, 1), fresh=True, frequencies=("MONTHLY",), slcl_percent=0))
        dispose_engines()  # a template must have no connections
        print(f"tenant: {stats} in {time.perf_counter() - t0:.0f} s; {args.shards} shards", flush=True)
        with tempfile.TemporaryDirectory(prefix="w365-scaleout-") as tmp:
            one = phase(1, base_url=args.url, template=template, redis=args.redis, shards=args.shards, tmp=Path(tmp))
            print(f"1 worker:  run {one['run_seconds']:.1f} s (shards {one['shard_seconds']:.1f} s of task time), load {one['load_avg_1m']}",
                  flush=True)
            two = phase(2, base_url=args.url, template=template, redis=args.redis, shards=args.shards, tmp=Path(tmp))
            print(f"2 workers: run {two['run_seconds']:.1f} s (shards {two['shard_seconds']:.1f} s of task time on {two['hosts']}), "
                  f"load {two['load_avg_1m']}", flush=True)
    finally:
        dispose_engines()
        drop_database(template)
    speedup = float(one["run_seconds"]) / float(two["run_seconds"])  # type: ignore[arg-type]
    same = one["books"] == two["books"]
    print(f"speed-up 2 workers / 1 worker: {speedup:.2f}x (aim >= 1.7x: {'met' if speedup >= 1.7 else 'NOT met'}); "
          f"books identical: {same} ({one['books']})")
    print(f"cores on this machine: {os.cpu_count()} (workers, scheduler, api-server and PostgreSQL share them)")
    final_json("scaleout", subscriptions=stats.get("subscriptions"), contracts=stats.get("contracts"), shards=args.shards,
               one_worker=one, two_workers=two, speedup=round(speedup, 2), books_identical=same)


if __name__ == "__main__":
    main()
