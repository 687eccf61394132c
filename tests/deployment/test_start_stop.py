"""The embedded default starts green, fits a laptop and stops completely (issue 13, items 1 and 4).

Each scenario runs the README's own ``scripts/start.sh`` once, against a throw-away AIRFLOW_HOME
(its own metadata DB, billing store with the demo tenant, logs) on free ports, with the sizes of
``scripts/env.sh`` (nothing of this test's own Airflow settings leaks into it):

* **background + stop.sh**: ``bash scripts/start.sh --background`` returns once Airflow is ready;
  then the first scheduled run of every enabled job (and the asset-triggered ones they set off)
  finishes with no task instance failed, up for retry or on a second try, and the first try's log
  is readable (issue 13 item 1: nothing is scheduled before the api-server answers); the
  deployment's processes and their RSS stay within ``MAX_PROCESSES`` / ``MAX_RSS_MIB`` (item 4);
  ``bash scripts/stop.sh`` ends every process of that tree, of its components' sessions and
  carrying the run's marker (``W365_AIRFLOW_RUN``), and nothing else is needed;
* **foreground + Ctrl-C**: ``bash scripts/start.sh`` in a process group of its own gets SIGINT,
  as a terminal sends it; everything exits within ``STOP_SECONDS``.

The figures measured are printed (``-s``) and kept in ``artifacts/start-stop.json``. Whatever
happens, every process started here is killed on the way out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import psutil
import pytest

from airflow_home import REPO
from airflow_procs import answers, free_port

pytestmark = pytest.mark.airflow

START_SECONDS = 420  # scripts/start.sh, set-up included (venv present), until it reports ready
FIRST_RUNS_SECONDS = 240  # the first scheduled runs, all finished
STOP_SECONDS = 60  # scripts/stop.sh or Ctrl-C until the last process is gone
# The sizes scripts/env.sh chooses (docs/deployment.md): supervisor, api-server, scheduler and its
# log server, [core] parallelism = 4 LocalExecutor workers, dag-processor (+ a parsing child),
# triggerer (+ its runner and log server), with room for a task or two still finishing.
MAX_PROCESSES = 18
MAX_RSS_MIB = 2600  # summed RSS of the tree (forked workers share pages: the real use is lower)
MARKER = "W365_AIRFLOW_RUN"
ARTIFACTS = REPO / "artifacts"


def _env(home: Path) -> dict[str, str]:
    """The environment of an ops engineer's shell: none of this test session's Airflow settings
    (conftest's AIRFLOW_HOME, database, ...); scripts/env.sh sets the embedded default's own."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "W365_")) and k not in ("VIRTUAL_ENV",)}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__API__PORT": str(free_port()),
        # The scheduler's and triggerer's log servers: free ports too (another Airflow may run here).
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "W365_SKIP_INSTALL": "1",  # the venv the tests run in
    })
    return env


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _marked(run_id: str | None, sessions: dict[int, float]) -> list[psutil.Process]:
    """Processes of the deployment found without its tree: in a session one of its components
    leads (started after that component), or with the run's marker in their environment."""
    found = []
    for p in psutil.process_iter():
        if p.pid == os.getpid():
            continue
        try:
            sid = os.getsid(p.pid)
            ours = sid in sessions and p.create_time() >= sessions[sid] - 1
            if (ours or (run_id and p.environ().get(MARKER) == run_id)) and _alive(p):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def _size(pid: int) -> dict[str, Any]:
    procs = [p for p in _tree(pid) if _alive(p)]
    rss = pss = 0
    kinds: dict[str, int] = {}
    for p in procs:
        try:
            mem = p.memory_full_info()
            rss += mem.rss
            pss += getattr(mem, "pss", 0)
            name = " ".join(p.cmdline()[:3]).replace(str(REPO), ".")[:60]
            kinds[name] = kinds.get(name, 0) + 1
        except psutil.Error:
            continue
    return {"processes": len(procs), "rss_mib": round(rss / 2**20), "pss_mib": round(pss / 2**20), "kinds": kinds}


def _record(name: str, figures: dict[str, Any]) -> None:
    print(f"\nissue 13, {name}: {json.dumps(figures, indent=1)}")
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "start-stop.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[name] = figures
    path.write_text(json.dumps(data, indent=1))


class Deployment:
    """One throw-away deployment: its home, environment, URL; killed completely on the way out."""

    def __init__(self, tmp: Path):
        self.home = tmp / "airflow"
        self.env = _env(self.home)
        self.url = f"http://127.0.0.1:{self.env['AIRFLOW__API__PORT']}"
        self.pids: set[psutil.Process] = set()
        self.run_id: str | None = None
        self.sessions: dict[int, float] = {}

    @property
    def state(self) -> dict[str, Any]:
        return json.loads((self.home / "w365-airflow.json").read_text())

    def remember(self, pid: int) -> None:
        self.pids.update(_tree(pid))
        try:
            state = self.state
            self.run_id = state["run_id"]
            self.sessions.update({int(c["pid"]): float(c["create_time"]) for c in state["components"].values()})
        except (OSError, ValueError, KeyError):
            pass

    def leftovers(self) -> list[psutil.Process]:
        left = {p.pid: p for p in self.pids if _alive(p)}
        left.update({p.pid: p for p in _marked(self.run_id, self.sessions)})
        return list(left.values())

    def kill_all(self) -> None:
        for p in self.leftovers():
            try:
                p.kill()
            except psutil.Error:
                pass

    def log_tail(self) -> str:
        out = []
        for log in sorted((self.home / "logs").glob("*.log")):
            out.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(out)[-12000:]

    def admin(self) -> dict[str, str]:
        passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        r = httpx.post(f"{self.url}/auth/token", json={"username": "admin", "password": passwords["admin"]}, timeout=30)
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(tmp_path)
    try:
        yield dep
    finally:
        dep.kill_all()


def _get_all(url: str, headers: dict[str, str], key: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        r = httpx.get(url, headers=headers, params={**params, "limit": 100, "offset": len(items)}, timeout=30)
        r.raise_for_status()
        page = r.json()[key]
        items += page
        if len(page) < 100:
            return items


def _first_runs_done(dep: Deployment, headers: dict[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Wait until every enabled job has its first scheduled run and no run is queued or running
    (twice in a row: asset-triggered runs follow the syncs)."""
    api = f"{dep.url}/api/v2"
    deadline = time.monotonic() + FIRST_RUNS_SECONDS
    quiet = 0
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        enabled = {d["dag_id"] for d in _get_all(f"{api}/dags", headers, "dags", paused="false")}
        runs = _get_all(f"{api}/dags/~/dagRuns", headers, "dag_runs")
        scheduled = {r["dag_id"] for r in runs if r["run_type"] == "scheduled"}
        busy = [r for r in runs if r["state"] in ("queued", "running")]
        quiet = quiet + 1 if enabled and enabled <= scheduled and not busy else 0
        if quiet >= 2:
            return runs, _get_all(f"{api}/dags/~/dagRuns/~/taskInstances", headers, "task_instances")
        time.sleep(3)
    raise AssertionError(f"first runs not finished within {FIRST_RUNS_SECONDS}s: "
                         f"{[(r['dag_id'], r['state']) for r in runs if r['state'] != 'success']}\n{dep.log_tail()}")


def test_background_start_is_green_small_and_stop_sh_ends_everything(deployment: Deployment) -> None:
    """Issue 13, items 1 and 4: `scripts/start.sh --background`, the first runs all green on
    their first try, the deployment within its sizes, then `scripts/stop.sh` leaves no process."""
    dep = deployment
    t0 = time.monotonic()
    start = subprocess.run(["bash", "scripts/start.sh", "--background"], cwd=REPO, env=dep.env, capture_output=True,
                           text=True, timeout=START_SECONDS)
    ready_s = time.monotonic() - t0
    pid = int((dep.home / "w365-airflow.pid").read_text()) if (dep.home / "w365-airflow.pid").exists() else 0
    if pid:
        dep.remember(pid)
    assert start.returncode == 0, f"{start.stdout[-3000:]}\n{start.stderr[-3000:]}\n{dep.log_tail()}"
    assert "Airflow is ready" in start.stdout, start.stdout[-3000:]
    assert pid and dep.state["ready"]
    assert httpx.get(f"{dep.url}/api/v2/monitor/health", timeout=10).status_code == 200
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        assert (dep.home / "logs" / f"{name}.log").stat().st_size > 0, name

    headers = dep.admin()
    runs, tis = _first_runs_done(dep, headers)
    green_s = time.monotonic() - t0
    dep.remember(pid)
    bad = [(t["dag_id"], t["task_id"], t["map_index"], t["state"], t["try_number"]) for t in tis
           if t["state"] not in ("success", "skipped") or t["try_number"] > 1]
    assert not bad, f"task instances not green on their first try: {bad}\n{dep.log_tail()}"
    assert all(r["state"] == "success" for r in runs), [(r["dag_id"], r["state"]) for r in runs]
    assert len({r["dag_id"] for r in runs if r["run_type"] == "scheduled"}) >= 15
    # Try 1's log is there (the issue: "TaskInstance not found" for a try that never reached the api-server).
    for t in [t for t in tis if t["state"] == "success"][:5]:
        r = httpx.get(f"{dep.url}/api/v2/dags/{t['dag_id']}/dagRuns/{t['dag_run_id']}/taskInstances/{t['task_id']}/logs/1",
                      headers={**headers, "Accept": "application/json"}, params={"map_index": t["map_index"]}, timeout=30)
        assert r.status_code == 200 and r.json()["content"], (t["dag_id"], t["task_id"], r.status_code, r.text[:500])
    assert "ConnectError" not in (dep.home / "logs" / "scheduler.log").read_text(errors="replace")

    time.sleep(5)  # let the last task processes exit: measure the idle deployment
    size = _size(pid)
    _record("background", {"start_sh_until_ready_s": round(ready_s), "first_runs_green_s": round(green_s),
                           "runs": len(runs), "task_instances": len(tis), **size})
    assert size["processes"] <= MAX_PROCESSES, size
    assert size["rss_mib"] <= MAX_RSS_MIB, size

    dep.remember(pid)
    t1 = time.monotonic()
    stop = subprocess.run(["bash", "scripts/stop.sh"], cwd=REPO, env=dep.env, capture_output=True, text=True,
                          timeout=STOP_SECONDS + 30)
    stop_s = time.monotonic() - t1
    assert stop.returncode == 0, stop.stdout + stop.stderr
    deadline = time.monotonic() + 10
    while dep.leftovers() and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [(p.pid, p.name()) for p in dep.leftovers()]
    assert not left, f"left running after scripts/stop.sh: {left}"
    assert stop_s <= STOP_SECONDS, stop_s
    assert not (dep.home / "w365-airflow.pid").exists()
    assert not answers("127.0.0.1", int(dep.env["AIRFLOW__API__PORT"]))
    _record("background-stop", {"stop_sh_s": round(stop_s, 1), "processes_before": len(dep.pids),
                                "output": stop.stdout.strip().splitlines()})
    # Stopping what is not running says so and succeeds.
    again = subprocess.run(["bash", "scripts/stop.sh"], cwd=REPO, env=dep.env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "not running" in again.stdout


def test_ctrl_c_in_the_foreground_ends_everything(deployment: Deployment) -> None:
    """Issue 13, item 4: `bash scripts/start.sh` in the foreground (a process group of its own, as
    a terminal runs it); SIGINT to that group, as Ctrl-C sends it, ends every process within
    STOP_SECONDS, tasks in flight included."""
    dep = deployment
    out = dep.home.parent / "console.log"
    with open(out, "wb") as console:
        proc = subprocess.Popen(["bash", "scripts/start.sh"], cwd=REPO, env=dep.env, stdout=console,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0)
    try:
        deadline = time.monotonic() + START_SECONDS
        while "Airflow is ready" not in out.read_text(errors="replace"):
            assert proc.poll() is None, f"start.sh exited ({proc.returncode}):\n{out.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"not ready within {START_SECONDS}s:\n{out.read_text()[-4000:]}"
            time.sleep(1)
        # start.sh exec's the supervisor: the pid Ctrl-C reaches is the one in the pid file.
        assert int((dep.home / "w365-airflow.pid").read_text()) == proc.pid
        time.sleep(3)  # the scheduler is dispatching the first runs: stop with tasks in flight
        dep.remember(proc.pid)
        before = _size(proc.pid)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=STOP_SECONDS)
        while dep.leftovers() and time.monotonic() - t0 < STOP_SECONDS:
            time.sleep(0.5)
        stop_s = time.monotonic() - t0
        left = [(p.pid, p.name()) for p in dep.leftovers()]
        assert not left, f"left running after Ctrl-C: {left}\n{out.read_text()[-3000:]}"
        assert code == 0, out.read_text()[-3000:]
        assert stop_s <= STOP_SECONDS
        assert "stopped" in out.read_text()
        assert not (dep.home / "w365-airflow.pid").exists()
        _record("foreground-ctrl-c", {"stop_s": round(stop_s, 1), "processes_before": before["processes"],
                                      "rss_mib_before": before["rss_mib"],
                                      "output": out.read_text().strip().splitlines()[-4:]})
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
