"""Airflow Connections for the integrations (SPEC P4: credentials never in code or the store).

``get_connection(conn_id)`` is the one place that resolves a connection id: through Airflow
(``airflow.sdk.BaseHook.get_connection``: its secrets backends, environment variables, the
metadata database or the task API) when Airflow is installed, else from the environment variable
``AIRFLOW_CONN_<ID>`` in either of Airflow's two forms:

* URI:  ``AIRFLOW_CONN_PARTNER_CENTER='https://app-id:secret@api.partnercenter.microsoft.com?token_url=...'``
* JSON: ``AIRFLOW_CONN_PARTNER_CENTER='{"conn_type": "https", "host": "...", "login": "...",
  "password": "...", "extra": {"token_url": "..."}}'``

The result is a plain :class:`ConnectionInfo` whose ``repr`` hides the password, so logging one
never leaks a secret. Nothing here runs at import time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from w365.config import import_airflow
from w365.errors import W365Error

# Connection ids the jobs use besides the providers' own (``provider.connection_id``).
ACCOUNTING = "w365_accounting"
PRICE_LIST = "w365_price_list"


class ConnectionNotFound(W365Error):
    pass


@dataclass(frozen=True)
class ConnectionInfo:
    conn_id: str
    conn_type: str | None = None
    host: str | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    port: int | None = None
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # never the password, nor secret-looking extras
        safe_extra = {k: ("***" if _secret_key(k) else v) for k, v in self.extra.items()}
        return (
            f"ConnectionInfo(conn_id={self.conn_id!r}, conn_type={self.conn_type!r}, host={self.host!r}, "
            f"login={self.login!r}, port={self.port!r}, schema={self.schema!r}, extra={safe_extra!r})"
        )

    __str__ = __repr__

    def sqlalchemy_url(self) -> str:
        """A database connection as a SQLAlchemy URL (the billing store's ``w365_billing``)."""
        from sqlalchemy.engine import URL

        kind = (self.conn_type or "").lower()
        if kind in ("postgres", "postgresql"):
            return URL.create("postgresql+psycopg2", self.login, self.password, self.host, self.port, self.schema).render_as_string(hide_password=False)
        if kind == "sqlite":
            return f"sqlite:///{self.host or self.schema or ''}"
        raise W365Error(f"connection {self.conn_id!r} is a {self.conn_type!r} connection, not a database (postgres or sqlite)")

    def base_url(self) -> str:
        """``extra.base_url``, or scheme://host[:port][/schema] (scheme from the connection type,
        ``extra.scheme``, or a scheme written into ``host``; https by default)."""
        explicit = self.extra.get("base_url")
        if explicit:
            return str(explicit).rstrip("/")
        if not self.host:
            raise W365Error(f"connection {self.conn_id!r} has no host (or extra base_url)")
        if "://" in self.host:
            url = self.host.rstrip("/")
        else:
            scheme = self.extra.get("scheme") or (self.conn_type if self.conn_type in ("http", "https") else "https")
            url = f"{scheme}://{self.host}"
        if self.port and urlsplit(url).port is None:
            url += f":{self.port}"
        if self.schema:
            url += "/" + self.schema.strip("/")
        return url.rstrip("/")

    def path(self) -> str | None:
        """A folder or file for file-based integrations: ``extra.path``, else the host (JSON form
        ``{"conn_type": "fs", "host": "/data/drop"}``), else a ``file://`` URI's path."""
        value = self.extra.get("path") or self.host
        if value and str(value).startswith("file://"):
            value = unquote(urlsplit(str(value)).path)
        return str(value) if value else None


def _secret_key(key: str) -> bool:
    k = key.lower()
    return any(s in k for s in ("secret", "password", "token", "key", "credential")) and k not in ("token_url",)


def env_var(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


def parse_connection(conn_id: str, value: str) -> ConnectionInfo:
    """Parse Airflow's environment forms (JSON or URI) into a ConnectionInfo."""
    text = value.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise W365Error(f"{env_var(conn_id)} is not valid JSON: {exc.msg}") from None
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra.strip() else {}
        port = data.get("port")
        return ConnectionInfo(
            conn_id, data.get("conn_type"), data.get("host"), data.get("login"), data.get("password"),
            int(port) if port not in (None, "") else None, data.get("schema"), dict(extra),
        )
    parts = urlsplit(text)
    conn_type = parts.scheme.replace("-", "_") or None
    host = unquote(parts.hostname) if parts.hostname else None
    if conn_type in ("file", "fs") and not host:
        host = unquote(parts.path) or None
        schema = None
    else:
        schema = unquote(parts.path.lstrip("/")) or None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra: dict[str, Any] = {}
    if "__extra__" in query:
        extra = json.loads(query.pop("__extra__"))
    extra.update(query)
    return ConnectionInfo(
        conn_id, conn_type, host, unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None, parts.port, schema, extra,
    )


def _from_airflow(conn_id: str) -> ConnectionInfo | None:
    try:
        BaseHook = import_airflow("airflow.sdk").BaseHook  # noqa: N806
    except Exception:  # noqa: BLE001 - Airflow not installed: environment only
        return None
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - AirflowNotFoundException and friends
        if "isn't defined" in str(exc) or type(exc).__name__.endswith("NotFoundException"):
            raise ConnectionNotFound(f"Airflow connection {conn_id!r} is not defined (or set {env_var(conn_id)})") from None
        raise W365Error(f"Airflow connection {conn_id!r} could not be read: {type(exc).__name__}") from None
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    return ConnectionInfo(
        conn_id, conn.conn_type, conn.host, conn.login, conn.password,
        int(conn.port) if conn.port else None, conn.schema, dict(extra or {}),
    )


def get_connection(conn_id: str) -> ConnectionInfo:
    """Resolve ``conn_id`` (see the module docstring). Raises :class:`ConnectionNotFound`."""
    if not conn_id:
        raise ConnectionNotFound("no connection id configured")
    found = _from_airflow(conn_id)
    if found is not None:
        return found
    value = os.environ.get(env_var(conn_id))
    if not value:
        raise ConnectionNotFound(f"connection {conn_id!r} is not defined: set {env_var(conn_id)} or an Airflow Connection")
    return parse_connection(conn_id, value)
