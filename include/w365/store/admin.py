"""Administration of billing stores: creating and dropping whole databases on a PostgreSQL server
(tests, benches, topology runs), and the one sanctioned way past the store's guard triggers
(``guards_bypassed``) for wiping a store."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from w365.errors import W365Error

# Every guard trigger of the store is named guard_* (migrations 0001, 0002).
GUARD_PREFIX = "guard_"


def create_scratch_database(server_url: str, prefix: str = "w365_scratch") -> str:
    """A new empty database on the server of ``server_url``; returns its URL."""
    from w365.store.session import _normalise

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
    from w365.store.session import _normalise

    parsed = make_url(_normalise(url))
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _runner(target: Any) -> tuple[str, Callable[[str], list[Any]], Callable[[], bool]]:
    """(dialect name, run SQL -> rows, in a transaction?) for a Session, a Connection or a DBAPI
    connection (psycopg2, sqlite3)."""
    if isinstance(target, Session):
        target = target.connection()
    if isinstance(target, Connection):
        conn = target

        def run(sql: str) -> list[Any]:
            result = conn.exec_driver_sql(sql)
            return list(result.fetchall()) if result.returns_rows else []

        return conn.dialect.name, run, conn.in_transaction
    target = getattr(target, "dbapi_connection", None) or target  # Engine.raw_connection()'s proxy
    module = type(target).__module__
    if module.startswith("sqlite3"):
        name = "sqlite"
    elif module.startswith("psycopg"):
        name = "postgresql"
    else:
        raise TypeError(f"guards_bypassed: not a Session, Connection or DBAPI connection: {target!r}")

    def run_raw(sql: str) -> list[Any]:
        cur = target.cursor()
        try:
            cur.execute(sql)
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    def in_tx() -> bool:
        return bool(target.in_transaction) if name == "sqlite" else not target.autocommit

    return name, run_raw, in_tx


@contextmanager
def guards_bypassed(target: Session | Connection | Any) -> Iterator[None]:
    """Switch the store's guard triggers off for the rest of a block, inside one transaction.

    The database refuses changes to issued invoices, their lines and LCL/SLCL links (issue 11,
    SPEC M3) and to the license change log (SPEC S3), and on PostgreSQL refuses TRUNCATE of them.
    Wiping a whole store (tests between cases, benches, an administrator starting a store over)
    must get past them; this is the one bypass, for administrators and tests only. Billing code
    never calls it: nothing in w365 edits or deletes an issued invoice.

        with engine.begin() as conn:
            with guards_bypassed(conn):
                conn.exec_driver_sql("TRUNCATE invoice, invoice_line, ... CASCADE")

    ``target`` is a Session, a Connection or a DBAPI connection (psycopg2, sqlite3), in a
    transaction; the bypass ends with the block and never outlives the transaction.

    * PostgreSQL: ``SET LOCAL session_replication_role = replica`` (no ordinary trigger fires,
      TRUNCATE triggers included); the previous role is restored when the block ends. Needs a
      superuser, or ``GRANT SET ON PARAMETER session_replication_role TO <role>`` (PostgreSQL
      15+). Foreign keys are triggers too, so they are not checked inside the block either:
      wipe with ``TRUNCATE ... CASCADE`` (which follows references itself) or delete children
      before their parents.
    * SQLite: the ``guard_*`` triggers are dropped and re-created from their own definitions when
      the block ends, in the same transaction (a rollback restores them as well; SQLite has one
      writer, so no other connection writes meanwhile). Foreign keys stay on.
    """
    dialect, run, in_transaction = _runner(target)
    if dialect == "postgresql":
        previous = run("SHOW session_replication_role")[0][0]
        try:
            run("SET LOCAL session_replication_role = replica")
        except Exception as exc:  # noqa: BLE001 - re-raised with what to do
            raise W365Error(
                "guards_bypassed: cannot SET session_replication_role (needs a superuser, or GRANT SET ON "
                f"PARAMETER session_replication_role): {exc}"
            ) from exc
        if run("SHOW session_replication_role")[0][0] != "replica":
            raise W365Error("guards_bypassed: needs a transaction (SET LOCAL outside one has no effect)")
        try:
            yield
        except BaseException:
            try:
                run(f"SET LOCAL session_replication_role = {previous}")
            except Exception:  # noqa: BLE001 - an aborted transaction ends the bypass itself
                pass
            raise
        run(f"SET LOCAL session_replication_role = {previous}")
        return
    if dialect != "sqlite":
        raise W365Error(f"guards_bypassed: no bypass for {dialect}")
    run("SELECT 1")  # let a Connection or Session begin its transaction
    if not in_transaction():
        raise W365Error("guards_bypassed: needs a transaction (DROP TRIGGER outside one would be permanent)")
    guards = run(f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                 f"AND substr(name, 1, {len(GUARD_PREFIX)}) = '{GUARD_PREFIX}' ORDER BY name")
    for name, _sql in guards:
        run(f'DROP TRIGGER "{name}"')
    try:
        yield
    finally:
        if in_transaction():  # else the rollback brought the triggers back
            for _name, sql in guards:
                # sqlite_master keeps "CREATE TRIGGER name ..." (normalised, IF NOT EXISTS dropped)
                run("CREATE TRIGGER IF NOT EXISTS " + sql[len("CREATE TRIGGER "):])
