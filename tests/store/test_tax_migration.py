"""Migration 0006 (SPEC I8, issue 16): a store at 0005 (the revision before: the invoice
document's addresses) holding issued invoices upgrades without a
changed row (tax 0, no code, an invoice: subtotal = total as before), 0002's guards cover the new
columns on both backends, and the downgrade refuses while credit notes or taxed lines exist."""

import os
from datetime import date
from decimal import Decimal

import pytest
from alembic import command
from sqlalchemy import MetaData, inspect, select, text
from sqlalchemy.exc import DBAPIError

import factories as f
from conftest import PG_ENV, Store
from w365 import store as w365_store
from w365.billing.invoicing.dispatcher import generate_full_cycle_invoices
from w365.store.admin import create_scratch_database, drop_database
from w365.store.models import Invoice
from w365.store.session import get_engine


def _alembic(url, action, revision):
    cfg = w365_store.alembic_config(url)
    with get_engine(url).begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, revision)


def _stored(conn, columns=None):
    """Every row of every table as the database holds it; with ``columns``, only those columns
    of each table (the ones it had before the upgrade)."""
    meta = MetaData()
    meta.reflect(conn)
    out = {}
    for t in meta.sorted_tables:
        if t.name == "alembic_version" or (columns is not None and t.name not in columns):
            continue
        cols = [t.c[n] for n in columns[t.name]] if columns is not None else list(t.c)
        out[t.name] = conn.execute(select(*cols).order_by(*t.primary_key.columns)).all()
    return out, {t.name: [c.name for c in t.c] for t in meta.sorted_tables}


@pytest.fixture
def old_url(store, tmp_path, monkeypatch):
    if store.is_postgres:
        url = create_scratch_database(os.environ[PG_ENV], f"w365_test_0006_{os.getpid()}")
    else:
        url = f"sqlite:///{tmp_path / 'old.db'}"
    monkeypatch.setenv("W365_DATABASE_URL", url)
    engine = get_engine(url)
    try:
        yield url
    finally:
        engine.dispose()
        if store.is_postgres:
            drop_database(url)


def test_i8_upgrade_leaves_issued_invoices_unchanged_and_guards_the_new_columns(store, old_url):
    """SPEC I8, M3: two invoices (INV-000001 130.00, INV-000002 for January) issued, the store
    taken down to 0005; the upgrade to 0006 changes no value of any row, the new columns read as tax 0,
    no code, an invoice, CN- and 1 (and credit notes from invoice 3 on); UPDATEs of the new columns of issued invoices are refused."""
    url, engine = old_url, get_engine(old_url)
    w365_store.upgrade(url)
    old = Store(store.backend, url, engine)
    with old.session() as s:
        c = f.contract(s, f.customer(s), start=date(2025, 12, 1))
        f.subscription(s, c, quantity=13, price="10.00")
        s.commit()
        generate_full_cycle_invoices("monthly", date(2026, 1, 1), engine=engine)
    _alembic(url, "downgrade", "0005")
    with engine.connect() as conn:
        before, columns = _stored(conn)
        assert [r.number for r in before["invoice"]] == ["INV-000001", "INV-000002"]
        assert "tax_total" not in columns["invoice"] and "tax_code" not in columns["customer"] and "tax_rate" not in columns
        assert "billing_city" in columns["customer"]  # 0005's, kept

    w365_store.upgrade(url, "0006")
    assert w365_store.current_revision(url) == "0006"
    with engine.connect() as conn:
        after, _ = _stored(conn, columns)
        assert after == before
        new = conn.execute(text("SELECT number, tax_total, document, corrects_invoice_id, tax_exempt_reference FROM invoice ORDER BY id")).all()
        assert [(n, Decimal(str(t)), d, ci, ref) for n, t, d, ci, ref in new] == [
            ("INV-000001", Decimal(0), "invoice", None, None), ("INV-000002", Decimal(0), "invoice", None, None)]
        lines = conn.execute(text("SELECT tax_code, tax_rate, tax_amount FROM invoice_line")).all()
        assert {(code, Decimal(str(rate)), Decimal(str(amount))) for code, rate, amount in lines} == {(None, Decimal(0), Decimal(0))}
        # Invoices numbered before 3 were issued when a negative correction was still an invoice.
        assert conn.execute(text("SELECT credit_note_prefix, next_credit_note_number, next_invoice_number, credit_notes_from "
                                 "FROM tenant")).one() == ("CN-", 1, 3, 3)
        for sql in ("UPDATE invoice SET tax_total = '1.00'", "UPDATE invoice SET document = 'credit_note'",
                    "UPDATE invoice_line SET tax_amount = '1.00'", "UPDATE invoice_line SET tax_code = 'VAT20'"):
            with pytest.raises(DBAPIError, match="issued and immutable"):
                conn.execute(text(sql))
            conn.rollback()
    with old.session() as s:
        invoices = s.scalars(select(Invoice).order_by(Invoice.id)).all()
        assert [(i.subtotal, i.tax_total, i.total) for i in invoices] == [
            (Decimal("130.00"), Decimal(0), Decimal("130.00")), (Decimal("130.00"), Decimal(0), Decimal("130.00"))]


def test_i8_downgrade_refuses_while_a_credit_note_exists(store, old_url):
    """SPEC I8: revision 0005 cannot hold a credit note: the downgrade says so and changes nothing."""
    url, engine = old_url, get_engine(old_url)
    w365_store.upgrade(url)
    old = Store(store.backend, url, engine)
    with old.session() as s:
        c = f.contract(s, f.customer(s), start=date(2025, 12, 1))
        f.subscription(s, c)
        s.commit()
        generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=engine)
    with engine.begin() as conn:  # a taxed line, written past the engine (the guards allow inserts)
        conn.execute(text("INSERT INTO tax_code (code, name) VALUES ('VAT20', 'VAT 20 %')"))
        inv_id = conn.execute(text("SELECT id FROM invoice")).scalar_one()
        conn.execute(text(
            "INSERT INTO invoice (number, sequence, contract_id, customer_id, kind, currency, issue_date, due_date, period_from, "
            "period_to, total, tax_total, document, corrects_invoice_id, payment_status, amount_paid, created_at) "
            "SELECT 'CN-000001', -1, contract_id, customer_id, 'change_log', currency, issue_date, due_date, period_from, period_to, "
            "'-12.00', '-2.00', 'credit_note', id, 'unpaid', '0', created_at FROM invoice WHERE id = :id"), {"id": inv_id})
    with pytest.raises(RuntimeError, match=r"cannot downgrade below 0006: 1 credit note\(s\) or taxed invoice line\(s\) exist"):
        _alembic(url, "downgrade", "0005")
    # Nothing changed: the refusal rolls back the whole downgrade, 0007's step (issue 16, delivery) too.
    assert w365_store.current_revision(url) == w365_store.head_revision() == "0007"
    assert inspect(engine).has_table("invoice_delivery")
