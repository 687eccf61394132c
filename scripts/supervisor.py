#!/usr/bin/env python3
"""The embedded default's Airflow, started in order and stopped as one (issue 13).

Replaces ``airflow standalone``, which started every component at once (the scheduler sent tasks
to an api-server that did not listen yet: a first start full of ``ConnectError`` and retries) and
left its children running when it got SIGTERM. Here:

* **order**: the api-server first; the others (dag-processor, scheduler, triggerer) only once
  ``/api/v2/monitor/health`` and the execution API tasks report to
  (``[core] execution_api_server_url``) both answer, so no task is scheduled before they do;
* **one deployment, one stop**: each component runs in a session (and process group) of its own,
  so a terminal's Ctrl-C reaches only this process, with its output in
  ``$AIRFLOW_HOME/logs/<component>.log``; this process is their subreaper (Linux), so task
  processes, LocalExecutor workers and log servers stay in its process tree whatever their parents
  do; they also keep their component's session and ``W365_AIRFLOW_RUN=<id>`` in their
  environment, which ``stop`` uses when this process itself was killed. SIGINT (Ctrl-C),
  SIGTERM and SIGHUP stop the scheduler, triggerer and dag-processor (SIGTERM, running tasks get
  ``W365_STOP_GRACE`` seconds), then the api-server, then SIGKILL whatever is left of the tree; a
  second Ctrl-C kills at once;
* **restarts**: a component that dies is started again (what it left behind killed first), at
  most 3 times in 10 minutes; after that everything stops, saying which one and why;
* **a pid file** ``$AIRFLOW_HOME/w365-airflow.pid`` (locked while the deployment runs) and a state
  file ``w365-airflow.json`` (components, URL, readiness), read by ``stop`` and ``status``.

Verbs (``scripts/start.sh`` and ``scripts/stop.sh`` call them; ``source scripts/env.sh`` first):

  run        start in the foreground; returns when everything has stopped
  start      the same in the background (a session of its own); returns once Airflow is ready
  stop       stop the deployment of this AIRFLOW_HOME, every process of it and only those
  status     say whether it runs, where, and its processes
  preflight  exit 1, saying why, if it cannot start (already running, port taken)
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import psutil

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
FIRST = ("api-server",)
THEN = ("dag-processor", "scheduler", "triggerer")
MARKER = "W365_AIRFLOW_RUN"
HEALTH = "/api/v2/monitor/health"


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        raise SystemExit(f"error: {name} must be a number of seconds, not {os.environ[name]!r}") from None


START_TIMEOUT = _env_float("W365_START_TIMEOUT", 180)  # api-server answering, then components healthy
STOP_GRACE = _env_float("W365_STOP_GRACE", 20)  # SIGTERM to SIGKILL, scheduler/triggerer/dag-processor
API_STOP_GRACE = 15.0  # then every component exited, the api-server included
RESTARTS, RESTART_WINDOW = 3, 600.0  # a component that dies is restarted, at most 3 times in 10 minutes


# --- where things are ------------------------------------------------------------------------

def home() -> Path:
    try:
        return Path(os.environ["AIRFLOW_HOME"])
    except KeyError:
        raise SystemExit("error: AIRFLOW_HOME is not set: `source scripts/env.sh` first") from None


def pid_file() -> Path:
    return home() / "w365-airflow.pid"


def state_file() -> Path:
    return home() / "w365-airflow.json"


def log_dir() -> Path:
    return home() / "logs"


def base_url() -> str:
    host = os.environ.get("AIRFLOW__API__HOST", "127.0.0.1")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    return f"http://{host}:{os.environ.get('AIRFLOW__API__PORT', '8080')}"


def execution_health_url() -> str:
    url = os.environ.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL") or f"{base_url()}/execution/"
    return url.rstrip("/") + "/health"


def say(msg: str) -> None:
    print(f"w365 | {msg}", flush=True)


def rel(path: Path) -> str:
    """The path relative to the working directory when it is inside it, else absolute."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def stop_command() -> str:
    """How to stop this deployment from another shell (naming a non-default AIRFLOW_HOME)."""
    default = Path(os.environ.get("W365_ROOT", ".")) / ".airflow"
    if home().resolve() == default.resolve():
        return "bash scripts/stop.sh"
    return f"AIRFLOW_HOME={home()} bash scripts/stop.sh"


# --- the pid file and its lock ---------------------------------------------------------------

def _try_lock(path: Path) -> int | None:
    """An fd holding the exclusive lock on ``path``, or None when a running deployment holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def running_pid() -> int | None:
    """The supervisor's pid when a deployment of this AIRFLOW_HOME runs (its lock is held)."""
    path = pid_file()
    if not path.exists():
        return None
    fd = _try_lock(path)
    if fd is not None:  # nobody holds it: not running (a stale file)
        os.close(fd)
        return None
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def read_state() -> dict[str, Any]:
    try:
        return json.loads(state_file().read_text())
    except (OSError, ValueError):
        return {}


def write_state(state: dict[str, Any]) -> None:
    tmp = state_file().with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, state_file())


def port_taken() -> bool:
    host = os.environ.get("AIRFLOW__API__HOST", "127.0.0.1")
    host = "127.0.0.1" if host in ("", "0.0.0.0") else ("::1" if host == "::" else host)
    try:
        with socket.create_connection((host, int(os.environ.get("AIRFLOW__API__PORT", "8080"))), timeout=1):
            return True
    except OSError:
        return False


def preflight() -> int:
    pid = running_pid()
    if pid:
        say(f"already running (pid {pid}) at {read_state().get('url', base_url())}; "
            f"stop it with: {stop_command()}")
        return 3
    if port_taken():
        say(f"error: something already listens on {base_url()} (another Airflow?): stop it, or choose "
            f"another port: AIRFLOW__API__PORT=8081 bash scripts/start.sh")
        return 1
    return 0


# --- processes ---------------------------------------------------------------------------------

def _become_subreaper() -> None:
    """Orphaned descendants (task processes whose worker died, ...) are re-parented to this process
    instead of init, so the deployment's whole tree stays below it (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        except (OSError, AttributeError):
            pass


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def marked(run_id: str | None, sessions: dict[int, float] | None = None) -> list[psutil.Process]:
    """Every live process of this deployment, found without its process tree (when the
    supervisor is gone): the sessions its components lead (each component starts a session of
    its own, which every process below it keeps, task processes included), and the run's marker in
    the environment (``setproctitle`` overwrites it in some processes, hence both). ``sessions``
    maps a component's pid to its start time, so a recycled pid is never mistaken for it."""
    found = []
    for p in psutil.process_iter():
        if p.pid == os.getpid():
            continue
        try:
            sid = os.getsid(p.pid)
            ours = sid in (sessions or {}) and p.create_time() >= (sessions or {})[sid] - 1
            if (ours or (run_id and p.environ().get(MARKER) == run_id)) and _alive(p):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def sessions_of(state: dict[str, Any]) -> dict[int, float]:
    return {int(c["pid"]): float(c["create_time"]) for c in state.get("components", {}).values()}


class Supervisor:
    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Any] = {}
        self.stop_signal: int | None = None
        self.kill_now = False
        self.started = time.monotonic()
        self.started_at = datetime.now(timezone.utc)
        self.state: dict[str, Any] = {}
        self.lock_fd: int | None = None
        self.killed: list[str] = []
        self.restarts: dict[str, list[float]] = {}

    # signals: the first asks for an orderly stop, a second one for an immediate one
    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
        else:
            self.kill_now = True

    def stopping(self) -> bool:
        return self.stop_signal is not None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[MARKER] = self.run_id
        return env

    def _spawn(self, name: str, *args: str) -> None:
        log = open(log_dir() / f"{name}.log", "ab")
        log.write(f"\n===== {datetime.now(timezone.utc).isoformat()} w365 supervisor starts `airflow {' '.join(args)}`\n".encode())
        log.flush()
        self.logs[name] = log
        self.procs[name] = subprocess.Popen([AIRFLOW, *args], env=self._env(), stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        proc = psutil.Process(self.procs[name].pid)
        self.state.setdefault("components", {})[name] = {"pid": proc.pid, "create_time": proc.create_time(),
                                                         "log": str(log_dir() / f"{name}.log")}
        write_state(self.state)
        say(f"{name} started (pid {proc.pid}), log {rel(log_dir() / f'{name}.log')}")

    def _dead(self) -> str | None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                return name
        return None

    def _reap_orphans(self) -> None:
        """Orphans re-parented here exit as zombies: collect them (never the components, whose
        status Popen collects)."""
        mine = {p.pid for p in self.procs.values()}
        try:
            children = psutil.Process().children()
        except psutil.Error:
            return
        for child in children:
            if child.pid in mine:
                continue
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    os.waitpid(child.pid, os.WNOHANG)
            except (psutil.Error, ChildProcessError):
                pass

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.stopping():
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))

    def _report_death(self, name: str) -> None:
        code = self.procs[name].returncode
        say(f"error: {name} exited (code {code}); its log, {rel(log_dir() / f'{name}.log')}, ends with:")
        try:
            tail = (log_dir() / f"{name}.log").read_text(errors="replace").splitlines()[-25:]
        except OSError:
            tail = []
        for line in tail:
            print(f"    {line}", flush=True)

    # start-up
    def _wait_api(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        urls = [base_url() + HEALTH, execution_health_url()]
        while time.monotonic() < deadline and not self.stopping():
            if self._dead():
                self._report_death("api-server")
                return False
            try:
                if all(httpx.get(u, timeout=3, trust_env=False).status_code == 200 for u in urls):
                    say(f"api-server answers at {base_url()} ({time.monotonic() - self.started:.0f} s); "
                        f"starting {', '.join(THEN)}")
                    return True
            except httpx.HTTPError:
                pass
            self._sleep(0.5)
        if not self.stopping():
            say(f"error: the api-server did not answer {' and '.join(urls)} within {START_TIMEOUT:.0f} s "
                f"(W365_START_TIMEOUT); see {rel(log_dir() / 'api-server.log')}")
        return False

    def _healthy(self) -> bool:
        """Scheduler, triggerer and dag-processor heartbeating since this start."""
        try:
            health = httpx.get(base_url() + HEALTH, timeout=3, trust_env=False).json()
        except (httpx.HTTPError, ValueError):
            return False
        for key in ("scheduler", "triggerer", "dag_processor"):
            part = health.get(key) or {}
            beat = part.get(f"latest_{key}_heartbeat")
            if part.get("status") != "healthy" or not beat:
                return False
            try:
                if datetime.fromisoformat(beat) < self.started_at:
                    return False
            except ValueError:
                return False
        return True

    def run(self, banner: bool) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        code = preflight()
        if code:
            return 0 if code == 3 else code
        self.lock_fd = _try_lock(pid_file())
        if self.lock_fd is None:
            say(f"already running: {stop_command()}")
            return 0
        os.ftruncate(self.lock_fd, 0)
        os.write(self.lock_fd, f"{os.getpid()}\n".encode())
        _become_subreaper()
        log_dir().mkdir(parents=True, exist_ok=True)
        me = psutil.Process()
        self.state = {"pid": me.pid, "create_time": me.create_time(), "run_id": self.run_id, "url": base_url(),
                      "home": str(home()), "logs": str(log_dir()), "ready": False,
                      "started_at": self.started_at.isoformat(), "components": {}}
        write_state(self.state)
        code = 0
        try:
            self._spawn("api-server", "api-server")
            if not self._wait_api():
                return 0 if self.stopping() else 1
            for name in THEN:
                self._spawn(name, name)
            deadline = time.monotonic() + START_TIMEOUT
            while not self.stopping():
                dead = self._dead()
                if dead:
                    self._report_death(dead)
                    if not self._restart(dead):
                        code = 1
                        break
                if not self.state["ready"]:
                    if self._healthy():
                        self.state["ready"] = True
                        write_state(self.state)
                        if banner:
                            self._banner()
                    elif time.monotonic() > deadline:
                        say("warning: not every component reports healthy yet (/api/v2/monitor/health); "
                            f"see {rel(log_dir())}/*.log")
                        deadline = float("inf")
                self._reap_orphans()
                self._sleep(1)
            return code
        finally:
            self.shutdown()

    def _restart(self, name: str) -> bool:
        """A component that died (Airflow's scheduler can, e.g. on a race with a backfill created
        meanwhile on SQLite) is started again, like a container with a restart policy: what is
        left of its session first (LocalExecutor workers ignore SIGTERM and would idle forever);
        the new scheduler resets the task instances that were running. More than RESTARTS deaths
        within RESTART_WINDOW seconds: False, and the whole deployment stops."""
        now = time.monotonic()
        recent = [t for t in self.restarts.get(name, []) if now - t < RESTART_WINDOW] + [now]
        self.restarts[name] = recent
        if len(recent) > RESTARTS:
            say(f"error: {name} exited {len(recent)} times within {RESTART_WINDOW / 60:.0f} minutes: stopping everything")
            return False
        old = self.state["components"][name]
        rest = marked(None, {int(old["pid"]): float(old["create_time"])})
        for p in rest:
            try:
                p.kill()
            except psutil.Error:
                pass
        self._wait(lambda: not any(_alive(p) for p in rest), 10)
        self.logs.pop(name).close()
        say(f"restarting {name} ({len(recent)} of {RESTARTS} within {RESTART_WINDOW / 60:.0f} minutes"
            f"{f'; killed {len(rest)} process(es) it left' if rest else ''})")
        self._spawn(name, name)
        return True

    def _banner(self) -> None:
        say(f"Airflow is ready at {base_url()} ({time.monotonic() - self.started:.0f} s)")
        say(f"logs: tail -f {rel(log_dir())}/*.log    stop: Ctrl-C here, or {stop_command()}")

    # shut-down
    def _busy(self, name: str) -> bool:
        """Still running, with processes of its own (LocalExecutor workers, task processes, the
        trigger runner): the api-server must keep answering them. A component whose children are
        gone is only finishing its own exit (collecting a large heap can take seconds)."""
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return False
        try:
            return any(_alive(c) for c in psutil.Process(proc.pid).children(recursive=True))
        except psutil.Error:
            return False

    def _signal(self, names: tuple[str, ...], sig: int) -> None:
        for name in names:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass

    def _wait(self, until: Any, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not until() and time.monotonic() < deadline and not self.kill_now:
            self._reap_orphans()
            time.sleep(0.1)
        return bool(until())

    def shutdown(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)  # a second signal during the stop: kill at once
        why = "a component failed" if self.stop_signal is None else signal.Signals(self.stop_signal).name
        if self.stop_signal is None:
            self.stop_signal = signal.SIGTERM
        if self.procs:
            say(f"stopping ({why}): scheduler, triggerer, dag-processor, then the api-server")
        t0 = time.monotonic()
        try:
            tree = psutil.Process().children(recursive=True)
        except psutil.Error:
            tree = []
        # The scheduler first (no new tasks; LocalExecutor lets running ones finish), with the
        # triggerer and dag-processor; the api-server once none of them has a task left to report.
        others = ("scheduler", "triggerer", "dag-processor")
        self._signal(others, signal.SIGTERM)
        if not self._wait(lambda: not any(self._busy(n) for n in others), STOP_GRACE):
            say(f"tasks still running after {STOP_GRACE:.0f} s (W365_STOP_GRACE): stopping anyway; "
                "what is left is killed")
        self._signal(("api-server",), signal.SIGTERM)
        if not self._wait(lambda: all(p.poll() is not None for p in self.procs.values()), API_STOP_GRACE):
            say(f"{', '.join(n for n, p in self.procs.items() if p.poll() is None)} still exiting after "
                f"{API_STOP_GRACE:.0f} s more: killing")
        # What is left (groups of components, task processes in groups of their own, anything
        # re-parented here or carrying this run's marker): SIGKILL.
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        killed: list[str] = []
        for _ in range(3):
            self._reap_orphans()
            try:
                rest = {p.pid: p for p in tree if _alive(p)}
                rest.update({p.pid: p for p in psutil.Process().children(recursive=True) if _alive(p)})
                rest.update({p.pid: p for p in marked(self.run_id, sessions_of(self.state))})
            except psutil.Error:
                rest = {}
            if not rest:
                break
            for p in rest.values():
                try:
                    killed.append(p.name())
                    p.kill()
                except psutil.Error:
                    pass
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(_alive(p) for p in rest.values()):
                self._reap_orphans()  # a killed orphan is this process's zombie until collected
                time.sleep(0.1)
            for proc in self.procs.values():
                try:
                    proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    pass
        self._reap_orphans()
        self.killed = killed
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for log in self.logs.values():
            log.close()
        for path in (state_file(), pid_file()):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        if self.lock_fd is not None:
            os.close(self.lock_fd)
        if self.procs:
            extra = f"; killed {len(killed)} left over: {', '.join(sorted(set(killed)))}" if killed else ""
            say(f"stopped ({time.monotonic() - t0:.0f} s{extra})")


# --- the verbs ---------------------------------------------------------------------------------

def start_background() -> int:
    """``run`` in a session of its own, its output in logs/supervisor.log; returns once ready."""
    code = preflight()
    if code:
        return 0 if code == 3 else code
    log_dir().mkdir(parents=True, exist_ok=True)
    log_path = log_dir() / "supervisor.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, __file__, "run", "--no-banner"], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.monotonic()
    say(f"starting in the background (pid {proc.pid}); progress in {rel(log_path)}")
    deadline = t0 + 2 * START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            say(f"error: the deployment stopped (code {proc.returncode}); {rel(log_path)} ends with:")
            for line in log_path.read_text(errors="replace").splitlines()[-30:]:
                print(f"    {line}", flush=True)
            return 1
        if read_state().get("ready"):
            say(f"Airflow is ready at {base_url()} ({time.monotonic() - t0:.0f} s)")
            say(f"logs: tail -f {rel(log_dir())}/*.log    stop: {stop_command()}")
            return 0
        time.sleep(1)
    say(f"warning: not ready after {2 * START_TIMEOUT:.0f} s, still starting (pid {proc.pid}); see {rel(log_dir())}/*.log")
    return 1


def _same_process(info: dict[str, Any]) -> psutil.Process | None:
    try:
        p = psutil.Process(int(info["pid"]))
        if abs(p.create_time() - float(info["create_time"])) < 1 and _alive(p):
            return p
    except (psutil.Error, KeyError, TypeError, ValueError):
        pass
    return None


def stop(timeout: float) -> int:
    pid = running_pid()
    state = read_state()
    run_id = state.get("run_id")
    if not pid and not run_id:
        say(f"not running (no deployment of {home()})")
        return 0
    t0 = time.monotonic()
    if pid:
        try:
            sup = psutil.Process(pid)
            if "supervisor.py" not in " ".join(sup.cmdline()):
                raise SystemExit(f"error: pid {pid} in {pid_file()} is not this deployment's supervisor; not touching it")
            say(f"stopping the deployment of {home()} (pid {pid}) ...")
            sup.send_signal(signal.SIGTERM)
            sup.wait(timeout=timeout)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            say(f"the supervisor did not stop within {timeout:.0f} s: killing the deployment")
    # Whatever is left of this run (the supervisor killed -9, a process it could not stop): the
    # recorded components' trees and every process carrying the run's marker. Nothing else.
    left: dict[int, psutil.Process] = {}
    if run_id:
        for info in [state, *state.get("components", {}).values()]:
            p = _same_process(info)
            if p:
                left[p.pid] = p
                try:
                    left.update({c.pid: c for c in p.children(recursive=True)})
                except psutil.Error:
                    pass
        left.update({p.pid: p for p in marked(run_id, sessions_of(state))})
    if left:
        say(f"killing {len(left)} leftover process(es) of this deployment")
        for p in left.values():
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(list(left.values()), timeout=10)
    for path in (state_file(),) + (() if running_pid() else (pid_file(),)):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    say(f"stopped ({time.monotonic() - t0:.0f} s)")
    return 0


def status() -> int:
    pid = running_pid()
    if not pid:
        state = read_state()
        left = marked(state["run_id"], sessions_of(state)) if state.get("run_id") else []
        if left:
            say(f"not running, but {len(left)} process(es) of its last run are left (its supervisor was "
                f"killed): {stop_command()} ends them")
            return 1
        say(f"not running (no deployment of {home()})")
        return 3
    state = read_state()
    say(f"running (pid {pid}) at {state.get('url')}, {'ready' if state.get('ready') else 'starting'}; "
        f"logs in {state.get('logs')}")
    try:
        tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        rss = sum(p.memory_info().rss for p in tree if _alive(p))
        say(f"{len(tree)} processes, {rss / 2**20:.0f} MiB RSS in all")
    except psutil.Error:
        pass
    for name, info in state.get("components", {}).items():
        say(f"  {name:14} pid {info['pid']}  log {info['log']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/supervisor.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run", help="start in the foreground (Ctrl-C stops everything)")
    r.add_argument("--no-banner", action="store_true", help=argparse.SUPPRESS)
    sub.add_parser("start", help="start in the background; returns once Airflow is ready")
    s = sub.add_parser("stop", help="stop every process of this deployment")
    s.add_argument("--timeout", type=float, default=STOP_GRACE + API_STOP_GRACE + 30,
                   help="seconds to wait for an orderly stop before killing (default %(default)s)")
    sub.add_parser("status", help="running or not, where, its processes")
    sub.add_parser("preflight", help="exit 1 if it cannot start; 3 if it already runs")
    args = ap.parse_args(argv)
    if args.verb == "run":
        return Supervisor().run(banner=not args.no_banner)
    if args.verb == "start":
        return start_background()
    if args.verb == "stop":
        return stop(args.timeout)
    if args.verb == "status":
        return status()
    return preflight()


if __name__ == "__main__":
    sys.exit(main())
