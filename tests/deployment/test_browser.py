"""The w365 pages in a real browser against a real Airflow (issue 7; SPEC J2, J3; docs/ui.md).

Starts Airflow as ``scripts/start.sh`` does, through ``scripts/supervisor.py run`` (api-server
first, then scheduler, dag-processor, triggerer; LocalExecutor, SQLite) on a free port of 127.0.0.1, in a throw-away AIRFLOW_HOME with this repository's dags/
and plugins/, known SimpleAuthManager passwords and a demo billing store; then headless Chromium
(Debian's ``chromium`` and ``chromium-driver``, driven by Selenium) signs in through Airflow's own
login page:

* as ``viewer``: opens W365 from Airflow's navigation, clicks a job's toggle, and is refused; the
  page says so and Airflow's ``is_paused`` (REST) is unchanged;
* as ``admin``: the same click works and ``GET /api/v2/dags/{id}`` shows the new pause state.

Screenshots go to ``artifacts/browser/`` (git-ignored), with the Airflow log when something
fails. Every process started here is stopped with its whole process group, in bounded time, and
the temporary directories are removed. Without Chromium, chromedriver or Selenium the tests skip
and say why (``.ci/run`` installs Chromium when it is missing).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from airflow_home import AIRFLOW, DAGS, LA, REPO

pytestmark = [pytest.mark.browser, pytest.mark.airflow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "artifacts" / "browser"
DAG = "scheduled_update"
READY_SECONDS = 150  # airflow standalone answering /api/v2/monitor/health
DAG_SECONDS = 120  # the dag-processor has put the DAG in Airflow's database
STOP_SECONDS = 30
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                "--window-size=1440,1000"]


def _why_no_browser() -> str | None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return f"{' and '.join(missing)} not installed (apt-get install -y chromium chromium-driver; .ci/run does it)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the Python package selenium is not installed (requirements-dev.txt)"
    return None


@pytest.fixture(scope="module")
def browser_ready() -> None:
    reason = _why_no_browser()
    if reason:
        pytest.skip(f"browser tests need headless Chromium: {reason}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demo_store(path: Path) -> str:
    """A billing store with the demo tenant, its January invoices and three metrics snapshots."""
    from w365 import store as w365_store
    from w365.orchestration import jobs
    from w365.store.session import dispose_engines, session_scope
    from w365.interfaces.demo import DemoSpec, load_demo

    url = f"sqlite:///{path}"
    w365_store.upgrade(url)
    saved = os.environ.get("W365_DATABASE_URL")
    os.environ["W365_DATABASE_URL"] = url  # the jobs open the store of this URL
    try:
        with session_scope() as s:
            load_demo(s, DemoSpec(timezone=LA, as_of=date(2026, 1, 1)))
        jobs.run("generate_full_cycle_invoice_monthly", "2026-01-01")
        for day in ("2025-12-01", "2025-12-15", "2026-01-01"):
            jobs.run("update_metrics_on_billing_contract", day)
    finally:
        if saved is None:
            os.environ.pop("W365_DATABASE_URL", None)
        else:
            os.environ["W365_DATABASE_URL"] = saved
        dispose_engines()
    return url


@contextmanager
def _process_group(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process in a session of its own; on the way out its whole group gets SIGTERM, then
    SIGKILL after STOP_SECONDS: nothing it started (scheduler, task runners) outlives the test."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            for sig, wait in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            try:  # stragglers of the group (a task runner that ignored SIGTERM)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _wait(what: str, seconds: float, check: Any, proc: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"airflow standalone exited ({proc.returncode}) before {what}:\n{log.read_text()[-4000:]}")
        try:
            result = check()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        time.sleep(2)
    raise AssertionError(f"{what}: not within {seconds}s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def standalone(browser_ready: None) -> Iterator[dict[str, Any]]:
    """``airflow standalone`` on 127.0.0.1 with logins admin and viewer (passwords known)."""
    tmp = Path(tempfile.mkdtemp(prefix="w365-browser-"))
    home = tmp / "airflow"
    home.mkdir()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    passwords = {"admin": secrets.token_urlsafe(12), "viewer": secrets.token_urlsafe(12)}
    (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps(passwords))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update({
        "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{env.get('PATH', '')}",  # standalone runs `airflow <component>`
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__PARALLELISM": "4",  # the embedded default's size (scripts/env.sh)
        # Log servers on free ports: another Airflow on this machine must not collide with them.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        "AIRFLOW__W365__TIMEZONE": LA,
        "W365_DATABASE_URL": _demo_store(tmp / "w365.db"),
    })
    log = home / "standalone.log"
    try:
        # What scripts/start.sh runs: the api-server first, the scheduler once it answers, and a
        # component that dies restarted (Airflow 3.3's scheduler can die on a race right after a
        # backfill is created from the UI; `airflow standalone` then runs on without one).
        supervisor = [sys.executable, str(REPO / "scripts" / "supervisor.py"), "run"]
        subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True)  # start.sh does it first
        with _process_group(supervisor, env, log) as proc, httpx.Client(base_url=url, timeout=10) as http:
            _wait("/api/v2/monitor/health answers", READY_SECONDS,
                  lambda: http.get("/api/v2/monitor/health").status_code == 200, proc, log)
            token = http.post("/auth/token", json={"username": "admin", "password": passwords["admin"]}).json()["access_token"]
            admin = {"Authorization": f"Bearer {token}"}
            _wait(f"DAG {DAG} parsed", DAG_SECONDS, lambda: http.get(f"/api/v2/dags/{DAG}", headers=admin).status_code == 200, proc, log)
            yield {"url": url, "passwords": passwords, "http": http, "admin": admin, "log": log, "proc": proc,
                   "store": env["W365_DATABASE_URL"]}
    finally:
        if log.exists():
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, ARTIFACTS / "airflow-standalone.log")
            for component in (home / "logs").glob("*.log"):  # the supervisor's components
                shutil.copy(component, ARTIFACTS / f"airflow-{component.name}")
        shutil.rmtree(tmp, ignore_errors=True)


def airflow_is_paused(af: dict[str, Any], dag_id: str = DAG) -> bool:
    r = af["http"].get(f"/api/v2/dags/{dag_id}", headers=af["admin"])
    assert r.status_code == 200, r.text
    return bool(r.json()["is_paused"])


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium with a fresh profile (removed afterwards), driven through chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="w365-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console: CSP violations (csp_violations)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        try:
            driver.quit()
        finally:
            shutil.rmtree(profile, ignore_errors=True)


def shot(driver: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def sign_in(driver: Any, af: dict[str, Any], who: str) -> None:
    """Airflow's own login page (reached by opening the W365 pages while signed out)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{af['url']}/w365/")
    wait = WebDriverWait(driver, 60)
    wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys(who)
    driver.find_element(By.NAME, "password").send_keys(af["passwords"][who])
    shot(driver, f"{who}-01-airflow-login")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table#jobs")))
    assert driver.current_url.rstrip("/").endswith("/w365"), driver.current_url


def csp_violations(driver: Any) -> list[str]:
    """What the browser's console reported as refused by a Content-Security-Policy since the
    last call (issue 12: the pages' CSP must allow exactly what they use)."""
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e.get("message", "")]


def toggle(driver: Any, dag_id: str = DAG) -> Any:
    from selenium.webdriver.common.by import By

    row = driver.find_element(By.CSS_SELECTOR, f'tr[data-dag-id="{dag_id}"]')
    button = row.find_element(By.CSS_SELECTOR, "button.toggle")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    return row


def flash(driver: Any, kind: str) -> str:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    el = WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: d.find_element(By.ID, "flash") if "flash " + kind in (d.find_element(By.ID, "flash").get_attribute("class") or "")
        and d.find_element(By.ID, "flash").is_displayed() else False)
    for _ in range(5):  # the page may reload under us once more
        try:
            return el.text
        except StaleElementReferenceException:
            el = driver.find_element(By.ID, "flash")
    return el.text


def test_viewer_sees_the_jobs_inside_airflow_but_cannot_toggle(standalone: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    af = standalone
    before = airflow_is_paused(af)
    with chromium() as driver:
        sign_in(driver, af, "viewer")
        shot(driver, "viewer-02-scheduled-jobs")
        # Inside Airflow's UI: its navigation has the W365 entry, which shows the pages in a frame.
        driver.get(f"{af['url']}/")
        WebDriverWait(driver, 60).until(ec.presence_of_element_located((By.CSS_SELECTOR, 'a[href$="plugin/w365"]'))).click()
        frame = WebDriverWait(driver, 60).until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe")))
        assert frame.get_attribute("src").rstrip("/").endswith("/w365"), frame.get_attribute("src")
        time.sleep(1)
        driver.switch_to.frame(frame)
        WebDriverWait(driver, 60).until(ec.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-dag-id="{DAG}"]')))
        assert "read only" in driver.find_element(By.ID, "read-only").text
        driver.switch_to.default_content()
        shot(driver, "viewer-03-in-airflow-nav")
        # Issue 13 (item 9): Airflow's UI now shows times in the tenant's zone (its "timezone"
        # setting, unset in this fresh browser, was taken from the w365 page).
        assert driver.execute_script("return window.localStorage.getItem('timezone')") == json.dumps(LA)
        driver.switch_to.frame(frame)

        toggle(driver)
        message = flash(driver, "error")
        driver.switch_to.default_content()
        shot(driver, "viewer-04-toggle-refused")
        violations = csp_violations(driver)
    assert "Airflow refused" in message and "only admins" in message, message
    assert not violations, violations  # framed by Airflow's UI (frame-ancestors 'self'), script and style load
    assert airflow_is_paused(af) == before, "a viewer's click must not change Airflow's pause state"


def test_admin_toggles_a_job_and_airflow_pause_state_changes(standalone: dict[str, Any]) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    af = standalone
    before = airflow_is_paused(af)
    with chromium() as driver:
        sign_in(driver, af, "admin")
        assert not driver.find_elements(By.ID, "read-only")
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-dag-id="{DAG}"]')
        assert row.get_attribute("data-active") == ("false" if before else "true")
        shot(driver, "admin-02-scheduled-jobs")
        toggle(driver)
        message = flash(driver, "ok")  # shown after the page reloaded with Airflow's new state
        # The page reloads after the toggle: an element found just before may go stale.
        WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: d.find_element(By.CSS_SELECTOR, f'tr[data-dag-id="{DAG}"]').get_attribute("data-active")
            == ("true" if before else "false"))
        shot(driver, "admin-03-toggled")
        assert airflow_is_paused(af) == (not before), "Airflow's pause state follows the admin's toggle"
        assert ("enabled" if before else "disabled") in message, message

        # The other pages, as an admin sees them (screenshots for the record).
        for name, path, selector in (("slcl-queue", "/w365/slcls", "table#slcls"),
                                     ("invoices", "/w365/invoices", "table#invoices"),
                                     ("metrics", "/w365/metrics", "#trend svg")):
            driver.get(af["url"] + path)
            WebDriverWait(driver, 30).until(lambda d, selector=selector: d.find_elements(By.CSS_SELECTOR, selector))
            shot(driver, f"admin-04-{name}")
            if name == "metrics":  # issue 13 (item 5): a trend is a line through the days, not a dot
                lines = driver.find_elements(By.CSS_SELECTOR, "#trend svg polyline.series")
                assert lines and all(len(l.get_attribute("points").split()) >= 2 for l in lines), "the MRR trend has no line"
        driver.find_element(By.CSS_SELECTOR, "table#contracts a").click()
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "table#snapshots"))
        shot(driver, "admin-05-contract-metrics")
        driver.get(af["url"] + "/w365/invoices")
        driver.find_element(By.CSS_SELECTOR, "table#invoices td a").click()
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "table#sources li[data-lcl]"))
        shot(driver, "admin-06-invoice-lines")
        assert not csp_violations(driver)  # issue 12: every page within its CSP


# ------------------------------------------------------------------ issue 13: Airflow's own forms, w365's numbers

RUN_SECONDS = 420  # a full-cycle run (or three backfilled ones) on a busy 2-core machine


def dag_runs(af: dict[str, Any], dag_id: str, **params: Any) -> list[dict[str, Any]]:
    r = af["http"].get(f"/api/v2/dags/{dag_id}/dagRuns", headers=af["admin"], params={"limit": 100, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["dag_runs"])


def wait_for_runs(af: dict[str, Any], dag_id: str, new: Any, count: int, what: str) -> list[dict[str, Any]]:
    """The ``count`` runs that ``new(run)`` selects, once all of them have finished; fails on a
    failed one (with the task states) or after RUN_SECONDS."""

    def done() -> Any:
        runs = [r for r in dag_runs(af, dag_id) if new(r)]
        failed = [r for r in runs if r["state"] == "failed"]
        if failed:
            tis = af["http"].get(f"/api/v2/dags/{dag_id}/dagRuns/{failed[0]['dag_run_id']}/taskInstances", headers=af["admin"]).json()
            raise AssertionError(f"{what}: run {failed[0]['dag_run_id']} failed: "
                                 f"{[(t['task_id'], t['state']) for t in tis['task_instances']]}")
        return runs if len(runs) == count and all(r["state"] == "success" for r in runs) else None

    return _wait(what, RUN_SECONDS, done, af["proc"], af["log"])


def open_trigger_dialog(driver: Any, af: dict[str, Any], dag_id: str) -> Any:
    """Airflow's DAG page, its "Trigger" button: the dialog with Single Run / Backfill."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{af['url']}/dags/{dag_id}")
    WebDriverWait(driver, 60).until(ec.element_to_be_clickable((By.CSS_SELECTOR, 'button[aria-label="Trigger Dag"]'))).click()
    return WebDriverWait(driver, 30).until(lambda d: next(
        (x for x in d.find_elements(By.CSS_SELECTOR, '[role="dialog"]') if x.is_displayed() and "Run Parameters" in x.text), None))


def closed(element: Any) -> bool:
    """The element was hidden or taken out of the page (a dialog that closed)."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        return not element.is_displayed()
    except StaleElementReferenceException:
        return True


def dialog_button(dialog: Any, label: str) -> Any:
    from selenium.webdriver.common.by import By

    return next(b for b in dialog.find_elements(By.TAG_NAME, "button") if b.text.strip() == label and b.is_displayed())


def pick_datetime(driver: Any, index: int, day: date, hhmm: str) -> None:
    """Airflow's date-time picker (the backfill's From / To): its date and time text inputs."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_elements(By.CSS_SELECTOR, '[data-testid="datetime-input"]')[index].click()
    popover = WebDriverWait(driver, 10).until(lambda d: next(
        (p for p in d.find_elements(By.CSS_SELECTOR, '[data-scope="popover"][data-part="content"]') if p.is_displayed()), None))
    day_input, time_input = popover.find_elements(By.TAG_NAME, "input")[:2]
    for field, text in ((day_input, day.strftime("%Y/%m/%d")), (time_input, hhmm)):
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(text)
        field.send_keys(Keys.TAB)
    time_input.send_keys(Keys.ESCAPE)
    WebDriverWait(driver, 10).until(lambda d: closed(popover))


def test_trigger_form_of_a_full_cycle_job_submits_as_it_opens_and_the_run_succeeds(standalone: dict[str, Any]) -> None:
    """issue 13 (item 2), SPEC J5: Airflow's Trigger form of a full-cycle invoicing DAG can be
    submitted as it opens (no param is required without a default: the contract filter is
    optional), and the run it starts, "bill every due contract", succeeds."""
    from selenium.webdriver.support.ui import WebDriverWait

    af, dag_id = standalone, "generate_full_cycle_invoice_quarterly"
    before = {r["dag_run_id"] for r in dag_runs(af, dag_id)}
    with chromium() as driver:
        sign_in(driver, af, "admin")
        dialog = open_trigger_dialog(driver, af, dag_id)
        shot(driver, "admin-07-trigger-form")
        assert "Contracts" in dialog.text and "Empty: every due contract." in dialog.text
        button = dialog_button(dialog, "Trigger")
        assert button.get_attribute("disabled") is None, "the Trigger button must be enabled as the form opens"
        button.click()
        WebDriverWait(driver, 30).until(lambda d: closed(dialog))
        assert not csp_violations(driver)
    runs = wait_for_runs(af, dag_id, lambda r: r["dag_run_id"] not in before and r["run_type"] == "manual", 1, "the triggered run")
    assert runs[0]["conf"] in ({}, {"advance_days": 0, "dry_run": False, "contract": None}), runs[0]["conf"]


def test_backfill_of_three_past_days_from_the_ui_bills_what_verify_billing_expects(standalone: dict[str, Any]) -> None:
    """issue 13 (items 2, 3), SPEC J6/M3: "Run Backfill" in Airflow's Trigger dialog is enabled
    once the dates are chosen (no param blocks it); a backfill of three past days bills the
    contract that fell due on the first of them, as of that day; `w365 verify billing` finds
    nothing to object to (exit 0); the invoice page shows the quantity as 120, not 1.2E+2."""
    import re
    import subprocess
    import sys
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    import factories as f
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from sqlalchemy import select

    from w365.store.models import BillingContract, Invoice
    from w365.store.session import dispose_engines, get_engine, session_scope

    af, dag_id = standalone, "generate_full_cycle_invoice_monthly"
    today = datetime.now(ZoneInfo(LA)).date()
    first = today - timedelta(days=5)  # the three days: first, first + 1, first + 2 (all past)
    number = f"BC-BF-{first:%Y%m%d}"
    # The job's scheduled run of today must be over: it would bill the new contract as of today.
    _wait(f"{dag_id}'s runs finished", RUN_SECONDS,
          lambda: all(r["state"] in ("success", "failed") for r in dag_runs(af, dag_id)), af["proc"], af["log"])
    engine = get_engine(af["store"])
    try:
        with session_scope(engine) as s:  # a contract that fell due on the backfill's first day
            cust = f.customer(s, "Backfill Ltd")
            c = f.contract(s, cust, start=first, number=number)
            f.subscription(s, c, quantity=120, price="20.00", name="Backfilled seats",
                           now=datetime.combine(first - timedelta(days=1), datetime.min.time(), timezone.utc))
    finally:
        dispose_engines()

    with chromium() as driver:
        sign_in(driver, af, "admin")
        dialog = open_trigger_dialog(driver, af, dag_id)
        driver.find_element(By.XPATH, "//span[normalize-space(text())='Backfill']").click()
        WebDriverWait(driver, 10).until(lambda d: dialog_button(dialog, "Run Backfill"))
        pick_datetime(driver, 0, first, "00:00")
        pick_datetime(driver, 1, first + timedelta(days=2), "23:59")
        WebDriverWait(driver, 30).until(lambda d: "3 runs will be triggered" in dialog.text)
        shot(driver, "admin-08-backfill-form")
        button = dialog_button(dialog, "Run Backfill")
        assert button.get_attribute("disabled") is None, "Run Backfill must be enabled with the params as they open"
        assert "Contracts" in dialog.text
        button.click()
        WebDriverWait(driver, 30).until(lambda d: closed(dialog))

        runs = wait_for_runs(af, dag_id, lambda r: r["run_type"] == "backfill", 3, "the three backfilled runs")
        days = sorted(datetime.fromisoformat(r["logical_date"].replace("Z", "+00:00")).astimezone(ZoneInfo(LA)).date() for r in runs)
        assert days == [first, first + timedelta(days=1), first + timedelta(days=2)], days

        try:
            with session_scope(engine) as s:
                billed = s.execute(select(Invoice.number, Invoice.issue_date).join(BillingContract, BillingContract.id == Invoice.contract_id)
                                   .where(BillingContract.number == number)).all()
        finally:
            dispose_engines()
        assert [d for _n, d in billed] == [first], billed  # billed once, as of the day it fell due
        audit = subprocess.run([sys.executable, "-m", "w365", "verify", "billing"], capture_output=True, text=True, timeout=300,
                               env={**os.environ, "W365_DATABASE_URL": af["store"]})
        assert audit.returncode == 0, audit.stdout[-3000:] + audit.stderr[-2000:]

        driver.get(f"{af['url']}/w365/invoices/{billed[0][0]}")
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "table#lines td.qty"))
        shot(driver, "admin-09-backfilled-invoice")
        quantities = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "table#lines td.qty")]
        assert quantities and set(quantities) == {"120"}, quantities
        assert "E+" not in driver.page_source and re.search(r"\d+/\d+ days", driver.page_source)
        assert not csp_violations(driver)

