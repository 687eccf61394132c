"""Airflow Connections for the integrations (SPEC P4: credentials never in code or the store).

``get_connection(conn_id)`` is the one place that resolves a connection id, through Airflow's own
Connection API (``airflow.sdk.BaseHook.get_connection``: its secrets backends, the environment
variable ``AIRFLOW_CONN_<ID>`` in either of Airflow's forms, the metadata database, or the task
API inside a task). Nothing here parses a connection itself.

The result is a plain :class:`ConnectionInfo` whose ``repr`` hides the password, so logging one
never leaks a secret. Nothing here runs at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

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
        if not value and self.conn_type in ("file", "fs") and self.schema:
            value = "/" + self.schema.lstrip("/")  # Airflow reads file:///srv/files as schema "srv/files"
        if value and str(value).startswith("file://"):
            value = unquote(urlsplit(str(value)).path)
        return str(value) if value else None


def _secret_key(key: str) -> bool:
    k = key.lower()
    return any(s in k for s in ("secret", "password", "token", "key", "credential")) and k not in ("token_url",)


def env_var(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


def get_connection(conn_id: str) -> ConnectionInfo:
    """Resolve ``conn_id`` through Airflow. Raises :class:`ConnectionNotFound`."""
    if not conn_id:
        raise ConnectionNotFound("no connection id configured")
    base_hook = import_airflow("airflow.sdk").BaseHook
    not_found = import_airflow("airflow.sdk.exceptions").AirflowNotFoundException
    try:
        conn = base_hook.get_connection(conn_id)
    except not_found:
        raise ConnectionNotFound(f"Airflow connection {conn_id!r} is not defined (or set {env_var(conn_id)})") from None
    except Exception as exc:  # noqa: BLE001 - a secrets backend that fails: one line, the type only (no secret)
        raise W365Error(f"Airflow connection {conn_id!r} could not be read: {type(exc).__name__}") from None
    return ConnectionInfo(
        conn_id, conn.conn_type, conn.host or None, conn.login, conn.password,
        int(conn.port) if conn.port else None, conn.schema or None, dict(conn.extra_dejson or {}),
    )
