"""The w365 pages in Airflow's UI, and the end-customer portal API (issue 7; docs/ui.md).

* ``/w365/`` — Scheduled Jobs, SLCL queue, Invoices, Contract metrics (``w365.interfaces.web``), behind
  Airflow's own authentication: every route requires a signed-in Airflow user allowed to see
  plugin views; actions need more (docs/ui.md, "Security model"). A top-level "W365" entry in
  Airflow's navigation shows them inside the UI.
* A root middleware of the api-server refuses a trigger of a w365 job with a logical date in the
  future (``w365.orchestration.trigger_guard``): Airflow would never start that run, and it would block the job.
* ``/w365/portal/`` — the end-customer change API (SPEC C13, ``w365.interfaces.portal``). Intentionally NOT
  behind Airflow's authentication: end customers are not Airflow users; the API has its own
  per-customer bearer tokens. It is listed before ``/w365`` so that it, not the pages, answers
  under that prefix.

Airflow imports plugins in every component (scheduler, dag-processor, workers), so this module
stays light: the apps are built on their first request in the api-server, never at import.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING

from airflow.plugins_manager import AirflowPlugin

if TYPE_CHECKING:  # imported on the first request, never when Airflow loads the plugin
    from w365.orchestration.trigger_guard import FutureRunGuard as _Guard


class LazyASGIApp:
    """An ASGI app built from ``"module:factory"`` on its first request."""

    def __init__(self, factory: str) -> None:
        self.factory = factory
        self._app = None
        self._lock = threading.Lock()

    @property
    def app(self):  # type: ignore[no-untyped-def]
        if self._app is None:
            with self._lock:
                if self._app is None:
                    module, _, name = self.factory.partition(":")
                    self._app = getattr(importlib.import_module(module), name)()
        return self._app

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        await self.app(scope, receive, send)

    def __repr__(self) -> str:
        return f"LazyASGIApp({self.factory!r})"


class FutureRunGuard:
    """``w365.orchestration.trigger_guard.FutureRunGuard`` (issue 13), imported on the api-server's first request:
    a trigger of a w365 job with a logical date in the future is answered 400 with the reason,
    instead of creating a run that would never start and would block the job."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self._guard: _Guard | None = None

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if self._guard is None:
            from w365.orchestration.trigger_guard import FutureRunGuard as Guard

            self._guard = Guard(self.app)
        await self._guard(scope, receive, send)


class W365UIPlugin(AirflowPlugin):
    name = "w365_ui"
    fastapi_apps = [
        # First: Starlette matches mounts in order, and /w365 would otherwise take /w365/portal.
        {"app": LazyASGIApp("w365.interfaces.portal:create_app"), "url_prefix": "/w365/portal",
         "name": "w365 end-customer portal API (own bearer-token auth, SPEC C13)"},
        {"app": LazyASGIApp("w365.interfaces.web:create_app"), "url_prefix": "/w365", "name": "w365 pages"},
    ]
    fastapi_root_middlewares = [
        {"middleware": FutureRunGuard, "args": [], "kwargs": {},
         "name": "w365: refuse triggers of w365 jobs dated in the future (issue 13)"},
    ]
    external_views = [
        {"name": "W365", "href": "/w365/", "destination": "nav", "url_route": "w365",
         "nav_top_level": True, "icon": "/w365/icon.svg"},
    ]
