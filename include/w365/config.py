"""Configuration: the ``[w365]`` section of Airflow's own configuration, read through Airflow's
``conf`` wherever w365 runs (DAG parsing, tasks, the api-server, the ``w365`` CLI).

So ``AIRFLOW__W365__<KEY>`` environment variables, ``AIRFLOW_CONFIG`` (another airflow.cfg),
``_cmd``/``_secret`` options and ``airflow.cfg`` under ``AIRFLOW_HOME`` are honoured exactly as
Airflow honours them, whatever the process imported first. Airflow is imported on the first read,
not at import time, so modules that DAG files import stay light; outside Airflow the import keeps
the caller's logging as it was (:func:`import_airflow`).

Options (all optional): ``timezone`` (the tenant's zone for DAG schedules; see
``w365.orchestration.catalogue``), ``schedule_<dag_id>``, ``invoice_shards``, ``notifier``,
``alert_email``, ``alert_from``, ``smtp_conn_id``, ``failure_notifier``, ``failure_email``,
``airflow_api_url``, ``trusted_proxies``; docs/deployment.md lists them with their defaults.
"""

from __future__ import annotations

import os
from typing import Any

from w365.core.tenant_time import DEFAULT_TIMEZONE  # SPEC S4: unset means UTC

SECTION = "w365"


def _conf() -> Any:
    return import_airflow("airflow.configuration").conf


def setting(key: str, default: str | None = None) -> str | None:
    """``[w365] <key>`` from Airflow's configuration; blank counts as unset."""
    value = _conf().get(SECTION, key, fallback=None)
    if value is None or not str(value).strip():
        return default
    return str(value).strip()


def timezone_name() -> str:
    """The tenant's zone as the DAG schedules see it (``[w365] timezone``)."""
    return setting("timezone") or DEFAULT_TIMEZONE


def import_airflow(module: str) -> Any:
    """Import an Airflow module without letting it reconfigure logging outside Airflow.

    Importing Airflow configures its logging (a stdout handler on the root logger). Inside a task
    Airflow is loaded already and nothing changes; in the ``w365`` CLI and in tests that handler
    would mix log lines into ``--json`` output, so the root logger is put back as it was."""
    import importlib
    import logging
    import sys

    if module in sys.modules:
        return sys.modules[module]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return importlib.import_module(module)
    finally:
        if not os.environ.get("AIRFLOW_CTX_DAG_ID"):
            root.handlers[:] = handlers
            root.setLevel(level)
