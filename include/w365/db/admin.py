"""Creating and dropping whole databases on a PostgreSQL server (tests, benches, topology runs)."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def create_scratch_database(server_url: str, prefix: str = "w365_scratch") -> str:
    """A new empty database on the server of ``server_url``; returns its URL."""
    from w365.db.session import _normalise

    base = _normalise(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop the database ``url`` names (connections to it are terminated first)."""
    from w365.db.session import _normalise

    parsed = make_url(_normalise(url))
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    finally:
        admin.dispose()
