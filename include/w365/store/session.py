"""Where the billing store is and how to open a unit of work on it.

The store is its own database, named by one URL (``W365_DATABASE_URL``). Inside Airflow it may
instead come from the Connection ``w365_billing`` (SPEC P4: credentials in Connections). The
default is a SQLite file beside Airflow's home, the embedded default.

Functions that change data take a ``Session``; the callers (job entry points, the CLI, tests)
open it with ``session_scope()``, one transaction per unit of work.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

CONNECTION_ID = "w365_billing"
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")


def default_database_url() -> str:
    return f"sqlite:///{airflow_home() / 'w365.db'}"


def _normalise(url: str) -> str:
    """Accept Airflow connection URIs (postgres://) as well as SQLAlchemy URLs."""
    if url.startswith("postgres://"):
        url = "postgresql+psycopg2://" + url[len("postgres://") :]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def _from_airflow_connection() -> str | None:
    """The store from the Airflow Connection ``w365_billing`` (env ``AIRFLOW_CONN_W365_BILLING``
    in URI or JSON form, or Airflow's secrets inside a task); None if there is none."""
    if not (os.environ.get("AIRFLOW_CONN_" + CONNECTION_ID.upper()) or os.environ.get("AIRFLOW_CTX_DAG_ID")
            or os.environ.get("W365_USE_AIRFLOW_CONNECTION")):
        return None
    from w365.connections import ConnectionNotFound, get_connection

    try:
        return get_connection(CONNECTION_ID).sqlalchemy_url()
    except ConnectionNotFound:
        return None


def database_url() -> str:
    url = os.environ.get("W365_DATABASE_URL") or _from_airflow_connection() or default_database_url()
    return _normalise(url)


def describe_url(url: str) -> str:
    """The URL with its password hidden, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event decide how transactions start (see below).
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # IMMEDIATE takes the write lock up front: two processes (LocalExecutor tasks) then
        # queue on busy_timeout instead of failing when both try to upgrade a read lock.
        # Read-only work (read_scope) begins DEFERRED and never blocks writers (WAL).
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


def get_engine(url: str | None = None) -> Engine:
    url = _normalise(url or database_url())
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            parsed = make_url(url)
            if parsed.get_backend_name() == "sqlite":
                if parsed.database and parsed.database != ":memory:":
                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                engine = create_engine(url, connect_args={"timeout": 60})
                _configure_sqlite(engine)
            else:
                kwargs = {"executemany_mode": "values_plus_batch"} if parsed.get_driver_name() == "psycopg2" else {}
                engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, **kwargs)
            _engines[url] = engine
    return engine


def dispose_engines() -> None:
    """Drop pooled connections (after a fork, or between tests)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _dispose_after_fork() -> None:
    for e in list(_engines.values()):
        e.dispose(close=False)


if hasattr(os, "register_at_fork"):
    # Connections must never cross a fork (LocalExecutor and Celery both fork).
    os.register_at_fork(after_in_child=_dispose_after_fork)


def session_factory(engine: Engine | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=engine or get_engine(), expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """One transaction: commit on success, roll back everything on any error."""
    session = session_factory(engine)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def read_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A read-only unit of work: on SQLite it takes no write lock, so pages and reports never
    hold up a billing run. Anything written here is rolled back."""
    engine = engine or get_engine()
    session = sessionmaker(bind=engine.execution_options(sqlite_begin="DEFERRED"), expire_on_commit=False)()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


@contextmanager
def snapshot_scope(session: Session) -> Iterator[Session]:
    """Reads that see one consistent snapshot of the store, taken now.

    PostgreSQL: a separate REPEATABLE READ, read-only transaction, so every query in it sees
    the same committed state even while other transactions commit (under READ COMMITTED each
    statement would see a newer one: read skew). Take it after the locks that matter are held
    by ``session``. SQLite: ``session`` itself, whose BEGIN IMMEDIATE already holds the single
    write lock, so nothing can commit while it reads.
    """
    if not is_postgres(session):
        yield session
        return
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    reader = sessionmaker(bind=engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True),
                          expire_on_commit=False)()
    try:
        yield reader
    finally:
        reader.rollback()
        reader.close()


def lock_contracts(session: Session, contract_ids: Iterable[int], *, skip_locked: bool = False) -> list[int]:
    """The per-contract lock that every job changing what a contract bills takes first: the
    invoice runs, the Scheduled Update merge, subscription changes, renewals. Returns the ids
    locked (with ``skip_locked``, those no one else held; otherwise all of them).

    Always in contract-id order, so two of them never wait on each other in a cycle.
    ``FOR NO KEY UPDATE``: rows that merely reference the contract (an invoice, a subscription, a
    metric snapshot: foreign keys take KEY SHARE) are not blocked by it. SQLite: every write
    transaction already holds the database's single write lock (BEGIN IMMEDIATE).
    """
    ids = sorted(set(contract_ids))
    if not ids or not is_postgres(session):
        return ids
    from w365.store.models import BillingContract

    got: list[int] = []
    for i in range(0, len(ids), 5000):
        got += session.scalars(
            select(BillingContract.id).where(BillingContract.id.in_(ids[i : i + 5000])).order_by(BillingContract.id)
            .with_for_update(key_share=True, skip_locked=skip_locked)
        )
    return got


def is_postgres(session_or_engine: Session | Engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"



# Advisory-lock namespaces.
LOCK_CONTRACT = 365_001
LOCK_SUBSCRIPTION = 365_002
LOCK_INVOICE_NUMBER = 365_003
