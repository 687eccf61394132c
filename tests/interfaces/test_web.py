"""The w365 pages inside Airflow (issue 7; docs/ui.md): SPEC J2, J3, C9, C13, M3.

Everything runs through Airflow's real api-server app (``create_app``) with this repository's
plugins folder, SimpleAuthManager and the session's Airflow metadata DB, in-process: the plugin's
pages answer under ``/w365`` exactly as in ``airflow api-server``. The toggle's call to Airflow's
own REST API goes to the same in-process app (``httpx.ASGITransport``) instead of a socket.
``test_browser.py`` does the same against a real ``airflow standalone`` in Chromium.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from datetime import date, datetime, timezone
from typing import Any, Iterator

import httpx
import pytest
from sqlalchemy import select, update

from w365.core.money import as_currency

from airflow_home import AIRFLOW, LA, airflow_db, load_demo_tenant  # noqa: F401 - airflow_db is a fixture

pytestmark = pytest.mark.airflow

NOW = datetime(2026, 1, 20, 12, 0, tzinfo=timezone.utc)
DAG = "scheduled_update"  # a catalogue DAG that exists in dags/
USERS = "admin:admin,viewer:viewer,ops:op"


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def airflow(airflow_db: str) -> Iterator[dict[str, Any]]:
    """Airflow's api-server app with the w365 plugin, its DAGs in the metadata DB, and a token
    per login (admin, viewer, ops with role op)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", USERS)
        mp.setenv("AIRFLOW__W365__TIMEZONE", LA)
        out = subprocess.run([AIRFLOW, "dags", "reserialize"], env=os.environ, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        from airflow.api_fastapi.app import create_app, get_auth_manager, purge_cached_app
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from fastapi.testclient import TestClient

        root = create_app("core")
        tokens = {name: get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=name, role=role))
                  for name, role in (u.split(":") for u in USERS.split(","))}
        pages = _mounted(root, "/w365")
        from w365.interfaces.web import create_app as pages_app
        from w365.interfaces.web.airflow_api import AirflowAPI

        # The pages as the plugin mounts them, with a fixed clock and Airflow's API in-process.
        pages._app = pages_app(clock=lambda: NOW, airflow_api=AirflowAPI("http://airflow.test", httpx.ASGITransport(app=root)))
        with TestClient(root, base_url="http://airflow.test") as client:
            yield {"root": root, "client": client, "tokens": tokens}
        purge_cached_app()


def _mounted(root: Any, prefix: str) -> Any:
    return next(r.app for r in root.routes if getattr(r, "path", None) == prefix)


@pytest.fixture
def client(airflow: dict[str, Any]) -> Any:
    c = airflow["client"]
    c.cookies.clear()
    return c


def bearer(airflow: dict[str, Any], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {airflow['tokens'][who]}"}


def as_cookie(client: Any, airflow: dict[str, Any], who: str) -> None:
    """Signed in as Airflow's UI is: the ``_token`` cookie, no header."""
    client.cookies.set("_token", airflow["tokens"][who])


@pytest.fixture
def demo(store: Any, airflow: dict[str, Any]) -> dict[str, Any]:
    """The demo tenant with invoices (monthly full cycle on Jan 1), metrics snapshots on three
    dates and one Merge Failed SLCL."""
    from w365.orchestration import jobs
    from w365.store.models import ScheduledLicenseChangeLog, SLCLStatus

    load_demo_tenant(store)
    jobs.run("generate_full_cycle_invoice_monthly", "2026-01-01")
    for day in ("2025-12-01", "2025-12-15", "2026-01-01"):
        jobs.run("update_metrics_on_billing_contract", day)
    with store.session() as s:
        ids = list(s.scalars(select(ScheduledLicenseChangeLog.id).order_by(ScheduledLicenseChangeLog.id)))
        s.execute(update(ScheduledLicenseChangeLog).where(ScheduledLicenseChangeLog.id == ids[0])
                  .values(status=SLCLStatus.MERGE_FAILED, reason="contract <b>expired</b> on 2026-01-02"))
        s.commit()
    return {"failed": ids[0], "pending": ids[1]}


def slcl_status(store: Any, slcl_id: int) -> str:
    from w365.store.models import ScheduledLicenseChangeLog

    with store.session() as s:
        return s.get(ScheduledLicenseChangeLog, slcl_id).status.value


def is_paused(client: Any, airflow: dict[str, Any], dag_id: str = DAG) -> bool:
    r = client.get(f"/api/v2/dags/{dag_id}", headers=bearer(airflow, "admin"))
    assert r.status_code == 200, r.text
    return r.json()["is_paused"]


ACTION = {"X-W365-Action": "1"}


# ------------------------------------------------------------------------------------ plugin


def test_plugin_registers_the_pages_the_portal_and_a_nav_entry(client: Any, airflow: dict[str, Any]) -> None:
    r = client.get("/api/v2/plugins", headers=bearer(airflow, "admin"))
    plugin = next(p for p in r.json()["plugins"] if p["name"] == "w365_ui")
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/w365/portal", "/w365"]
    view = plugin["external_views"][0]
    assert (view["href"], view["destination"], view["url_route"]) == ("/w365/", "nav", "w365")


def test_plugin_module_stays_light_to_import() -> None:
    """Airflow imports plugins in every component: the pages' app and Airflow's api-server
    security module must not be imported with it."""
    code = ("import sys; sys.path.insert(0, 'plugins'); import w365_ui; "
            "heavy = [m for m in ('w365.interfaces.web.app', 'w365.interfaces.portal', 'airflow.api_fastapi.core_api.security', 'fastapi') if m in sys.modules]; "
            "print(heavy); assert not heavy")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]


# ------------------------------------------------------------------------------------ authentication


def _routes(airflow: dict[str, Any]) -> list[tuple[str, str]]:
    from fastapi.routing import APIRoute

    app = _mounted(airflow["root"], "/w365").app
    sample = {"dag_id": DAG, "slcl_id": "1", "number": "INV-000001", "contract": "BC-000001", "fmt": "csv"}
    out = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            path = re.sub(r"\{(\w+)\}", lambda m: sample[m.group(1)], route.path)
            out += [(method, "/w365" + path) for method in route.methods]
    return out


def test_every_route_requires_airflow_authentication(client: Any, airflow: dict[str, Any]) -> None:
    routes = _routes(airflow)
    assert len(routes) >= 11 and ("POST", f"/w365/jobs/{DAG}/pause") in routes
    for method, path in routes:
        r = client.request(method, path, json={"is_paused": True})
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        r = client.request(method, path, json={"is_paused": True}, headers={"Authorization": "Bearer not-a-jwt"})
        assert r.status_code in (401, 403), (method, path, r.status_code)


def test_a_browser_that_is_not_signed_in_is_sent_to_airflow_login(client: Any) -> None:
    r = client.get("/w365/slcls", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/auth/login?next=") and "w365%2Fslcls" in r.headers["location"]


# ------------------------------------------------------------------------------------ Scheduled Jobs (SPEC J2, J3)


def test_scheduled_jobs_page_lists_every_catalogue_job_with_airflow_state(client: Any, airflow: dict[str, Any]) -> None:
    from w365.orchestration import catalogue

    as_cookie(client, airflow, "viewer")
    r = client.get("/w365/")
    assert r.status_code == 200, r.text
    html = r.text
    assert "signed in as <strong>viewer</strong>" in html and 'id="read-only"' in html
    for job in catalogue.JOBS:
        assert f'data-dag-id="{job.dag_id}"' in html and job.name in html
    assert f"Schedule ({LA})" in html and "<code>5 0 * * *</code><br><code>30 23 * * *</code>" in html
    # Airflow's state: the history link, the toggle, the filter counts agree with the REST API.
    assert f'href="/dags/{DAG}/runs" target="_top"' in html
    assert f'data-action="/w365/jobs/{DAG}/pause"' in html
    dags = client.get("/api/v2/dags", params={"limit": 100}, headers=bearer(airflow, "admin")).json()["dags"]
    active = {d["dag_id"] for d in dags if not d["is_paused"] and d["dag_id"] in catalogue.BY_DAG_ID}
    assert f"Active ({len(active)})" in html
    shown = set(re.findall(r'data-dag-id="(\w+)"', client.get("/w365/?show=inactive").text))
    assert shown and not shown & active
    assert set(re.findall(r'data-dag-id="(\w+)"', client.get("/w365/?show=active").text)) == active
    assert client.get("/w365/?show=bogus").status_code == 422


def test_admin_page_is_not_read_only(client: Any, airflow: dict[str, Any]) -> None:
    as_cookie(client, airflow, "admin")
    html = client.get("/w365/").text
    assert "signed in as <strong>admin</strong>" in html and 'id="read-only"' not in html


def _toggle(client: Any, dag_id: str, paused: bool, **headers: str) -> httpx.Response:
    return client.post(f"/w365/jobs/{dag_id}/pause", json={"is_paused": paused}, headers={**ACTION, **headers})


def test_viewer_cannot_toggle_admin_can_and_airflow_state_follows(client: Any, airflow: dict[str, Any]) -> None:
    """SPEC J3 through Airflow's own PATCH /api/v2/dags/{id}, with the caller's token."""
    before = is_paused(client, airflow)
    as_cookie(client, airflow, "viewer")
    r = _toggle(client, DAG, not before)
    assert r.status_code == 403 and "only admins" in r.json()["detail"]
    assert is_paused(client, airflow) == before
    r = client.post(f"/w365/jobs/{DAG}/pause", json={"is_paused": not before}, headers=bearer(airflow, "viewer"))
    assert r.status_code == 403 and is_paused(client, airflow) == before

    as_cookie(client, airflow, "admin")
    r = _toggle(client, DAG, not before)
    assert r.status_code == 200, r.text
    assert r.json()["is_paused"] == (not before) and is_paused(client, airflow) == (not before)
    assert r.json()["message"].endswith("disabled" if not before else "enabled")
    row = re.search(rf'<tr data-dag-id="{DAG}" data-active="(\w+)"', client.get("/w365/").text)
    assert row and row.group(1) == ("false" if not before else "true")
    r = client.post(f"/w365/jobs/{DAG}/pause", json={"is_paused": before}, headers=bearer(airflow, "admin"))
    assert r.status_code == 200 and is_paused(client, airflow) == before
    # Airflow recorded who did it in its own audit log.
    events = client.get("/api/v2/eventLogs", params={"dag_id": DAG, "limit": 100}, headers=bearer(airflow, "admin")).json()
    assert "admin" in {e.get("owner") for e in events["event_logs"]}


def test_toggle_refuses_cross_site_requests_and_unknown_jobs(client: Any, airflow: dict[str, Any]) -> None:
    before = is_paused(client, airflow)
    as_cookie(client, airflow, "admin")
    # A cookie-authenticated POST without the page's header (what a cross-site form sends).
    r = client.post(f"/w365/jobs/{DAG}/pause", json={"is_paused": not before})
    assert r.status_code == 403 and "X-W365-Action" in r.text.replace("x-w365-action", "X-W365-Action")
    r = _toggle(client, DAG, not before, Origin="http://evil.example")
    assert r.status_code == 403 and "cross-origin" in r.text
    assert is_paused(client, airflow) == before
    r = _toggle(client, "not_a_w365_job", True)
    assert r.status_code == 404
    r = client.post(f"/w365/jobs/{DAG}/pause", json={"is_paused": "maybe"}, headers=ACTION)
    assert r.status_code == 422
    r = _toggle(client, DAG, before, Origin="http://airflow.test")  # same origin: allowed (no change)
    assert r.status_code == 200 and is_paused(client, airflow) == before


def test_airflow_api_unreachable_is_reported_not_hidden(client: Any, airflow: dict[str, Any]) -> None:
    from w365.interfaces.web.airflow_api import AirflowAPI

    pages = _mounted(airflow["root"], "/w365").app
    saved = pages.state.airflow_api
    pages.state.airflow_api = AirflowAPI("http://127.0.0.1:9")  # nothing listens there
    try:
        as_cookie(client, airflow, "admin")
        html = client.get("/w365/").text
        assert "Airflow&#39;s API answered 502" in html and f'data-dag-id="{DAG}"' in html
        r = _toggle(client, DAG, True)
        assert r.status_code == 502 and "did not answer" in r.json()["detail"]
    finally:
        pages.state.airflow_api = saved


def test_api_base_url_follows_airflow_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from w365.interfaces.web.airflow_api import api_base_url

    monkeypatch.setenv("AIRFLOW__API__HOST", "0.0.0.0")
    monkeypatch.setenv("AIRFLOW__API__PORT", "8793")
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example.com/airflow/")
    assert api_base_url() == "http://127.0.0.1:8793/airflow"
    monkeypatch.setenv("AIRFLOW__W365__AIRFLOW_API_URL", "https://api.internal:9443/")
    assert api_base_url() == "https://api.internal:9443"


# ------------------------------------------------------------------------------------ SLCL queue (SPEC C9, J3)


def test_slcl_queue_lists_open_changes_with_reasons(client: Any, airflow: dict[str, Any], demo: dict[str, Any]) -> None:
    as_cookie(client, airflow, "viewer")
    html = client.get("/w365/slcls").text
    assert f'data-slcl-id="{demo["failed"]}" data-status="merge_failed"' in html
    assert f'data-slcl-id="{demo["pending"]}" data-status="pending"' in html
    assert "contract &lt;b&gt;expired&lt;/b&gt; on 2026-01-02" in html  # the reason, escaped
    assert "Only admins may retry or cancel" in html and 'disabled title="admins only">Retry</button>' in html
    only_failed = client.get("/w365/slcls?status=merge_failed").text
    assert re.findall(r'data-status="(\w+)"', only_failed) == ["merge_failed"]
    assert client.get("/w365/slcls?status=archived").status_code == 422


def test_only_admins_retry_or_cancel_slcls(client: Any, airflow: dict[str, Any], store: Any, demo: dict[str, Any]) -> None:
    failed, pending = demo["failed"], demo["pending"]
    for who in ("viewer",):
        as_cookie(client, airflow, who)
        for verb, slcl in (("retry", failed), ("cancel", pending)):
            r = client.post(f"/w365/slcls/{slcl}/{verb}", headers=ACTION)
            assert r.status_code == 403, (who, verb, r.text)
    assert (slcl_status(store, failed), slcl_status(store, pending)) == ("merge_failed", "pending")

    as_cookie(client, airflow, "admin")
    assert f'data-action="/w365/slcls/{failed}/retry">Retry</button>' in client.get("/w365/slcls").text
    assert client.post(f"/w365/slcls/{pending}/cancel").status_code == 403  # no action header: CSRF guard
    r = client.post(f"/w365/slcls/{pending}/cancel", headers=ACTION)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert slcl_status(store, pending) == "cancelled"
    r = client.post(f"/w365/slcls/{pending}/cancel", headers=ACTION)
    assert r.status_code == 409 and "cannot be cancelled" in r.json()["detail"]
    r = client.post(f"/w365/slcls/{failed}/retry", headers=bearer(airflow, "ops"))  # role op edits DAGs too
    assert r.status_code == 200, r.text
    # Merged now if due, else back in the queue for its time; Merge Failed again only with a reason.
    after = {"archived": {"archived"}, "pending": {"pending", "awaiting_merge"}, "merge_failed": {"merge_failed"}}
    assert slcl_status(store, failed) in after[r.json()["status"]], r.json()
    assert client.post("/w365/slcls/999999/retry", headers=ACTION).status_code == 404


# ------------------------------------------------------------------------------------ Invoices (SPEC M3)


def _first_invoice(store: Any) -> Any:
    from w365.store.models import Invoice, InvoiceLine, InvoiceLineLCL

    with store.session() as s:
        return s.scalar(select(Invoice).join(InvoiceLine).join(InvoiceLineLCL).order_by(Invoice.number))


def test_invoices_list_drill_down_and_sources(client: Any, airflow: dict[str, Any], store: Any, demo: dict[str, Any]) -> None:
    inv = _first_invoice(store)
    as_cookie(client, airflow, "viewer")
    html = client.get("/w365/invoices").text
    assert f'data-invoice="{inv.number}"' in html and "unpaid" in html
    assert f"{as_currency(inv.total, inv.currency):,} {inv.currency}" in html
    only = client.get("/w365/invoices", params={"contract": "no-such-contract"}).text
    assert "No invoices for no-such-contract yet." in only
    page = client.get(f"/w365/invoices/{inv.number}")
    assert page.status_code == 200
    assert re.search(r'<li data-lcl="\d+">LCL #\d+: ', page.text), "each line names the change logs it bills"
    assert f'href="/w365/invoices/{inv.number}/export.csv"' in page.text
    assert client.get("/w365/invoices/INV-NOPE").status_code == 404


def test_invoice_exports_csv_and_html(client: Any, airflow: dict[str, Any], store: Any, demo: dict[str, Any]) -> None:
    from w365.billing.invoicing.export import CSV_COLUMNS

    inv = _first_invoice(store)
    as_cookie(client, airflow, "viewer")
    r = client.get(f"/w365/invoices/{inv.number}/export.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert f'filename="{inv.number}.csv"' in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == CSV_COLUMNS and rows[-1][2] == "total" and rows[-1][13] == format(as_currency(inv.total, inv.currency), "f")
    r = client.get(f"/w365/invoices/{inv.number}/export.html")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html") and f"Invoice {inv.number}" in r.text
    # PDF exists since issue 16 (SPEC I15, tested in test_invoice_document_web.py); other formats do not.
    assert client.get(f"/w365/invoices/{inv.number}/export.xml").status_code == 404


def test_i15_invoice_page_links_its_pdf(client: Any, airflow: dict[str, Any], store: Any) -> None:
    """issue 16, SPEC I15: the invoice page links the PDF of its document; the link answers
    application/pdf, as an attachment named after the invoice, with the document's text."""
    import pypdf

    number = _quantities_invoice(store)
    as_cookie(client, airflow, "viewer")
    page = client.get(f"/w365/invoices/{number}").text
    assert f'<a href="/w365/invoices/{number}/export.pdf" id="export-pdf">PDF</a>' in page
    r = client.get(f"/w365/invoices/{number}/export.pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == f'attachment; filename="{number}.pdf"' and r.content.startswith(b"%PDF-")
    text = pypdf.PdfReader(io.BytesIO(r.content)).pages[0].extract_text()
    assert f"Invoice {number}" in text and "Total due $1,341.56" in text and "Quantities Inc" in text


def test_i10_invoice_page_and_html_export_share_the_document_template(client: Any, airflow: dict[str, Any], store: Any,
                                                                      probe_document_template: Any) -> None:
    """issue 16, SPEC I10: a field added to the document's one template shows on the invoice page
    and in the HTML export; the page keeps its CSP (the document's style is a file there)."""
    from w365.billing.invoicing import document

    number = _quantities_invoice(store)
    probe_document_template('<p id="probe">PO PROBE-{{ doc.number }}</p>')
    as_cookie(client, airflow, "viewer")
    page = client.get(f"/w365/invoices/{number}").text
    export = client.get(f"/w365/invoices/{number}/export.html").text
    assert f'<p id="probe">PO PROBE-{number}</p>' in page and f'<p id="probe">PO PROBE-{number}</p>' in export
    assert '<link rel="stylesheet" href="/w365/invoice-document.css">' in page and "<style" not in page
    css = client.get("/w365/invoice-document.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css") and css.text == document.stylesheet()


# ------------------------------------------------------------------------------------ Metrics


def test_metrics_page_shows_mrr_acv_and_an_svg_trend(client: Any, airflow: dict[str, Any], store: Any, demo: dict[str, Any]) -> None:
    from w365.store.models import BillingContract

    with store.session() as s:
        top = s.scalar(select(BillingContract).where(BillingContract.mrr.is_not(None)).order_by(BillingContract.mrr.desc()))
    as_cookie(client, airflow, "viewer")
    html = client.get("/w365/metrics").text
    mrr, acv = as_currency(top.mrr, top.currency), as_currency(top.acv, top.currency)
    assert f'data-contract="{top.number}"' in html and f"{mrr:,} {top.currency}" in html and f"{acv:,}" in html
    svgs = re.findall(r"<svg [^>]*class=\"chart\".*?</svg>", html, re.S)
    assert len(svgs) == 2
    points = re.findall(r'<polyline [^>]*points="([^"]+)"', svgs[0])
    assert points and len(points[0].split()) == 3, "one point per snapshot date"
    contract = client.get(f"/w365/metrics/{top.number}").text
    assert contract.count("<polyline") == 2 and "2025-12-15" in contract
    assert client.get("/w365/metrics/BC-NOPE").status_code == 404


def test_svg_chart_escapes_text_and_handles_no_data() -> None:
    from decimal import Decimal

    from w365.interfaces.web.svg import line_chart

    svg = str(line_chart({"<script>x</script>": [(date(2026, 1, 1), Decimal("10")), (date(2026, 2, 1), Decimal("25.5"))]},
                         title='MRR "&" <b>'))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;b&gt;" in svg
    assert re.search(r'<polyline [^>]*points="[\d.]+,[\d.]+ [\d.]+,[\d.]+"', svg)
    assert "no data yet" in str(line_chart({}, title="MRR"))


# ------------------------------------------------------------------------------------ the portal (SPEC C13)


def test_portal_is_mounted_with_its_own_token_auth(client: Any, airflow: dict[str, Any], store: Any, demo: dict[str, Any]) -> None:
    from w365.store.models import Customer
    from w365.interfaces.portal import issue_token

    r = client.get("/w365/portal/subscriptions", headers=bearer(airflow, "admin"))
    assert r.status_code == 401 and r.json()["detail"] == "unknown token"  # an Airflow login is no customer
    with store.session() as s:
        cust = s.scalar(select(Customer).order_by(Customer.id))
        token = issue_token(s, cust.id)
        s.commit()
    r = client.get("/w365/portal/subscriptions", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json() and all(sub["id"] for sub in r.json())


# ------------------------------------------------------------------------------------ issue 12: hardening


FORMULAS = {  # each leading character a spreadsheet takes for a formula (OWASP CSV injection)
    "=": '=HYPERLINK("http://x","pay")',
    "+": "+cmd|' /C calc'!A0",
    "-": "-2+3+cmd|' /C calc'!A0",
    "@": "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t": "\t=1+1",
    "\r": "\r=1+1",
}


def test_m3_csv_exports_neutralise_formulas_and_keep_numbers(client: Any, airflow: dict[str, Any], store: Any,
                                                            tmp_path: Any) -> None:
    """issue 12, SPEC M3: customer, subscription and product names that begin like a formula
    (=, +, -, @, tab, CR) are written with a leading ' in the CSV of `w365 invoice export` and of
    the page's /export.csv (the same bytes); amounts, quantities and prices stay plain numbers,
    the negative ones of a credit included."""
    import factories as f
    from w365.interfaces.cli import main
    from w365.store.models import QRB
    from w365.billing.invoicing.dispatcher import generate_change_log_invoices, generate_full_cycle_invoices
    from w365.billing.invoicing.export import CSV_COLUMNS
    from w365.billing.changes import ChangeRequest, change_subscription

    subs = {}
    with store.session() as s:
        for n, (lead, payload) in enumerate(FORMULAS.items()):
            cust = f.customer(s, f"{payload} customer")
            c = f.contract(s, cust, start=date(2025, 12, 1), number=f"BC-F{n}")
            prod = f.product(s, sku=f"SKU-F{n}")
            prod.name = f"{payload} product"
            sub = f.subscription(s, c, prod=prod, name=f"Subscription F{n}", qrb=QRB.ALLOWED)
            # Written as stored data (an older store, a provider's sync): the change service
            # itself refuses control characters in new names (issue 12, input validation).
            sub.name = f"{payload} subscription"
            subs[lead] = sub.id
        s.commit()
        generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
        change_subscription(s, subs["="], ChangeRequest(quantity=8), now=datetime(2025, 12, 10, 12, tzinfo=timezone.utc))
        s.commit()
        credit = generate_change_log_invoices("monthly", date(2025, 12, 15), engine=store.engine).invoices
    assert [i.total for i in credit] == ["-13.55"]
    from w365.billing.invoicing.export import list_invoices

    with store.session() as s:
        numbers = [i["number"] for i in list_invoices(s)]
    assert len(numbers) == 7

    as_cookie(client, airflow, "viewer")
    col = {name: i for i, name in enumerate(CSV_COLUMNS)}
    negative = 0
    for number in numbers:
        path = tmp_path / f"{number}.csv"
        assert main(["invoice", "export", number, "--format", "csv", "-o", str(path)]) == 0
        with open(path, encoding="utf-8", newline="") as fh:  # a CR inside a quoted cell stays a CR
            cli_text = fh.read()
        page = client.get(f"/w365/invoices/{number}/export.csv")
        assert page.status_code == 200 and page.text == cli_text
        rows = list(csv.reader(io.StringIO(cli_text, newline="")))
        assert rows[0] == CSV_COLUMNS
        for row in rows[1:]:
            customer = row[col["customer"]]
            assert customer.startswith("'") and customer[1:] in {f"{p} customer" for p in FORMULAS.values()}, customer
            if row[col["kind"]] != "total":
                for name, suffix in (("subscription", " subscription"), ("product", " product")):
                    cell = row[col[name]]
                    assert cell.startswith("'") and cell[1:] in {p + suffix for p in FORMULAS.values()}, cell
                description = row[col["description"]]  # "<subscription name>, Dec 1-31" or "Credit: ..."
                assert not description.startswith(tuple(FORMULAS)), description
                for name in ("quantity", "unit_price", "proration_factor"):
                    assert re.fullmatch(r"-?\d+(\.\d+)?", row[col[name]]), (name, row[col[name]])  # plain numbers
            amount = row[col["amount"]]
            assert re.fullmatch(r"-?\d+\.\d{2}", amount), amount  # a plain number, negative or not
            negative += amount.startswith("-")
    assert negative >= 2  # the credit's reversal line and its total stay numbers
    customers_seen = set()
    for number in numbers:
        rows = list(csv.reader(io.StringIO(client.get(f"/w365/invoices/{number}/export.csv").text, newline="")))
        customers_seen |= {row[col["customer"]][1] for row in rows[1:]}
    assert customers_seen == set(FORMULAS)  # each of the six leading characters was exercised


def test_csv_safe_cell_rule() -> None:
    """issue 12, SPEC M3: the one rule every human-facing CSV uses."""
    from decimal import Decimal

    from w365.core.csvsafe import safe_cell

    for text in FORMULAS.values():
        assert safe_cell(text) == "'" + text
    for number in ("-100.00", "+1", "-0.5", "12", ".5", "-13.55"):
        assert safe_cell(number) == number
    assert safe_cell(Decimal("-13.55")) == Decimal("-13.55") and safe_cell(-3) == -3 and safe_cell(None) == ""
    assert safe_cell("-1+1") == "'-1+1" and safe_cell("-") == "'-" and safe_cell("Fabrikam") == "Fabrikam"
    assert safe_cell("2026-01-01") == "2026-01-01" and safe_cell(" =1") == " =1"


def test_origin_check_trusts_forwarded_host_only_from_configured_proxies(client: Any, airflow: dict[str, Any],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """issue 12 (docs/ui.md, CSRF): `Origin: evil` with `X-Forwarded-Host: evil` is refused (403)
    unless the request comes from a proxy in [w365] trusted_proxies; from one, its forwarded host
    is what Origin must match (the value it added, not one the client put in front)."""
    from fastapi.testclient import TestClient

    monkeypatch.delenv("AIRFLOW__W365__TRUSTED_PROXIES", raising=False)
    before = is_paused(client, airflow)
    as_cookie(client, airflow, "admin")
    evil = {"Origin": "http://evil.example", "X-Forwarded-Host": "evil.example"}
    r = _toggle(client, DAG, not before, **evil)
    assert r.status_code == 403 and "cross-origin" in r.text
    r = _toggle(client, DAG, not before, Origin="http://evil.example", Forwarded="host=evil.example")
    assert r.status_code == 403
    assert is_paused(client, airflow) == before

    proxy = TestClient(airflow["root"], base_url="http://airflow.test", client=("10.9.8.7", 50000))
    proxy.cookies.set("_token", airflow["tokens"]["admin"])
    public = {"Origin": "https://w365.example.com", "X-Forwarded-Host": "w365.example.com"}
    assert _toggle(proxy, DAG, before, **public).status_code == 403  # no proxy configured yet
    monkeypatch.setenv("AIRFLOW__W365__TRUSTED_PROXIES", "127.0.0.1, 10.9.8.0/24")
    r = _toggle(proxy, DAG, before, **public)
    assert r.status_code == 200, r.text
    assert _toggle(proxy, DAG, before, Origin="https://w365.example.com:443", Forwarded='for=203.0.113.1;host="w365.example.com"').status_code == 200
    r = _toggle(proxy, DAG, not before, Origin="http://evil.example", **{"X-Forwarded-Host": "w365.example.com"})
    assert r.status_code == 403  # another site's page, through the proxy
    r = _toggle(proxy, DAG, not before, Origin="http://evil.example", **{"X-Forwarded-Host": "evil.example, w365.example.com"})
    assert r.status_code == 403  # the nearest proxy's value counts, not one the client sent ahead of it
    r = _toggle(client, DAG, not before, **evil)  # the same headers, not from the proxy: refused
    assert r.status_code == 403
    assert is_paused(client, airflow) == before


def test_pages_portal_and_exports_send_security_headers(client: Any, airflow: dict[str, Any], store: Any,
                                                        demo: dict[str, Any]) -> None:
    """issue 12: every w365 page, its script and style, the exports and the portal carry a CSP,
    X-Frame-Options, nosniff and a Referrer-Policy. The pages' CSP allows exactly what they use:
    script and style from their own files (no inline script, style or handlers), fetch() to the
    same origin, framing by Airflow's UI on the same origin only."""
    from w365.interfaces.web.security import PAGES_CSP, PORTAL_CSP

    inv = _first_invoice(store)
    as_cookie(client, airflow, "viewer")
    paths = ["/w365/", "/w365/slcls", "/w365/invoices", f"/w365/invoices/{inv.number}", "/w365/metrics",
             "/w365/w365.js", "/w365/w365.css", f"/w365/invoices/{inv.number}/export.csv", "/w365/icon.svg"]
    for path in paths:
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code)
        assert r.headers["content-security-policy"] == PAGES_CSP, path
        assert (r.headers["x-frame-options"], r.headers["x-content-type-options"], r.headers["referrer-policy"]) == \
            ("SAMEORIGIN", "nosniff", "same-origin"), path
        if r.headers["content-type"].startswith("text/html"):
            html = r.text
            assert '<script src="/w365/w365.js" defer></script>' in html and '<link rel="stylesheet" href="/w365/w365.css">' in html
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), f"inline script on {path}"
            assert "<style" not in html and not re.search(r"\sstyle=", html), f"inline style on {path}"
            assert not re.search(r"\son[a-z]+=", html, re.I) and "javascript:" not in html, f"inline handler on {path}"
    assert "frame-ancestors 'self'" in PAGES_CSP and "'unsafe-inline'" not in PAGES_CSP
    assert client.get("/w365/w365.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/w365/w365.css").headers["content-type"].startswith("text/css")
    # The HTML export is a standalone document: only its own <style> block, by hash.
    r = client.get(f"/w365/invoices/{inv.number}/export.html")
    csp = r.headers["content-security-policy"]
    assert re.fullmatch(r"default-src 'none'; style-src 'sha256-[A-Za-z0-9+/=]+'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'", csp)
    assert r.headers["x-frame-options"] == "SAMEORIGIN" and r.headers["x-content-type-options"] == "nosniff"
    # Refusals carry them too, and so does the portal (mounted by the same plugin).
    client.cookies.clear()
    assert client.get("/w365/").headers["content-security-policy"] == PAGES_CSP
    r = client.get("/w365/portal/subscriptions")
    assert r.status_code == 401 and r.headers["content-security-policy"] == PORTAL_CSP and r.headers["x-frame-options"] == "DENY"


# ------------------------------------------------------------------------------------ issue 13: numbers, words, errors


def _quantities_invoice(store: Any) -> str:
    """An invoice whose lines bill 120 licences for 17 of 31 days and 2.5 units of usage, written
    as the dispatcher writes lines (quantities NUMERIC(18, 6): 120.000000 on PostgreSQL)."""
    from decimal import Decimal as D

    import factories as f
    from w365.store.models import Invoice, InvoiceKind, InvoiceLine, InvoiceLineKind

    with store.session() as s:
        cust = f.customer(s, "Quantities Inc")
        c = f.contract(s, cust, start=date(2026, 1, 1), number="BC-Q120")
        inv = Invoice(number="INV-Q120", sequence=990001, contract_id=c.id, customer_id=cust.id, kind=InvoiceKind.FULL_CYCLE,
                      currency="USD", issue_date=date(2026, 1, 15), due_date=date(2026, 2, 14), period_from=date(2026, 1, 15),
                      period_to=date(2026, 1, 31), total=D("1341.56"))
        s.add(inv)
        s.flush()
        s.add_all([
            InvoiceLine(invoice_id=inv.id, line_no=1, kind=InvoiceLineKind.RECURRING, description="Seats, Jan 15-31",
                        billing_period_from=date(2026, 1, 1), billing_period_to=date(2026, 1, 31), period_from=date(2026, 1, 15),
                        period_to=date(2026, 1, 31), quantity=D("120.000000"), unit_price=D("20.000000"), days=17, period_days=31,
                        proration_factor=D("0.5483870968"), amount=D("1316.13")),
            InvoiceLine(invoice_id=inv.id, line_no=2, kind=InvoiceLineKind.RECURRING, description="Storage, Jan",
                        billing_period_from=date(2026, 1, 1), billing_period_to=date(2026, 1, 31), period_from=date(2026, 1, 1),
                        period_to=date(2026, 1, 31), quantity=D("2.500000"), unit_price=D("10.170000"), days=31, period_days=31,
                        proration_factor=D("1.0000000000"), amount=D("25.43")),
        ])
        s.commit()
    return "INV-Q120"


def test_m3_quantities_and_proration_read_as_people_write_them(client: Any, airflow: dict[str, Any], store: Any) -> None:
    """issue 13, SPEC M3: a quantity of 120 is "120" and 2.5 is "2.5" on the invoice page, in the
    HTML export, the CSV and `w365 invoice show` (never Decimal.normalize()'s 1.2E+2); the
    proration is days over period days ("17/31 days"), not a ten-decimal factor; prices keep two
    places at least, amounts their currency's minor units."""
    from w365.interfaces.cli import main
    from w365.billing.invoicing.export import CSV_COLUMNS

    number = _quantities_invoice(store)
    as_cookie(client, airflow, "viewer")
    page = client.get(f"/w365/invoices/{number}").text
    qty = re.findall(r'<td class="n qty">([^<]*)</td>', page)
    assert qty == ["120", "2.5"], qty
    # The page's sources table keeps days over period days; the document (issue 16) says "17 of 31 days".
    assert re.findall(r'<td class="n prorated">([^<]*)</td>', page) == ["17/31 days", "31/31 days"]
    assert ">$20.00<" in page and ">$10.17<" in page and "$1,316.13" in page and "1,341.56 USD" in page
    # The HTML export is the invoice document since issue 16 (SPEC I12, I13): its line cells are
    # quantity, unit price and amount in the tenant's locale (en_US), the days in the period cell.
    html = client.get(f"/w365/invoices/{number}/export.html").text
    cells = re.findall(r'<td class="n (?:qty|price|amount)">([^<]*)</td>', html)
    assert cells == ["120", "$20.00", "$1,316.13", "2.5", "$10.17", "$25.43"], cells
    assert re.findall(r'<div class="muted days">([^<]*)</div>', html) == ["17 of 31 days"]
    rows = list(csv.reader(io.StringIO(client.get(f"/w365/invoices/{number}/export.csv").text)))
    col = {name: i for i, name in enumerate(CSV_COLUMNS)}
    assert [r[col["quantity"]] for r in rows[1:-1]] == ["120", "2.5"]
    assert [r[col["proration_factor"]] for r in rows[1:-1]] == ["0.5483870968", "1"]
    for text in (page, html, client.get(f"/w365/invoices/{number}/export.csv").text):
        assert "E+" not in text and "E-" not in text and "0.5483870968" not in text.split("\r\n", 1)[0]
    assert "0.5483870968" not in page and "0.5483870968" not in html
    import contextlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["invoice", "show", number]) == 0
    shown = out.getvalue()
    assert "E+" not in shown and re.search(r"\s120\s+20\.00\s", shown) and re.search(r"\s2\.5\s+10\.17\s", shown), shown


def test_j2_metrics_highest_mrr_first_numerically(client: Any, airflow: dict[str, Any], store: Any) -> None:
    """issue 13: "highest MRR first" compares numbers on both backends: 10,536.50 above 908.00
    above 95.10 (SQLite keeps money as text, where "908.00" > "10536.50")."""
    from decimal import Decimal

    import factories as f

    with store.session() as s:
        cust = f.customer(s, "Sorting Ltd")
        for number, mrr in (("BC-S-908", "908.00"), ("BC-S-10536", "10536.50"), ("BC-S-95", "95.10")):
            c = f.contract(s, cust, number=number)
            c.mrr, c.acv = Decimal(mrr), Decimal(mrr) * 12
        s.commit()
    as_cookie(client, airflow, "viewer")
    html = client.get("/w365/metrics").text
    order = [n for n in re.findall(r'data-contract="([^"]+)"', html) if n.startswith("BC-S-")]
    assert order == ["BC-S-10536", "BC-S-908", "BC-S-95"], order
    assert "10,536.50 USD" in html and "126,438.00" in html


def test_slcl_filter_takes_every_spelling_it_prints(client: Any, airflow: dict[str, Any], demo: dict[str, Any]) -> None:
    """issue 13, SPEC C9: one vocabulary. The SLCL queue shows "Merge Failed" and links
    ?status=merge_failed; the CLI says merge-failed: the page takes all of them, in any case."""
    as_cookie(client, airflow, "viewer")
    html = client.get("/w365/slcls").text
    assert "Merge Failed (" in html and "Awaiting Merge (" in html  # what the page prints
    for spelling in ("merge_failed", "merge-failed", "Merge Failed", "MERGE-FAILED", " merge failed "):
        r = client.get("/w365/slcls", params={"status": spelling})
        assert r.status_code == 200, (spelling, r.status_code)
        assert re.findall(r'data-status="(\w+)"', r.text) == ["merge_failed"], spelling
        assert 'class="current" data-filter="merge_failed"' in r.text
    for spelling in ("pending", "Pending", "awaiting-merge", "Awaiting Merge", "AWAITING_MERGE"):
        assert client.get("/w365/slcls", params={"status": spelling}).status_code == 200, spelling
    for spelling in ("Active", "INACTIVE", "all"):  # the jobs page's filter too
        assert client.get("/w365/", params={"show": spelling}).status_code == 200, spelling
    r = client.get("/w365/slcls", params={"status": "archived"})
    assert r.status_code == 422 and "Merge Failed" in r.text and "text/html" in r.headers["content-type"]


def test_pages_answer_errors_with_a_page_and_actions_with_json(client: Any, airflow: dict[str, Any], store: Any,
                                                               demo: dict[str, Any]) -> None:
    """issue 13, SPEC J2/M3: a browser that opens a wrong address gets the site's page with the
    message, a link back and the right status (404 no such invoice, 422/400 a malformed value),
    never raw JSON; the actions (POST) and the portal keep answering JSON."""
    from w365.interfaces.web.security import PAGES_CSP

    as_cookie(client, airflow, "viewer")
    cases = [
        ("/w365/invoices/INV-999999", 404, "no invoice &#39;INV-999999&#39;", "/w365/invoices"),
        ("/w365/invoices/INV-999999/export.csv", 404, "no invoice", "/w365/invoices"),
        ("/w365/metrics/BC-NOPE", 404, "no billing contract", "/w365/metrics"),
        ("/w365/invoices?limit=abc", 422, "limit must be a whole number, not &#39;abc&#39;", "/w365/invoices"),
        ("/w365/invoices?limit=0", 422, "limit must be at least 1", "/w365/invoices"),
        ("/w365/metrics?days=lots", 422, "days must be a whole number", "/w365/metrics"),
        ("/w365/metrics/BC-000001?days=abc", 422, "days must be a whole number", "/w365/metrics"),
        ("/w365/no-such-page", 404, "There is no w365 page at /w365/no-such-page", "/w365/"),
        ("/w365/slcls/abc/retry", 405, "action", "/w365/slcls"),
    ]
    for path, code, message, back in cases:
        r = client.get(path, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        assert r.status_code == code, (path, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("text/html"), (path, r.headers["content-type"])
        assert message in r.text, (path, r.text[:2000])
        assert f'<a href="{back}" id="back">' in r.text and '<nav class="tabs">' in r.text, path
        assert r.headers["content-security-policy"] == PAGES_CSP and not r.text.lstrip().startswith("{")
    # An integer path parameter that is not one: 400, a page too (the SLCL actions are POSTs: JSON).
    r = client.post("/w365/slcls/abc/retry", headers=bearer(airflow, "admin"))
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/json")
    assert r.json()["detail"][0]["type"] == "int_parsing"
    r = client.post("/w365/slcls/999999/retry", headers=bearer(airflow, "admin"))
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    # A script that asks for JSON keeps JSON; so does the toggle; and the portal.
    r = client.get("/w365/invoices/INV-999999", headers={"Accept": "application/json"})
    assert r.status_code == 404 and r.json() == {"detail": "no invoice 'INV-999999'"}
    as_cookie(client, airflow, "admin")
    r = client.post("/w365/jobs/not_a_job/pause", json={"is_paused": True}, headers=ACTION)
    assert r.status_code == 404 and r.json()["detail"] == "not_a_job is not a w365 job"
    client.cookies.clear()
    r = client.get("/w365/portal/subscriptions/abc", headers={"Authorization": "Bearer nope", "Accept": "text/html"})
    assert r.headers["content-type"].startswith("application/json"), r.headers["content-type"]


def test_request_errors_are_explained_for_people() -> None:
    """issue 13: how a malformed value is explained (no GET page route has an integer path
    parameter today; one that had would answer 400 with a page, a query value 422)."""
    import w365.interfaces.web.app as web

    assert web._explain({"type": "int_parsing", "loc": ("path", "slcl_id"), "msg": "x", "input": "abc"}) == \
        "slcl_id must be a whole number, not 'abc'"
    assert web._explain({"type": "less_than_equal", "loc": ("query", "limit"), "msg": "x", "input": "5000", "ctx": {"le": 1000}}) == \
        "limit must be at most 1000, not '5000'"
    assert web._status_title(400) == "Bad address" and web._status_title(404) == "Not found"


def test_future_triggers_of_w365_jobs_are_refused_by_the_api_server(client: Any, airflow: dict[str, Any]) -> None:
    """issue 13 (item 9): Airflow never starts a run dated in the future, which would block the
    job (max_active_runs=1). The plugin's middleware answers Airflow's trigger endpoint 400 with
    the reason, naming the logical date and now; a past date or none passes to Airflow untouched
    (its own validation then answers, here 422 for an unknown field: the body reached it whole)."""
    from datetime import timedelta

    future = (datetime.now(timezone.utc) + timedelta(days=3)).replace(microsecond=0)
    r = client.post(f"/api/v2/dags/{DAG}/dagRuns", headers=bearer(airflow, "admin"),
                    json={"logical_date": future.isoformat(), "conf": {}})
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert f"the logical date {future.isoformat()}" in detail and "is in the future (now is 20" in detail
    assert "Scheduled Update" in detail and "max_active_runs=1" in detail
    r = client.post("/api/v2/dags/generate_full_cycle_invoice_monthly/dagRuns", headers=bearer(airflow, "admin"),
                    json={"logical_date": future.isoformat().replace("+00:00", "Z")})
    assert r.status_code == 400 and "advance_days" in r.json()["detail"]
    for body in ({"logical_date": "2026-01-01T08:15:00Z", "bogus": 1}, {"logical_date": None, "bogus": 1}):
        r = client.post(f"/api/v2/dags/{DAG}/dagRuns", headers=bearer(airflow, "admin"), json=body)
        assert r.status_code == 422 and "bogus" in r.text, r.text
    r = client.post("/api/v2/dags/no_such_dag/dagRuns", headers=bearer(airflow, "admin"), json={"logical_date": future.isoformat()})
    assert r.status_code == 404  # not a w365 job: Airflow's own answer


def test_future_run_guard_replays_the_body_it_read() -> None:
    """issue 13: the middleware reads only trigger POSTs of w365 jobs and hands Airflow the same
    bytes, however they arrive (several chunks)."""
    import asyncio
    import json

    from w365.orchestration.trigger_guard import FutureRunGuard

    seen: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        seen.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    guard = FutureRunGuard(app, clock=lambda: now)

    def call(path: str, payload: dict[str, Any], method: str = "POST") -> int:
        raw = json.dumps(payload).encode()
        chunks = [{"type": "http.request", "body": raw[:5], "more_body": True}, {"type": "http.request", "body": raw[5:]}]
        sent: list[dict[str, Any]] = []

        async def receive() -> Any:
            return chunks.pop(0)

        async def send(m: Any) -> None:
            sent.append(m)

        asyncio.run(guard({"type": "http", "method": method, "path": path}, receive, send))
        return sent[0]["status"]

    ok = {"logical_date": "2026-11-01T00:04:00+00:00", "conf": {"contract": "BC-1"}}
    assert call(f"/api/v2/dags/{DAG}/dagRuns", ok) == 200 and seen[-1] == json.dumps(ok).encode()
    assert call(f"/api/v2/dags/{DAG}/dagRuns", {"logical_date": "2026-11-01T00:06:00+00:00"}) == 400
    assert call(f"/airflow/api/v2/dags/{DAG}/dagRuns", {"logical_date": "2026-12-01T00:00:00Z"}) == 400  # under a base_url
    assert call("/api/v2/dags/other_dag/dagRuns", {"logical_date": "2030-01-01T00:00:00Z"}) == 200
    assert call(f"/api/v2/dags/{DAG}/dagRuns/list", {"logical_date": "2030-01-01T00:00:00Z"}) == 200
    assert call(f"/api/v2/dags/{DAG}/dagRuns", {"logical_date": "2030-01-01T00:00:00Z"}, method="GET") == 200


def test_i4_i6_a_credit_note_page_shows_its_tax_and_the_invoice_it_corrects(client: Any, airflow: dict[str, Any], store: Any) -> None:
    """SPEC I4, I6, I14: December (INV-000001, 100.00 + VAT 20.00) cancelled with refund on Dec 10:
    CN-000001 corrects it: subtotal -67.74, tax -13.55, total -81.29."""
    from datetime import date, datetime, timezone

    import factories as f
    from w365.billing.changes import ChangeRequest, change_subscription
    from w365.billing.invoicing.dispatcher import generate_change_log_invoices, generate_full_cycle_invoices
    from w365.billing.tax_codes import add_tax_rate
    from w365.store.models import QRB

    with store.session() as s:
        add_tax_rate(s, "VAT20", "20", date(2025, 1, 1))
        c = f.contract(s, f.customer(s, tax_code="VAT20"), start=date(2025, 12, 1), refunds_allowed=True)
        sub = f.subscription(s, c, quantity=10, price="10.00", qrb=QRB.ALLOWED)
        s.commit()
        generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
        change_subscription(s, sub.id, ChangeRequest(action="deactivate", apply_refund=True), now=datetime(2025, 12, 10, tzinfo=timezone.utc))
        s.commit()
    generate_change_log_invoices("monthly", date(2025, 12, 11), engine=store.engine)
    as_cookie(client, airflow, "viewer")
    page = client.get("/w365/invoices/CN-000001").text
    assert "<h1>Credit note CN-000001</h1>" in page
    assert '<dt>Corrects</dt><dd><a href="/w365/invoices/INV-000001">INV-000001</a></dd>' in page
    assert '<strong id="total">-81.29 USD</strong>' in page
    # The document (SPEC I10, I14): titled and naming the invoice it corrects, tax per code, totals.
    assert '<div class="corrects" id="corrects">Corrects invoice INV-000001</div>' in page
    assert '<tr><td>VAT20</td><td class="n">20%</td><td class="n">-$67.74</td><td class="n">-$13.55</td></tr>' in page
    assert '<td class="n" id="subtotal">-$67.74</td>' in page and '<td class="n" id="tax-total">-$13.55</td>' in page
    assert '<td class="n" id="total-due">-$81.29</td>' in page
