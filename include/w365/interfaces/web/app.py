"""The w365 pages inside Airflow's UI (issue 7; docs/ui.md): a FastAPI app that the plugin
``plugins/w365_ui.py`` mounts under ``/w365`` of Airflow's api-server.

Pages: Scheduled Jobs (``/``, SPEC J2/J3), the SLCL queue (``/slcls``, SPEC C9), invoices
(``/invoices``, drill-down with the invoice document, CSV/HTML/PDF export; SPEC M3, I10) and contract metrics (``/metrics``, MRR/ACV
with an inline-SVG trend). Jobs' state is Airflow's, read and changed through Airflow's REST API
as the signed-in user (``airflow_api``); everything else is read from the billing store with
``read_scope()`` (never blocking a billing run) and changed only through ``w365.billing.scheduled_changes``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Callable, Optional
from zoneinfo import ZoneInfo

from airflow.api_fastapi.app import API_ROOT_PATH
from airflow.api_fastapi.core_api.security import GetUserDep  # module level: FastAPI resolves annotations here
from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from w365 import config
from w365.orchestration import catalogue

from w365.core import words
from w365.store.models import OPEN_SLCL_STATUSES
from w365.errors import NotFound, W365Error
from w365.core.money import as_currency, plain, plain_price
from w365.interfaces.web import auth, queries, security
from w365.interfaces.web.airflow_api import AirflowAPI, caller_token
from w365.interfaces.web.svg import line_chart

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
PAGES = [("jobs", "Scheduled Jobs"), ("slcls", "SLCL queue"), ("invoices", "Invoices"), ("metrics", "Contract metrics")]
SLCL_FILTERS = {s.value: s for s in OPEN_SLCL_STATUSES}
MAX_SLCL_ROWS = 500
JOB_FILTERS = ("all", "active", "inactive")
EXPORT_FORMATS = {"csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8", "pdf": "application/pdf"}


def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    # Numbers as people write them (issue 13): money with its currency's minor units (10,536.50
    # USD, 1,200 JPY), quantities without trailing zeros or exponent (120, 2.5), prices with at
    # least two places (12.00, 1.234567).
    env.filters["money"] = lambda v, cur="": "" if v is None else f"{as_currency(v, cur) if cur else v:,}" + (f" {cur}" if cur else "")
    env.filters["qty"] = lambda v: "" if v is None else plain(v)
    env.filters["price"] = lambda v: "" if v is None else plain_price(v)
    env.filters["label"] = lambda v: "" if v is None else str(v).replace("_", " ")
    env.filters["localtime"] = _local
    return env


def _local(value: Any, tz: str) -> str:
    """An Airflow timestamp (ISO string) in the tenant's zone, e.g. ``2026-01-15 00:15 PST``."""
    if not value:
        return ""
    when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return when.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")


def _wants_page(request: Request) -> bool:
    """A person's browser reading a page (GET), unless the client asks for JSON only."""
    accept = request.headers.get("accept", "")
    return request.method in ("GET", "HEAD") and not ("application/json" in accept and "text/html" not in accept)


def _status_title(code: int) -> str:
    from http import HTTPStatus

    titles = {400: "Bad address", 404: "Not found", 422: "Cannot show that", 409: "Refused"}
    try:
        return titles.get(code) or HTTPStatus(code).phrase
    except ValueError:
        return f"Error {code}"


def _explain(error: dict[str, Any]) -> str:
    """One request-validation error for people: ``limit must be a whole number, not 'abc'``."""
    loc = [str(x) for x in error.get("loc", ()) if x not in ("query", "path", "body")]
    what = ".".join(loc) or "the request"
    kind, ctx, given = error.get("type", ""), error.get("ctx") or {}, error.get("input")
    if kind in ("int_parsing", "int_type", "int_from_float"):
        reason = "must be a whole number"
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {"greater_than_equal": "at least", "greater_than": "above", "less_than_equal": "at most", "less_than": "below"}[kind]
        reason = f"must be {bound} {next(iter(ctx.values()), '?')}"
    elif kind == "missing":
        return f"{what} is required"
    else:
        message = str(error.get("msg", "is not valid"))
        reason = message[:1].lower() + message[1:]
    return f"{what} {reason}" + (f", not {given!r}" if isinstance(given, (str, int, float)) else "")


def _export_csp(html: str) -> str:
    """The HTML export's policy: nothing but its own inline ``<style>`` blocks (by hash)."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(block.encode("utf-8")).digest()).decode("ascii") + "'"
        for block in re.findall(r"<style>(.*?)</style>", html, re.S)
    ) or "'none'"
    return f"default-src 'none'; style-src {hashes}; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"


def create_app(*, engine: Engine | None = None, airflow_api: AirflowAPI | None = None,
               clock: Callable[[], datetime] | None = None) -> FastAPI:
    """The pages' app. ``engine`` (default: the store of ``W365_DATABASE_URL``), ``airflow_api``
    and ``clock`` are injectable for tests; ``app.state.airflow_api`` may be replaced too."""
    from w365.store.session import get_engine, read_scope, session_scope

    app = FastAPI(title="w365 pages", description=__doc__, dependencies=auth.view_dependencies(),
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.airflow_api = airflow_api or AirflowAPI()
    # CSP, framing by Airflow's UI (same origin) only, nosniff, Referrer-Policy (issue 12).
    app.add_middleware(security.SecurityHeaders, headers=security.PAGES_HEADERS)
    env = _templates()
    now = clock or (lambda: datetime.now(timezone.utc))

    def store() -> Engine:
        return engine or get_engine()

    def render(request: Request, user: Any, template: str, page: str, **ctx: Any) -> HTMLResponse:
        html = env.get_template(template).render(
            base=request.scope.get("root_path", "").rstrip("/"), airflow=API_ROOT_PATH.rstrip("/"), pages=PAGES,
            page=page, user=auth.user_label(user), tz=config.timezone_name(), **ctx,
        )
        return HTMLResponse(html)

    # Errors (issue 13): the pages answer people with a page (the site's layout, the message, a
    # link back, the status code); the actions (POST, the toggle's and the SLCL buttons' JSON) and
    # clients that ask for JSON only keep JSON. The portal is another app and always answers JSON.

    def error_page(request: Request, code: int, message: str) -> HTMLResponse:
        base = request.scope.get("root_path", "").rstrip("/")
        path = request.url.path
        section = (path[len(base):] if path.startswith(base) else path).strip("/").split("/")[0]
        page = section if section in dict(PAGES) else "jobs"
        html = env.get_template("error.html").render(
            base=base, airflow=API_ROOT_PATH.rstrip("/"), pages=PAGES, page=page, user={"name": "", "role": None},
            tz=config.timezone_name(), code=code, title=_status_title(code), message=message,
            back_href=f"{base}/{'' if page == 'jobs' else page}", back_label=f"Back to {dict(PAGES)[page]}",
        )
        return HTMLResponse(html, status_code=code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # A browser that is not signed in goes to Airflow's login and comes back; scripts get 401.
        if exc.status_code == 401 and request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            target = auth.login_redirect(request)
            if target:
                return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
        if exc.status_code != 401 and _wants_page(request):
            detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
            if exc.status_code == 404 and detail == "Not Found":  # no route: Starlette's own words
                detail = f"There is no w365 page at {request.url.path}."
            elif exc.status_code == 405 and detail == "Method Not Allowed":
                detail = f"{request.url.path} is an action of a page's button, not a page."
            return error_page(request, exc.status_code, detail)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> Response:
        if not _wants_page(request):
            return await request_validation_exception_handler(request, exc)
        errors = exc.errors()
        code = 400 if any(e.get("loc", ("",))[0] == "path" for e in errors) else 422
        return error_page(request, code, "; ".join(_explain(e) for e in errors) or "the request cannot be read")

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        if _wants_page(request):
            return error_page(request, 404, str(exc))
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(W365Error)
    async def _refused(request: Request, exc: W365Error) -> Response:
        if _wants_page(request):
            return error_page(request, 409, str(exc))
        return JSONResponse({"detail": str(exc)}, status_code=409)

    # ---------------------------------------------------------------------------- Scheduled Jobs

    @app.get("/", response_class=HTMLResponse, name="jobs")
    async def jobs_page(request: Request, user: GetUserDep, show: str = "all") -> HTMLResponse:
        shown_filter = words.choose(show, JOB_FILTERS)  # All, active, INACTIVE: any spelling (issue 13)
        if shown_filter is None:
            raise HTTPException(422, f"show must be one of {', '.join(JOB_FILTERS)}, not {show!r}")
        show = shown_filter
        tz = config.timezone_name()
        token = caller_token(request) or ""
        result, dags = await request.app.state.airflow_api.dags(token, [j.dag_id for j in catalogue.JOBS])
        rows: list[dict[str, Any]] = []
        for job in catalogue.JOBS:
            d = dags.get(job.dag_id)
            run = (d or {}).get("last_run") or {}
            rows.append({
                "dag_id": job.dag_id, "name": job.name, "description": job.description, "recommended": job.recommended,
                "crons": catalogue.schedule_for(job), "in_airflow": d is not None,
                "active": d is not None and not d.get("is_paused"),
                "timetable": (d or {}).get("timetable_description") or "",
                "next_run": _local((d or {}).get("next_dagrun_run_after"), tz),
                "last_state": run.get("state"), "last_run": _local(run.get("run_after") or run.get("logical_date"), tz),
                "last_run_id": run.get("dag_run_id"),
                "may_edit": auth.may_edit_dag(user, job.dag_id),
            })
        counts = {"all": len(rows), "active": sum(r["active"] for r in rows),
                  "inactive": sum(r["in_airflow"] and not r["active"] for r in rows)}
        shown = [r for r in rows if show == "all" or (r["in_airflow"] and r["active"] == (show == "active"))]
        return render(request, user, "jobs.html", "jobs", rows=shown, counts=counts, show=show,
                      api_error=None if result.ok else f"Airflow's API answered {result.status}: {result.detail}",
                      read_only=not any(r["may_edit"] for r in rows))

    @app.post("/jobs/{dag_id}/pause", dependencies=[Depends(auth.same_origin_action)])
    async def set_paused(request: Request, dag_id: str, is_paused: Annotated[bool, Body(embed=True)]) -> JSONResponse:
        """Enable (``is_paused: false``) or disable a catalogue job through Airflow's own API, as
        the caller: Airflow answers 403 to a user who may not edit the DAG (SPEC J3)."""
        if dag_id not in catalogue.BY_DAG_ID:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{dag_id} is not a w365 job")
        result = await request.app.state.airflow_api.set_paused(caller_token(request) or "", dag_id, is_paused)
        name = catalogue.BY_DAG_ID[dag_id].name
        if result.ok:
            paused = bool(result.body.get("is_paused", is_paused))
            return JSONResponse({"dag_id": dag_id, "is_paused": paused,
                                 "message": f"{name}: {'disabled' if paused else 'enabled'}"})
        if result.status in (401, 403):
            message = f"Airflow refused to {'disable' if is_paused else 'enable'} {name}: only admins may enable or disable jobs ({result.detail})"
        elif result.status == 404:
            message = f"{name} is not in Airflow (yet): {result.detail}"
        else:
            message = f"Airflow's API answered {result.status}: {result.detail}"
        code = result.status if result.status in (401, 403, 404) else status.HTTP_502_BAD_GATEWAY
        return JSONResponse({"dag_id": dag_id, "detail": message}, status_code=code)

    # ---------------------------------------------------------------------------- SLCL queue

    @app.get("/slcls", response_class=HTMLResponse, name="slcls")
    def slcls_page(request: Request, user: GetUserDep, status_: Annotated[Optional[str], Query(alias="status")] = None) -> HTMLResponse:
        from w365.billing.scheduled_changes import list_slcls

        if status_:  # merge_failed, merge-failed, Merge Failed, MERGE-FAILED: one word (issue 13)
            asked, status_ = status_, words.choose(status_, SLCL_FILTERS)
            if status_ is None:
                raise HTTPException(422, f"status must be one of {', '.join(map(words.label, SLCL_FILTERS))} "
                                         f"(any spelling, e.g. merge_failed or merge-failed), not {asked!r}")
        with read_scope(store()) as s:
            rows = list_slcls(s, list(OPEN_SLCL_STATUSES))
        counts = {k: sum(r["status"] == k for r in rows) for k in SLCL_FILTERS}
        shown = [r for r in rows if not status_ or r["status"] == status_]
        return render(request, user, "slcls.html", "slcls", rows=shown[:MAX_SLCL_ROWS], total=len(shown), counts=counts,
                      status=status_, statuses=list(SLCL_FILTERS), may_act=auth.may_edit_dag(user, auth.SLCL_DAG))

    @app.post("/slcls/{slcl_id}/retry", dependencies=auth.slcl_action_dependencies())
    def retry(slcl_id: int, user: GetUserDep) -> JSONResponse:
        """Merge Failed -> merged now if due (else back in the queue for its time)."""
        from w365.billing.scheduled_changes import retry_slcl

        result = retry_slcl(store(), slcl_id, now=now())
        log.info("scheduled change #%d retried by %s: %s", slcl_id, user.get_name(), result["status"])
        return JSONResponse(result)

    @app.post("/slcls/{slcl_id}/cancel", dependencies=auth.slcl_action_dependencies())
    def cancel(slcl_id: int, user: GetUserDep) -> JSONResponse:
        from w365.billing.scheduled_changes import cancel_slcl

        with session_scope(store()) as s:
            result = cancel_slcl(s, slcl_id, now=now())
        log.info("scheduled change #%d cancelled by %s", slcl_id, user.get_name())
        return JSONResponse(result)

    # ---------------------------------------------------------------------------- Invoices

    @app.get("/invoices", response_class=HTMLResponse, name="invoices")
    def invoices_page(request: Request, user: GetUserDep, contract: Optional[str] = None,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> HTMLResponse:
        from w365.billing.invoicing.export import list_invoices

        with read_scope(store()) as s:
            rows = list_invoices(s, contract=contract or None, limit=limit)
        return render(request, user, "invoices.html", "invoices", rows=rows, contract=contract or "", limit=limit)

    @app.get("/invoices/{number}", response_class=HTMLResponse, name="invoice")
    def invoice_page(request: Request, user: GetUserDep, number: str) -> HTMLResponse:
        """Operators' view of one invoice: payment and exports, the document exactly as the
        customer receives it (the template of the export and the PDF; SPEC I10), then the
        change logs and scheduled changes behind each line (SPEC M3)."""
        from w365.billing.invoicing.document import render_fragment
        from w365.billing.invoicing.export import invoice_document

        with read_scope(store()) as s:
            doc = invoice_document(s, number)
            document = render_fragment(s, number)
            lcls = queries.lcl_sources(s, [i for line in doc["lines"] for i in line["lcl_ids"]])
            slcls = queries.slcl_statuses(s, [i for line in doc["lines"] for i in line["slcl_ids"]])
        return render(request, user, "invoice.html", "invoices", d=doc, document=document, lcls=lcls, slcls=slcls)

    @app.get("/invoices/{number}/export.{fmt}")
    def invoice_export(number: str, fmt: str) -> Response:
        """The invoice as CSV (finance's data), HTML or PDF (the document; SPEC I10, I15)."""
        from w365.billing.invoicing import document
        from w365.billing.invoicing.export import invoice_document, to_csv

        if fmt not in EXPORT_FORMATS:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"export formats: {', '.join(EXPORT_FORMATS)}")
        body: str | bytes
        with read_scope(store()) as s:
            body = to_csv(invoice_document(s, number)) if fmt == "csv" else document.render_html(s, number)
        if fmt == "pdf":  # rendered after the read transaction
            body = document.html_to_pdf(body, number)
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in number)
        headers = {"Content-Disposition": f'attachment; filename="{safe}.{fmt}"'}
        if isinstance(body, str) and fmt == "html":  # a standalone document with its own <style>: allow exactly that block
            headers["Content-Security-Policy"] = _export_csp(body)
        return Response(body, media_type=EXPORT_FORMATS[fmt], headers=headers)

    @app.get("/invoice-document.css", include_in_schema=False)
    def document_stylesheet() -> Response:
        from w365.billing.invoicing.document import stylesheet as document_css

        return Response(document_css(), media_type="text/css; charset=utf-8")

    # ---------------------------------------------------------------------------- Metrics

    @app.get("/metrics", response_class=HTMLResponse, name="metrics")
    def metrics_page(request: Request, user: GetUserDep, customer: Optional[str] = None,
                     days: Annotated[int, Query(ge=7, le=3660)] = queries.TREND_DAYS) -> HTMLResponse:
        with read_scope(store()) as s:
            data = queries.contract_metrics(s, customer=customer or None)
            trend = queries.metrics_trend(s, days=days)
        charts = [line_chart(trend["mrr"], title=f"MRR, active contracts (last {days} days)"),
                  line_chart(trend["acv"], title=f"ACV, active contracts (last {days} days)")]
        return render(request, user, "metrics.html", "metrics", charts=charts, customer=customer or "", days=days, **data)

    @app.get("/metrics/{contract}", response_class=HTMLResponse, name="contract_metrics")
    def contract_page(request: Request, user: GetUserDep, contract: str,
                      days: Annotated[int, Query(ge=7, le=3660)] = queries.TREND_DAYS) -> HTMLResponse:
        with read_scope(store()) as s:
            c = queries.contract_trend(s, contract, days=days)
        charts = [line_chart(c["series"]["mrr"], title=f"MRR of {contract}"), line_chart(c["series"]["acv"], title=f"ACV of {contract}")]
        return render(request, user, "contract.html", "metrics", c=c, charts=charts, days=days)

    @app.get("/icon.svg", include_in_schema=False)
    def icon() -> Response:
        return Response((HERE / "templates" / "icon.svg").read_text(), media_type="image/svg+xml")

    # The pages' own script and style, as files: the CSP allows scripts and styles from 'self'
    # only, never inline (issue 12).
    @app.get("/w365.js", include_in_schema=False)
    def script() -> Response:
        return Response((HERE / "templates" / "w365.js").read_text(), media_type="text/javascript; charset=utf-8")

    @app.get("/w365.css", include_in_schema=False)
    def stylesheet() -> Response:
        return Response((HERE / "templates" / "w365.css").read_text(), media_type="text/css; charset=utf-8")

    return app
