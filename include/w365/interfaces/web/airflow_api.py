"""Airflow's own REST API, called as the signed-in user (docs/ui.md, "How a toggle reaches Airflow").

The Scheduled Jobs page reads the DAGs' state (paused, next run, last run) and the toggle sets
``is_paused`` through Airflow's public API (``/api/v2``), forwarding the caller's own token: the
``Authorization: Bearer`` header when the request has one, else the ``_token`` cookie that
Airflow's UI sets at login. Airflow itself then decides what this user may see and change (a
viewer's PATCH is answered 403), records the change in its audit log, and stays the one truth
about a job's state: w365 keeps no copy of it.

Where the API is: ``[w365] airflow_api_url`` (or ``AIRFLOW__W365__AIRFLOW_API_URL``) when set, else
this api-server's own address: ``[api] host``/``[api] port`` (a wildcard host means 127.0.0.1),
``https`` when ``[api] ssl_cert`` is set, with the path of ``[api] base_url``. The call goes to
the very server that serves the page, over loopback.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from starlette.requests import Request

from w365 import config

TOKEN_COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN
WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}
TIMEOUT = httpx.Timeout(15.0, connect=5.0)
CONCURRENT_CALLS = 6  # per-DAG last-run look-ups in flight at once
RECENT = timedelta(days=8)  # runs of the last 8 days (weekly jobs included) come in one call


def caller_token(request: Request) -> str | None:
    """The token this request was authenticated with, chosen as Airflow's ``get_user`` chooses:
    an explicit bearer header wins over the UI's cookie."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    return request.cookies.get(TOKEN_COOKIE) or None


def api_base_url() -> str:
    """This api-server's own base URL (no trailing slash); see the module docstring."""
    explicit = config.setting("airflow_api_url")
    if explicit:
        return explicit.rstrip("/")
    from airflow.configuration import conf

    host = (conf.get("api", "host", fallback="") or "").strip()
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    port = conf.getint("api", "port", fallback=8080)
    scheme = "https" if conf.get("api", "ssl_cert", fallback="") else "http"
    path = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    return f"{scheme}://{host}:{port}{path}"


@dataclass
class AirflowResult:
    """One answer of Airflow's API: its status and JSON body (``{}`` when it had none)."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def detail(self) -> str:
        detail = self.body.get("detail")
        if isinstance(detail, list):  # validation errors
            return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
        return str(detail or f"HTTP {self.status}")


class AirflowAPI:
    """A thin async client for the few ``/api/v2`` calls the pages make.

    ``transport`` lets tests send the calls to an in-process Airflow app
    (``httpx.ASGITransport``) instead of a socket; ``base_url`` defaults to :func:`api_base_url`.
    """

    def __init__(self, base_url: str | None = None, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._base_url = base_url
        self.transport = transport

    @property
    def base_url(self) -> str:
        return self._base_url or api_base_url()

    def client(self) -> httpx.AsyncClient:
        base = self.base_url
        loopback = urlsplit(base).hostname in ("127.0.0.1", "localhost", "::1")
        # A TLS certificate names the public host, not 127.0.0.1: on loopback it is not checked.
        return httpx.AsyncClient(base_url=base, transport=self.transport, timeout=TIMEOUT,
                                 verify=not (loopback and base.startswith("https")))

    @staticmethod
    async def _call(client: httpx.AsyncClient, token: str, method: str, path: str, **kwargs: Any) -> AirflowResult:
        try:
            r = await client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)
        except httpx.HTTPError as exc:
            return AirflowResult(502, {"detail": f"Airflow's API at {client.base_url} did not answer: {exc.__class__.__name__}"})
        try:
            body = r.json()
        except ValueError:
            body = {}
        return AirflowResult(r.status_code, body if isinstance(body, dict) else {"items": body})

    async def dags(self, token: str, dag_ids: list[str]) -> tuple[AirflowResult, dict[str, dict[str, Any]]]:
        """The DAGs among ``dag_ids`` that Airflow knows and lets this user read, with the latest
        run of each (``last_run``; None when it never ran)."""
        async with self.client() as client:
            # `|` is OR in Airflow's pattern filters; the match is a substring, so keep exact ids only.
            listed = await self._call(client, token, "GET", "/api/v2/dags",
                                      params={"dag_id_pattern": "|".join(dag_ids), "limit": 1000})
            if not listed.ok:
                return listed, {}
            wanted = set(dag_ids)
            found = {d["dag_id"]: d for d in listed.body.get("dags", []) if d.get("dag_id") in wanted}
            # The latest run of every job that ran lately, in one call (newest first, so a DAG's
            # first run in the list is its latest); one call per job for the others.
            since = datetime.now(timezone.utc) - RECENT
            recent = await self._call(client, token, "GET", "/api/v2/dags/~/dagRuns",
                                      params={"order_by": "-run_after", "run_after_gte": since.isoformat(), "limit": 1000})
            for run in recent.body.get("dag_runs", []) if recent.ok else []:
                if run.get("dag_id") in found:
                    found[run["dag_id"]].setdefault("last_run", run)
            gate = asyncio.Semaphore(CONCURRENT_CALLS)

            async def last_run(dag_id: str) -> None:
                async with gate:
                    runs = await self._call(client, token, "GET", f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns",
                                            params={"limit": 1, "order_by": "-run_after"})
                found[dag_id]["last_run"] = (runs.body.get("dag_runs") or [None])[0] if runs.ok else None

            await asyncio.gather(*(last_run(d) for d, dag in found.items() if "last_run" not in dag))
        return listed, found

    async def set_paused(self, token: str, dag_id: str, paused: bool) -> AirflowResult:
        """``PATCH /api/v2/dags/{dag_id}`` with ``is_paused``: Airflow checks the user may edit it."""
        async with self.client() as client:
            return await self._call(client, token, "PATCH", f"/api/v2/dags/{quote(dag_id, safe='')}",
                                    params={"update_mask": "is_paused"}, json={"is_paused": paused})
