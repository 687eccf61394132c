"""The billing store: Alembic owns the schema (issue 2), and the constraints that protect money
and idempotency live in the database (SPEC M1, S3, C8, J6), on SQLite and PostgreSQL."""

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

import factories as f
from w365 import store as w365_store
from w365.store.models import (
    Base,
    ChangeEffective,
    Invoice,
    InvoiceKind,
    LicenseChangeLog,
    ProductPrice,
    ScheduledLicenseChangeLog,
    SLCLAction,
    SLCLStatus,
    Subscription,
)


def test_migrations_match_models(store):
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
    assert w365_store.current_revision(store.url) == w365_store.head_revision()


def test_m1_money_round_trips_exactly(store, session):
    cust = f.customer(session)
    c = f.contract(session, cust)
    # The largest price w365.core.limits accepts (issue 12) and the smallest step.
    sub = f.subscription(session, c, price="999999999.999999", cost="0.000001", quantity=1)
    # The column itself holds 18 digits: a float would lose some.
    row = ProductPrice(product_id=sub.product_id, sales_unit="MONTHLY", currency="USD", cost_price=Decimal("0.000001"),
                       selling_price=Decimal("123456789012.123456"), effective_from=date(2026, 1, 1))
    session.add(row)
    session.commit()
    session.expire_all()
    got = session.get(Subscription, sub.id)
    assert got.selling_price == Decimal("999999999.999999")
    assert got.cost_price == Decimal("0.000001")
    assert session.get(ProductPrice, row.id).selling_price == Decimal("123456789012.123456")
    assert isinstance(got.created_at, datetime) and got.created_at.tzinfo is not None


def test_m1_issue12_sqlite_refuses_what_postgresql_would_numeric_overflow(store, session):
    """issue 12, SPEC M1: a number wider than its NUMERIC column is refused before the statement
    runs, with the same message on SQLite (which would store it) as on PostgreSQL."""
    from sqlalchemy.exc import StatementError

    sub = f.subscription(session, f.contract(session, f.customer(session)))
    session.commit()
    session.add(ProductPrice(product_id=sub.product_id, sales_unit="MONTHLY", currency="USD", cost_price=Decimal("0"),
                             selling_price=Decimal("1E+12"), effective_from=date(2026, 1, 1)))
    with pytest.raises(StatementError) as exc:
        session.flush()
    session.rollback()
    assert str(exc.value.orig) == ("1E+12 does not fit NUMERIC(18, 6): at most 12 digits before the decimal point")
    assert session.scalar(select(func.count()).select_from(ProductPrice)) == 0


def test_s3_license_change_log_is_append_only(store, session):
    cust = f.customer(session)
    sub = f.subscription(session, f.contract(session, cust))
    session.commit()
    lcl_id = session.scalar(select(LicenseChangeLog.id).where(LicenseChangeLog.subscription_id == sub.id))
    with pytest.raises(DBAPIError, match="append-only"):
        session.execute(text("UPDATE license_change_log SET quantity_after = 99 WHERE id = :i"), {"i": lcl_id})
    session.rollback()
    with pytest.raises(DBAPIError, match="append-only"):
        session.execute(text("DELETE FROM license_change_log WHERE id = :i"), {"i": lcl_id})
    session.rollback()
    # Provisioning bookkeeping may still change.
    session.execute(text("UPDATE license_change_log SET provisioning_status = 'failed' WHERE id = :i"), {"i": lcl_id})
    session.commit()


def _invoice(contract, seq, kind=InvoiceKind.FULL_CYCLE, period_from=date(2025, 12, 1)):
    return Invoice(
        number=f"INV-{seq}", sequence=seq, contract_id=contract.id, customer_id=contract.customer_id, kind=kind,
        currency="USD", issue_date=period_from, due_date=period_from, period_from=period_from,
        period_to=date(2025, 12, 31), total=Decimal("0"),
    )


def test_j6_one_full_cycle_invoice_per_contract_and_period(store, session):
    c = f.contract(session, f.customer(session))
    session.add(_invoice(c, 1))
    session.commit()
    session.add(_invoice(c, 2))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
    session.add(_invoice(c, 3, kind=InvoiceKind.CHANGE_LOG))  # another kind for the same period is fine
    session.commit()


def _slcl(sub, status=SLCLStatus.PENDING):
    when = datetime(2026, 2, 1, 0, 5, tzinfo=timezone.utc)
    return ScheduledLicenseChangeLog(
        subscription_id=sub.id, status=status, action=SLCLAction.CHANGE, change_effective=ChangeEffective.CUSTOM,
        quantity=12, currency="USD", direction="positive", effective_date=date(2026, 2, 1), provision_on=date(2026, 2, 1),
        scheduled_for=when, bill_from=date(2026, 2, 1),
    )


def test_c8_database_allows_one_open_slcl_per_subscription(store, session):
    sub = f.subscription(session, f.contract(session, f.customer(session)))
    session.add(_slcl(sub))
    session.commit()
    session.add(_slcl(sub, SLCLStatus.MERGE_FAILED))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
    session.add(_slcl(sub, SLCLStatus.ARCHIVED))  # closed ones do not count
    session.commit()


def test_subscription_customer_must_be_its_contracts_customer(store, session):
    a, b = f.customer(session, "A"), f.customer(session, "B")
    sub = f.subscription(session, f.contract(session, a))
    session.commit()
    with pytest.raises(IntegrityError):
        session.execute(text("UPDATE subscription SET customer_id = :b WHERE id = :s"), {"b": b.id, "s": sub.id})
        session.commit()
    session.rollback()


def test_m1_negative_prices_refused_by_the_database(store, session):
    sub = f.subscription(session, f.contract(session, f.customer(session)))
    session.commit()
    with pytest.raises(IntegrityError):
        session.execute(text("UPDATE subscription SET selling_price = '-1.00' WHERE id = :s"), {"s": sub.id})
        session.commit()
    session.rollback()


def test_store_url_from_the_w365_billing_connection(monkeypatch):
    """Issue 2 / SPEC P4: W365_DATABASE_URL first, else the Airflow Connection w365_billing (its
    environment form, URI or JSON), else a SQLite file beside Airflow's home."""
    from w365.store.session import database_url

    monkeypatch.delenv("W365_DATABASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", "/srv/airflow")
    monkeypatch.delenv("AIRFLOW_CONN_W365_BILLING", raising=False)
    assert database_url() == "sqlite:////srv/airflow/w365.db"
    monkeypatch.setenv("AIRFLOW_CONN_W365_BILLING", "postgresql://w365:s%40cret@postgres:5432/w365")
    assert database_url() == "postgresql+psycopg2://w365:s%40cret@postgres:5432/w365"
    monkeypatch.setenv("AIRFLOW_CONN_W365_BILLING", '{"conn_type": "postgres", "host": "db", "login": "u", "password": "pw", "port": 5433, "schema": "w365"}')
    assert database_url() == "postgresql+psycopg2://u:pw@db:5433/w365"
    monkeypatch.setenv("W365_DATABASE_URL", "sqlite:////tmp/x.db")
    assert database_url() == "sqlite:////tmp/x.db"
