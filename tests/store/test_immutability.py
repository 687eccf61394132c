"""Issued invoices are immutable in the database (issue 11, SPEC M3, S3; migration 0002), on SQLite
and PostgreSQL: raw SQL cannot edit or delete an issued invoice, its lines or their LCL/SLCL links,
nor (PostgreSQL) TRUNCATE them; only the payment bookkeeping may change. Every refused statement
leaves the data as it was, and the transaction it ran in goes on and commits."""

from __future__ import annotations

import enum
import importlib.util
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from alembic import command
from sqlalchemy import MetaData, Table, select, text, update
from sqlalchemy.exc import DBAPIError

import factories as f
from conftest import PG_ENV, Store
from w365 import store as w365_store
from w365.orchestration import jobs
from w365.store.admin import create_scratch_database, drop_database, guards_bypassed
from w365.store.models import (
    Base,
    ChangeEffective,
    Invoice,
    InvoiceLine,
    InvoiceLineLCL,
    InvoiceLineSLCL,
    PaymentStatus,
)
from w365.store.session import get_engine
from w365.store.types import ExactDecimal
from w365.errors import W365Error
from w365.billing.invoicing.dispatcher import generate_full_cycle_invoices
from w365.billing.changes import ChangeRequest, change_subscription

UTC = timezone.utc
ISSUE = "issue 11: issued invoices are immutable"
GUARDED = ("invoice", "invoice_line", "invoice_line_lcl", "invoice_line_slcl", "license_change_log")


def _migration_0002() -> Any:
    path = w365_store.MIGRATIONS / "versions" / "0002_immutable_issued_invoices.py"
    spec = importlib.util.spec_from_file_location("w365_migration_0002", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


M0002 = _migration_0002()
BOOKKEEPING = M0002.INVOICE_BOOKKEEPING
ALLOWED = ", ".join(BOOKKEEPING)


@dataclass
class Issued:
    invoice_id: int
    number: str
    line_ids: list[int]
    lcl_link: tuple[int, int]
    slcl_link: tuple[int, int]
    other_customer_id: int


def issue(store, session) -> Issued:
    """One full-cycle invoice from the real engine: two lines (Dec 1-14 at 10, Dec 15-31 at 15,
    the second billing a scheduled change ahead of its merge), with LCL and SLCL links."""
    c = f.contract(session, f.customer(session), start=date(2025, 12, 1), number="BC-IMM")
    sub = f.subscription(session, c)
    change_subscription(session, sub.id, ChangeRequest(quantity=15, effective=ChangeEffective.CUSTOM, effective_date=date(2025, 12, 15)),
                        now=datetime(2025, 11, 20, tzinfo=UTC))
    other = f.customer(session, "Northwind")
    session.commit()
    report = generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    assert len(report.invoices) == 1
    f.fresh(session)
    inv = session.scalars(select(Invoice).where(Invoice.number == report.invoices[0].number)).one()
    line_ids = [l.id for l in inv.lines]
    lcl = session.execute(select(InvoiceLineLCL.invoice_line_id, InvoiceLineLCL.lcl_id).where(InvoiceLineLCL.invoice_line_id.in_(line_ids))).first()
    slcl = session.execute(select(InvoiceLineSLCL.invoice_line_id, InvoiceLineSLCL.slcl_id).where(InvoiceLineSLCL.invoice_line_id.in_(line_ids))).first()
    assert len(line_ids) == 2 and lcl and slcl
    result = Issued(inv.id, inv.number, line_ids, tuple(lcl), tuple(slcl), other.id)
    session.commit()
    return result


def snapshot(session) -> dict[str, list[Any]]:
    """Every row of every table, in primary-key order."""
    return {t.name: session.execute(select(t).order_by(*t.primary_key.columns)).all() for t in Base.metadata.sorted_tables}


def _primary(exc: DBAPIError) -> str:
    orig = exc.orig
    diag = getattr(orig, "diag", None)  # psycopg2: the message without PL/pgSQL's CONTEXT lines
    return diag.message_primary if diag is not None else str(orig)


def refused(store, session, stmt: Any, params: dict | None = None, *, sqlite: str, postgres: str) -> str:
    """Run ``stmt`` in a savepoint: it must be refused with a one-line message matching the
    backend's pattern, leave every row as it was and let the transaction go on and commit."""
    before = snapshot(session)
    with pytest.raises(DBAPIError) as err:
        with session.begin_nested():
            session.execute(text(stmt) if isinstance(stmt, str) else stmt, params or {})
    message = _primary(err.value)
    assert "\n" not in message.strip(), message
    assert re.search(postgres if store.is_postgres else sqlite, message), message
    assert snapshot(session) == before  # the same transaction, after the refusal
    session.commit()
    with store.session() as other:
        assert snapshot(other) == before  # and what was committed
    return message


def _other_value(column: Any, value: Any) -> Any:
    """A different value of the column's type and size (so the database gets as far as the guard)."""
    if isinstance(value, enum.Enum):
        return next(m for m in type(value) if m != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1000
    if isinstance(value, Decimal):
        return value + 1
    if isinstance(value, (date, datetime)):
        return value + timedelta(days=1)
    if isinstance(value, str):
        return value[:-1] + ("X" if value[-1:] != "X" else "Y")
    assert value is None, (column, value)
    python_type = Decimal if isinstance(column.type, ExactDecimal) else column.type.python_type
    return {str: "EUR", Decimal: Decimal("1.5"), int: 1, date: date(2026, 1, 1)}[python_type]


# --- invoice ------------------------------------------------------------------------------------

@pytest.mark.parametrize("column,value", [
    ("total", "'0.01'"), ("number", "'INV-999999'"), ("customer_id", None), ("currency", "'EUR'"),
])
def test_invoice_header_update_refused(store, session, column, value):
    """issue 11: issued invoices are immutable (SPEC M3): total, number, customer and currency of
    an issued invoice cannot be changed, with a message saying what may change instead."""
    inv = issue(store, session)
    value = value or str(inv.other_customer_id)  # an existing customer: only the guard refuses
    message = refused(store, session, f"UPDATE invoice SET {column} = {value} WHERE id = :i", {"i": inv.invoice_id},
                      sqlite=f"^invoice is issued and immutable: only {ALLOWED} may change$",
                      postgres=f"^invoice {inv.number} is issued and immutable: only {ALLOWED} may change, not {column}$")
    assert message.startswith("invoice ")


def test_every_frozen_invoice_column_is_refused(store, session):
    """issue 11: issued invoices are immutable (SPEC M3): every invoice column but the bookkeeping
    ones is frozen, also one added later (this walks the model's columns)."""
    inv = issue(store, session)
    table: Table = Invoice.__table__
    row = session.execute(select(table).where(table.c.id == inv.invoice_id)).mappings().one()
    for column in [c for c in table.columns if c.name not in BOOKKEEPING]:
        stmt = update(table).where(table.c.id == inv.invoice_id).values({column.name: _other_value(column, row[column.name])})
        refused(store, session, stmt, sqlite="^invoice is issued and immutable: only ",
                postgres=f"^invoice {inv.number} is issued and immutable: only {ALLOWED} may change, not {column.name}$")


def test_bookkeeping_columns_may_change(store, session):
    """issue 11: issued invoices are immutable, but for the payment bookkeeping (SPEC M3, P2):
    payment_status, amount_paid and paid_on may change; an UPDATE that changes nothing passes."""
    inv = issue(store, session)
    session.execute(text("UPDATE invoice SET payment_status = 'paid', amount_paid = '127.42', paid_on = '2026-01-05' "
                         "WHERE id = :i"), {"i": inv.invoice_id})
    session.execute(text("UPDATE invoice SET total = total, number = number WHERE id = :i"), {"i": inv.invoice_id})
    session.commit()
    got = f.fresh(session).get(Invoice, inv.invoice_id)
    assert (got.payment_status, got.amount_paid, got.paid_on) == (PaymentStatus.PAID, Decimal("127.42"), date(2026, 1, 5))
    assert (got.number, got.total) == (inv.number, Decimal("127.42"))
    # one at a time, too
    for column, value in (("payment_status", "'unpaid'"), ("amount_paid", "'0'"), ("paid_on", "NULL")):
        session.execute(text(f"UPDATE invoice SET {column} = {value} WHERE id = :i"), {"i": inv.invoice_id})
    session.commit()
    got = f.fresh(session).get(Invoice, inv.invoice_id)
    assert (got.payment_status, got.amount_paid, got.paid_on) == (PaymentStatus.UNPAID, Decimal("0"), None)


def test_bookkeeping_columns_named_in_one_place(store):
    """issue 11: issued invoices are immutable: the bookkeeping columns are one constant of
    migration 0002, and the Invoice model's docstring names the same ones (SPEC M3)."""
    assert BOOKKEEPING == ("payment_status", "amount_paid", "paid_on")
    assert set(BOOKKEEPING) <= {c.name for c in Invoice.__table__.columns}
    for column in BOOKKEEPING:
        assert f"``{column}``" in Invoice.__doc__


def test_invoice_delete_refused(store, session):
    """issue 11: issued invoices are immutable (SPEC M3): an issued invoice cannot be deleted."""
    inv = issue(store, session)
    refused(store, session, "DELETE FROM invoice WHERE id = :i", {"i": inv.invoice_id},
            sqlite="^invoice is issued and immutable: it cannot be deleted$",
            postgres=f"^invoice {inv.number} is issued and immutable: it cannot be deleted$")


# --- lines --------------------------------------------------------------------------------------

@pytest.mark.parametrize("column,value", [("description", "'edited'"), ("amount", "'0.01'"), ("quantity", "'99'")])
def test_line_update_refused(store, session, column, value):
    """issue 11: issued invoices are immutable (SPEC M3): a line's description, amount and
    quantity cannot be changed (0001 left the description editable)."""
    inv = issue(store, session)
    refused(store, session, f"UPDATE invoice_line SET {column} = {value} WHERE id = :i", {"i": inv.line_ids[1]},
            sqlite="^invoice is issued and immutable: its lines cannot change$",
            postgres=f"^invoice {inv.number} is issued and immutable: its line 2 cannot change \\({column}\\)$")


def test_every_line_column_is_refused(store, session):
    """issue 11: issued invoices are immutable (SPEC M3): no column of an issued line may change,
    also one added later (this walks the model's columns)."""
    inv = issue(store, session)
    table: Table = InvoiceLine.__table__
    row = session.execute(select(table).where(table.c.id == inv.line_ids[0])).mappings().one()
    for column in table.columns:
        stmt = update(table).where(table.c.id == inv.line_ids[0]).values({column.name: _other_value(column, row[column.name])})
        refused(store, session, stmt, sqlite="^invoice is issued and immutable: its lines cannot change$",
                postgres=f"^invoice {inv.number} is issued and immutable: its line 1 cannot change \\({column.name}\\)$")


def test_line_delete_refused(store, session):
    """issue 11: issued invoices are immutable (SPEC M3): a line cannot be deleted, nor all of
    them (SQLite's DELETE without WHERE fires the row triggers)."""
    inv = issue(store, session)
    for sql in ("DELETE FROM invoice_line WHERE id = :i", "DELETE FROM invoice_line"):
        refused(store, session, sql, {"i": inv.line_ids[0]},
                sqlite="^invoice is issued and immutable: its lines cannot be deleted$",
                postgres=f"^invoice {inv.number} is issued and immutable: its line \\d cannot be deleted$")


@pytest.mark.parametrize("table", ["invoice", "invoice_line"])
def test_insert_cannot_replace_an_issued_row(store, session, table):
    """issue 11: issued invoices are immutable (SPEC M3): an INSERT cannot overwrite an issued
    invoice or line either: SQLite's INSERT OR REPLACE (whose delete fires no DELETE trigger) and
    PostgreSQL's INSERT ... ON CONFLICT DO UPDATE (which fires the UPDATE guard) are refused."""
    inv = issue(store, session)
    t: Table = Base.metadata.tables[table]
    row = dict(session.execute(select(t).where(t.c.id == (inv.invoice_id if table == "invoice" else inv.line_ids[0]))).mappings().one())
    changed = {**row, ("total" if table == "invoice" else "amount"): Decimal("0.01")}
    if store.is_postgres:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        ins = pg_insert(t).values(changed)
        stmt = ins.on_conflict_do_update(index_elements=[t.c.id], set_={c: ins.excluded[c] for c in changed if c != "id"})
    else:
        stmt = t.insert().prefix_with("OR REPLACE").values(changed)
    what = "it" if table == "invoice" else "its lines"
    refused(store, session, stmt, sqlite=f"^invoice is issued and immutable: no INSERT may replace {what} \\(a row with the same key exists\\)$",
            postgres=f"^invoice {inv.number} is issued and immutable: ")
    # Another key than the id (the invoice number, the line's invoice and line number), too.
    other = {**changed, "id": 9999}
    if not store.is_postgres:
        refused(store, session, t.insert().prefix_with("OR REPLACE").values(other),
                sqlite="no INSERT may replace", postgres="-")


# --- links --------------------------------------------------------------------------------------

@pytest.mark.parametrize("table,other", [("invoice_line_lcl", "lcl_id"), ("invoice_line_slcl", "slcl_id")])
@pytest.mark.parametrize("verb", ["update", "delete"])
def test_link_rows_refused(store, session, table, other, verb):
    """issue 11: issued invoices are immutable (SPEC M3, S2): what a line bills (its LCL and SLCL
    links, an LCL's "invoiced by") cannot be changed or deleted."""
    inv = issue(store, session)
    line_id, other_id = inv.lcl_link if table == "invoice_line_lcl" else inv.slcl_link
    line_no = inv.line_ids.index(line_id) + 1
    where = f"invoice_line_id = {line_id} AND {other} = {other_id}"
    sql = f"UPDATE {table} SET {other} = {other} + 1000 WHERE {where}" if verb == "update" else f"DELETE FROM {table} WHERE {where}"
    done = verb + "d"
    refused(store, session, sql,
            sqlite=f"^invoice is issued and immutable: its {table} links cannot be {done}$",
            postgres=f"^invoice {inv.number} is issued and immutable: the {table} link of its line {line_no} "
                     f"\\({other} {other_id}\\) cannot be {done}$")


# --- TRUNCATE (PostgreSQL) -----------------------------------------------------------------------

@pytest.mark.parametrize("sql,table", [
    ("TRUNCATE invoice_line_lcl", "invoice_line_lcl"),
    ("TRUNCATE invoice_line_slcl", "invoice_line_slcl"),
    ("TRUNCATE invoice_line_lcl, invoice_line_slcl, invoice_line", None),
    # every table that references invoice in the list (invoice_delivery, issue 16), else PostgreSQL's
    # foreign-key check refuses it before the guard is asked
    ("TRUNCATE invoice_delivery, invoice_line_lcl, invoice_line_slcl, invoice_line, invoice", None),
    ("TRUNCATE invoice_line CASCADE", None),
    ("TRUNCATE invoice CASCADE", None),
    ("TRUNCATE license_change_log CASCADE", None),
    ("TRUNCATE billing_contract CASCADE", None),
    ("TRUNCATE customer CASCADE", None),
    ("TRUNCATE subscription RESTART IDENTITY CASCADE", None),
])
@pytest.mark.parametrize("store", ["postgres"], indirect=True)  # TRUNCATE is PostgreSQL's
def test_truncate_refused_on_postgres(store, session, sql, table):
    """issue 11: issued invoices are immutable (SPEC M3, S3): TRUNCATE passes row triggers, so
    PostgreSQL refuses it on the guarded tables, also when it arrives by CASCADE from a table they
    reference. (SQLite has no TRUNCATE; its DELETE without WHERE fires the row triggers.)"""
    issue(store, session)
    pattern = f"^TRUNCATE of ({table or '|'.join(GUARDED)}) \\(directly or by CASCADE\\) refused: "
    message = refused(store, session, sql, sqlite="-", postgres=pattern)
    assert re.search(r"refused: (issued invoices are immutable|license_change_log is append-only \(SPEC S3\)) "
                     r"\(administrators: w365.store.admin.guards_bypassed\)$", message), message


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_unguarded_tables_still_truncate_on_postgres(store, session):
    """issue 11: issued invoices are immutable, and only they: a table no issued invoice depends
    on (usage records, job exceptions) still truncates (bench/usage_load.py does)."""
    issue(store, session)
    session.execute(text("TRUNCATE usage_record, job_exception, alert_sent"))
    session.rollback()


# --- what must keep working ---------------------------------------------------------------------

def test_payment_status_job_still_updates_issued_invoices(store, session, tmp_path):
    """issue 11: issued invoices are immutable, but the Update Payment Status job (SPEC P2) still
    sets payment_status, amount_paid and paid_on on them (ORM update of those columns only)."""
    inv = issue(store, session)
    path = tmp_path / "payments.csv"
    path.write_text(f"invoice_number,status,amount_paid,paid_on\n{inv.number},partially_paid,100.00,2026-01-05\n")
    report = jobs.run("update_payment_status", "2026-01-10", path=str(path))
    assert [u["invoice"] for u in report["updated"]] == [inv.number]
    got = f.fresh(session).get(Invoice, inv.invoice_id)
    assert (got.payment_status, got.amount_paid, got.paid_on) == (PaymentStatus.PARTIALLY_PAID, Decimal("100.00"), date(2026, 1, 5))
    path.write_text(f"invoice_number,status,amount_paid,paid_on\n{inv.number},paid,127.42,2026-01-07\n")
    jobs.run("update_payment_status", "2026-01-10", path=str(path))
    got = f.fresh(session).get(Invoice, inv.invoice_id)
    assert (got.payment_status, got.amount_paid, got.paid_on, got.total) == (PaymentStatus.PAID, Decimal("127.42"), date(2026, 1, 7), Decimal("127.42"))


def _guard_triggers(session) -> list[Any]:
    if session.get_bind().dialect.name == "postgresql":
        sql = ("SELECT tgname, tgrelid::regclass::text, tgenabled FROM pg_trigger "
               "WHERE NOT tgisinternal AND tgname LIKE 'guard%' ORDER BY 1")
    else:
        sql = "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY 1"
    return session.execute(text(sql)).all()


def test_administrator_bypass_wipes_and_the_guards_come_back(store, session):
    """issue 11: issued invoices are immutable; administrators and tests wipe a store through the
    one bypass, w365.store.admin.guards_bypassed, which ends with its block (SPEC M3, S3)."""
    inv = issue(store, session)
    triggers = _guard_triggers(session)
    # PostgreSQL: invoice, line, 2 links, LCL (0001), 5 TRUNCATE. SQLite: one per table and verb, 2 replace guards.
    assert len(triggers) == (10 if store.is_postgres else 12)
    with guards_bypassed(session):
        if store.is_postgres:
            session.execute(text("TRUNCATE customer RESTART IDENTITY CASCADE"))
        else:
            for table in ("invoice_line_lcl", "invoice_line_slcl", "invoice_line", "invoice", "license_change_log"):
                session.execute(text(f"DELETE FROM {table}"))
        assert session.scalar(text("SELECT count(*) FROM invoice")) == 0
    session.rollback()
    assert _guard_triggers(session) == triggers
    assert session.scalar(text("SELECT count(*) FROM invoice")) == 1
    # In the same transaction, once the block is over, the guards refuse again.
    with guards_bypassed(session):
        session.execute(text("DELETE FROM invoice_line_slcl"))
    refused(store, session, "DELETE FROM invoice WHERE id = :i", {"i": inv.invoice_id},
            sqlite="cannot be deleted$", postgres="cannot be deleted$")  # commits the bypassed delete too
    assert _guard_triggers(session) == triggers
    assert session.scalar(text("SELECT count(*) FROM invoice_line_slcl")) == 0
    assert session.scalar(text("SELECT count(*) FROM invoice_line_lcl")) > 0
    session.rollback()
    # Works on a raw DBAPI connection too (bench/full_cycle.py), and refuses to run outside a transaction.
    raw = store.engine.raw_connection()
    try:
        if not store.is_postgres:  # sqlite3 here runs in autocommit mode until told BEGIN
            with pytest.raises(W365Error, match="needs a transaction"):
                with guards_bypassed(raw):
                    pass
            raw.cursor().execute("BEGIN")
        with guards_bypassed(raw):
            raw.cursor().execute("DELETE FROM invoice_line_lcl")
        raw.rollback()
    finally:
        raw.close()
    with store.session() as other:
        assert other.scalar(text("SELECT count(*) FROM invoice_line_lcl")) > 0
        assert _guard_triggers(other) == triggers
    if store.is_postgres:  # SET LOCAL outside a transaction would do nothing: refused, not ignored
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as auto:
            with pytest.raises(W365Error, match="needs a transaction"):
                with guards_bypassed(auto):
                    pass


# --- the migration ------------------------------------------------------------------------------

def _alembic(url: str, action: str, revision: str) -> None:
    cfg = w365_store.alembic_config(url)
    with get_engine(url).begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, revision)


def _stored(conn: Any) -> dict[str, list[Any]]:
    """Every row of every table as the database holds it (reflected, not the models: a store at
    an older revision lacks the columns later migrations add, e.g. 0003's on ``customer``)."""
    meta = MetaData()
    meta.reflect(conn)
    return {t.name: conn.execute(select(t).order_by(*t.primary_key.columns)).all()
            for t in meta.sorted_tables if t.name != "alembic_version"}


def test_migration_upgrades_a_0001_store_with_invoices_and_downgrades(store, tmp_path, monkeypatch):
    """issue 11: issued invoices are immutable: `w365 db upgrade` brings a 0001 store holding
    invoices to 0002 without changing a row, after which the guards hold (SPEC M3, S3); the
    downgrade restores 0001's guards exactly, and upgrading again works. (The invoices are
    issued by today's models at the head and the store taken down to 0001, since the models
    may have columns 0001 lacks; issue 12.)"""
    if store.is_postgres:
        url = create_scratch_database(os.environ[PG_ENV], "w365_test_0002")
    else:
        url = f"sqlite:///{tmp_path / 'old.db'}"
    monkeypatch.setenv("W365_DATABASE_URL", url)
    engine = get_engine(url)
    try:
        w365_store.upgrade(url)
        old = Store(store.backend, url, engine)
        with old.session() as s:
            issue(old, s)
        _alembic(url, "downgrade", "0001")
        assert w365_store.current_revision(url) == "0001"
        with engine.connect() as c:
            before = _stored(c)
            assert len(before["invoice"]) == 1 and len(before["invoice_line"]) == 2 and before["invoice_line_slcl"]

        w365_store.upgrade(url, "0002")  # what `w365 db upgrade` ran when 0002 was the head
        assert w365_store.current_revision(url) == "0002"
        with engine.connect() as c:
            assert _stored(c) == before
            with pytest.raises(DBAPIError, match="issued and immutable"):
                c.execute(text("UPDATE invoice SET total = '1.00'"))
            c.rollback()
            with pytest.raises(DBAPIError, match="issued and immutable"):
                c.execute(text("UPDATE invoice_line SET description = 'x'"))
            c.rollback()

        _alembic(url, "downgrade", "0001")
        assert w365_store.current_revision(url) == "0001"
        with engine.connect() as c:
            assert _stored(c) == before
            # 0001's guards: the line amount frozen, the description (and the invoice) not.
            with pytest.raises(DBAPIError, match="invoice lines are immutable once issued"):
                c.execute(text("UPDATE invoice_line SET amount = '1.00'"))
            c.rollback()
            with pytest.raises(DBAPIError, match="append-only"):
                c.execute(text("DELETE FROM license_change_log"))
            c.rollback()
            c.execute(text("UPDATE invoice_line SET description = 'x'"))
            c.execute(text("UPDATE invoice SET total = '1.00'"))
            c.rollback()
            if store.is_postgres:
                assert c.scalar(text("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'guard_truncate%'")) == 0
                assert c.scalar(text("SELECT count(*) FROM pg_proc WHERE proname LIKE 'w365_guard%'")) == 2
            else:
                assert c.scalar(text("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'")) == 4

        w365_store.upgrade(url, "0002")
        with engine.connect() as c:
            assert _stored(c) == before
            with pytest.raises(DBAPIError, match="issued and immutable"):
                c.execute(text("DELETE FROM invoice_line_lcl"))
            c.rollback()
        w365_store.upgrade(url)  # on to the head
        assert w365_store.current_revision(url) == w365_store.head_revision()
    finally:
        engine.dispose()
        if store.is_postgres:
            drop_database(url)
