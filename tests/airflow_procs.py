"""Airflow components as real processes, for the slow end-to-end tests (backfill, topology).

Each component runs in a session of its own and is stopped with all its children (task
runners, Celery pool processes) on the way out, whatever happens. ``AirflowREST`` talks to the
api-server as ops' scripts would: a token from ``/auth/token``, then ``/api/v2``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx

from airflow_home import AIRFLOW


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def worker_name() -> str:
    """``[core] hostname_callable`` for workers that share one machine: each reports the name
    in ``W365_WORKER_NAME``, so a task instance's hostname says which worker ran it."""
    return os.environ.get("W365_WORKER_NAME") or socket.getfqdn()


def airflow_cli(env: dict[str, str], *args: str, attempts: int = 1, timeout: int = 300) -> str:
    """An Airflow CLI command (retried: SQLite's single writer may be busy with a scheduler)."""
    out = None
    for _ in range(attempts):
        out = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout)
        if out.returncode == 0:
            return out.stdout
        time.sleep(2)
    assert out is not None
    raise AssertionError(f"airflow {' '.join(args)} failed:\n{out.stderr[-3000:]}")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait: float = 30) -> None:
    """Stop a component and every process of its session."""
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=wait)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def component(env: dict[str, str], home: Path, name: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    log = open(home / f"{name}.log", "a")
    proc = subprocess.Popen([AIRFLOW, *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop(proc)
        log.close()


def wait_until_listening(proc: subprocess.Popen[bytes], port: int, log: Path, deadline_s: float = 150) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if answers("127.0.0.1", port):
            return
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {deadline_s}s:\n{log.read_text()[-3000:]}")


def write_passwords(home: Path, passwords: dict[str, str]) -> None:
    """SimpleAuthManager's passwords file, written before the api-server first starts."""
    (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps(passwords))


class AirflowREST:
    def __init__(self, base: str, username: str, password: str):
        self.base = base.rstrip("/")
        r = httpx.post(f"{self.base}/auth/token", json={"username": username, "password": password}, timeout=30)
        r.raise_for_status()
        self.headers = {"Authorization": f"Bearer {r.json()['access_token']}"}

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.base}{path}", headers=self.headers, params=params, timeout=30)
        r.raise_for_status()
        return r.json()

    def send(self, method: str, path: str, body: Any) -> Any:
        r = httpx.request(method, f"{self.base}{path}", headers=self.headers, json=body, timeout=30)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text[:2000]}"
        return r.json() if r.content else None

    def wait_for_dag(self, dag_id: str, deadline_s: float = 150) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            r = httpx.get(f"{self.base}/api/v2/dags/{dag_id}", headers=self.headers, timeout=30)
            if r.status_code == 200:
                return
            time.sleep(2)
        raise AssertionError(f"DAG {dag_id} not parsed after {deadline_s}s")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"]

    def wait_for_run(self, dag_id: str, run_id: str, deadline_s: float, states: tuple[str, ...] = ("success", "failed")) -> str:
        deadline = time.monotonic() + deadline_s
        state = "?"
        while time.monotonic() < deadline:
            state = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in states:
                return state
            time.sleep(2)
        raise AssertionError(f"run {run_id} of {dag_id} still {state} after {deadline_s}s")
