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


@pytest.mark.parametrize("store", ["postgres"], indirect=True)  # COPY is PostgreSQL's; SQLite uses executemany
def test_copy_blocks_streams_every_block_and_a_failing_producer_fails_the_copy(store, session):
    """Issue 15: ``copy_blocks`` (PostgreSQL's one COPY writer) sends block after block, formatted
    one ahead on a second thread; an error while making a block reaches the caller, and the
    transaction it rolls back keeps nothing of the blocks already sent."""
    from sqlalchemy import text

    # A plain table (a TEMP one lives on one pooled connection only), dropped at the end.
    session.execute(text("DROP TABLE IF EXISTS copy_probe"))
    session.execute(text("CREATE TABLE copy_probe (n integer, label text)"))

    def blocks(fail_after=None):
        for b in range(3):
            if b == fail_after:
                raise ValueError(f"block {b} cannot be made")
            yield [[str(b * 10 + i) for i in range(4)], [f"b{b}\\tx" if i == 0 else bulk.NULL for i in range(4)]]

    bulk.copy_blocks(session, "copy_probe", ["n", "label"], blocks())
    got = session.execute(text("SELECT n, label FROM copy_probe ORDER BY n")).all()
    assert [n for n, _ in got] == [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23]
    assert [label for n, label in got if n % 10 == 0] == ["b0\tx", "b1\tx", "b2\tx"] and got[1][1] is None
    session.commit()
    with pytest.raises(ValueError, match="block 2 cannot be made"):
        bulk.copy_blocks(session, "copy_probe", ["n", "label"], blocks(fail_after=2))
    session.rollback()
    assert session.execute(text("SELECT count(*) FROM copy_probe")).scalar() == 12
    session.execute(text("DROP TABLE copy_probe"))
    session.commit()
