"""Set-based writes (db/bulk.py) land exactly what the ORM would, on SQLite and PostgreSQL, for
small updates (VALUES) and large ones (COPY into a scratch table): SPEC M1 money stays exact and a
value finer than its column is refused, never rounded."""

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError

import factories as f
from w365.store import bulk
from w365.store.models import Subscription, SubscriptionStatus
from w365.core.money import MoneyError

REFUSED = (MoneyError, StatementError)  # SQLite goes through the ORM, which wraps the column's own refusal


@pytest.mark.parametrize("count", [3, bulk.COPY_UPDATE_MIN + 7])
def test_m1_update_rows_writes_exact_values(store, session, count):
    cust = f.customer(session)
    c = f.contract(session, cust)
    subs = [f.subscription(session, c, name=f"Seat pack {i}") for i in range(count)]
    session.commit()
    now = datetime(2026, 3, 8, 10, 0, tzinfo=timezone.utc)
    bulk.update_rows(session, Subscription, [
        {"id": s.id, "quantity": 10 + i, "selling_price": Decimal("12.345678") + i, "status": SubscriptionStatus.SUSPENDED, "updated_at": now}
        for i, s in enumerate(subs)
    ])
    session.commit()
    session.expire_all()
    got = {s.id: s for s in session.scalars(select(Subscription))}
    for i, s in enumerate(subs):
        row = got[s.id]
        assert (row.quantity, row.selling_price, row.status) == (10 + i, Decimal("12.345678") + i, SubscriptionStatus.SUSPENDED)
        assert row.updated_at == now


def test_m1_bulk_writes_refuse_money_finer_than_the_column(store, session):
    cust = f.customer(session)
    sub = f.subscription(session, f.contract(session, cust))
    session.commit()
    row = {"id": sub.id, "selling_price": Decimal("1.1234567")}  # 7 places; the column keeps 6
    for count in (1, bulk.COPY_UPDATE_MIN):  # both ways an UPDATE goes
        with pytest.raises(REFUSED, match="more than 6 decimal places"):
            bulk.update_rows(session, Subscription, [row] * count)
        session.rollback()
    with pytest.raises(REFUSED, match="more than 6 decimal places"):
        bulk.insert_rows(session, Subscription, [{"name": "x", "selling_price": Decimal("0.0000001")}])
    session.rollback()
    assert session.scalar(select(Subscription.selling_price).where(Subscription.id == sub.id)) != Decimal("1.1234567")
