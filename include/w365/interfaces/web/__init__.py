"""The w365 pages inside Airflow's UI (issue 7; docs/ui.md).

``create_app()`` builds the FastAPI app that ``plugins/w365_ui.py`` mounts under ``/w365``.
Importing this package is cheap; the app and its imports (FastAPI, Airflow's security
dependencies, the billing store) load only when ``create_app`` is called.
"""

from __future__ import annotations

from typing import Any


def create_app(**kwargs: Any) -> Any:
    from w365.interfaces.web.app import create_app as build

    return build(**kwargs)
