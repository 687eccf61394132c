"""Read-only queries of the billing store that only the pages need (the rest comes from
``w365.billing.scheduled_changes``, ``w365.billing.invoicing.export``): contract metrics, their trend, and what an invoice
line's change-log sources say. Every function takes a session from ``read_scope()``."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Iterable

from sqlalchemy import Numeric, cast, func, select, type_coerce
from sqlalchemy.orm import Session

from w365.store.models import (
    BillingContract,
    ContractMetricSnapshot,
    ContractStatus,
    Customer,
    LicenseChangeLog,
    ScheduledLicenseChangeLog,
    Subscription,
)
from w365.store.session import is_postgres
from w365.store.types import ExactDecimal
from w365.errors import NotFound
from w365.core.money import as_currency

TREND_DAYS = 365


def grouped_sums(session: Session, keys: list[Any], amounts: list[Any], *where: Any) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """keys -> (row count, sum of each amount), exactly: PostgreSQL sums NUMERIC in SQL; SQLite
    keeps money as text (a SQL sum would be a float), so there it is summed in Python."""
    out: dict[tuple[Any, ...], list[Any]] = {}
    if is_postgres(session):
        sums = [type_coerce(func.sum(a), ExactDecimal(18, 4)) for a in amounts]
        for row in session.execute(select(*keys, func.count(), *sums).where(*where).group_by(*keys)):
            out[tuple(row[: len(keys)])] = list(row[len(keys) :])
    else:
        for row in session.execute(select(*keys, *amounts).where(*where).execution_options(yield_per=20000)):
            acc = out.setdefault(tuple(row[: len(keys)]), [0] + [Decimal(0)] * len(amounts))
            acc[0] += 1
            for i, value in enumerate(row[len(keys) :], start=1):
                acc[i] += value
    return {k: tuple(v) for k, v in out.items()}


def contract_metrics(session: Session, *, limit: int = 200, customer: str | None = None) -> dict[str, Any]:
    """MRR/ACV per contract (highest MRR first) and totals of the active ones per currency."""
    c = BillingContract
    # Numerically on both backends (issue 13): SQLite keeps money as exact decimal text, which
    # sorts as text ("908.00" above "10536.50"); CAST(... AS NUMERIC) sorts it as a number there.
    # PostgreSQL's column is NUMERIC already. Only the order uses the cast, never the values shown.
    mrr_order = c.mrr if is_postgres(session) else cast(c.mrr, Numeric)
    q = (
        select(c.number, Customer.name, c.currency, c.status, c.frequency, c.mrr, c.acv, c.metrics_as_of)
        .join(Customer, Customer.id == c.customer_id)
        .order_by(mrr_order.desc().nulls_last(), c.number)
        .limit(limit)
    )
    if customer:
        q = q.where(Customer.name.ilike(f"%{customer}%"))
    rows = [
        {"contract": number, "customer": cust, "currency": cur, "status": st.value, "frequency": freq,
         "mrr": None if mrr is None else as_currency(mrr, cur), "acv": None if acv is None else as_currency(acv, cur),
         "as_of": as_of}
        for number, cust, cur, st, freq, mrr, acv, as_of in session.execute(q)
    ]
    sums = grouped_sums(session, [c.currency], [c.mrr, c.acv], c.status == ContractStatus.ACTIVE, c.mrr.is_not(None))
    totals = [
        {"currency": cur, "contracts": n, "mrr": as_currency(mrr, cur), "acv": as_currency(acv, cur)}
        for (cur,), (n, mrr, acv) in sorted(sums.items())
    ]
    count = session.scalar(select(func.count()).select_from(c)) or 0
    return {"rows": rows, "totals": totals, "count": count, "shown": len(rows)}


def _since(session: Session, days: int, *where: Any) -> date | None:
    last = session.scalar(select(func.max(ContractMetricSnapshot.as_of)).where(*where))
    return None if last is None else last - timedelta(days=days)


def metrics_trend(session: Session, *, days: int = TREND_DAYS) -> dict[str, dict[str, list[tuple[date, Decimal]]]]:
    """Total MRR and ACV per currency and snapshot date, over the last ``days`` days of snapshots."""
    s = ContractMetricSnapshot
    since = _since(session, days)
    out: dict[str, dict[str, list[tuple[date, Decimal]]]] = {"mrr": defaultdict(list), "acv": defaultdict(list)}
    if since is None:
        return out
    for (as_of, cur), (_n, mrr, acv) in sorted(grouped_sums(session, [s.as_of, s.currency], [s.mrr, s.acv], s.as_of > since).items()):
        out["mrr"][cur].append((as_of, mrr))
        out["acv"][cur].append((as_of, acv))
    return out


def contract_trend(session: Session, number: str, *, days: int = TREND_DAYS) -> dict[str, Any]:
    """One contract: its figures and its snapshots (newest first) over the last ``days`` days."""
    c = session.execute(
        select(BillingContract, Customer.name).join(Customer, Customer.id == BillingContract.customer_id)
        .where(BillingContract.number == number)
    ).first()
    if c is None:
        raise NotFound(f"no billing contract {number!r}")
    contract, customer = c
    s = ContractMetricSnapshot
    since = _since(session, days, s.contract_id == contract.id)
    snaps = [] if since is None else list(session.execute(
        select(s.as_of, s.currency, s.mrr, s.acv).where(s.contract_id == contract.id, s.as_of > since).order_by(s.as_of.desc())
    ))
    cur = contract.currency
    return {
        "contract": contract.number, "customer": customer, "currency": cur, "status": contract.status.value,
        "frequency": contract.frequency, "start_date": contract.start_date, "end_date": contract.end_date,
        "next_invoice_date": contract.next_invoice_date, "as_of": contract.metrics_as_of,
        "mrr": None if contract.mrr is None else as_currency(contract.mrr, cur),
        "acv": None if contract.acv is None else as_currency(contract.acv, cur),
        "snapshots": [{"as_of": d, "currency": sc, "mrr": as_currency(m, sc), "acv": as_currency(a, sc)} for d, sc, m, a in snaps],
        "series": {
            "mrr": {cur: [(d, m) for d, _sc, m, _a in snaps]},
            "acv": {cur: [(d, a) for d, _sc, _m, a in snaps]},
        },
    }


def lcl_sources(session: Session, lcl_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """What each license change log says: the change an invoice line bills (SPEC M3)."""
    ids = sorted(set(lcl_ids))
    out: dict[int, dict[str, Any]] = {}
    for i in range(0, len(ids), 1000):
        for l, sub_name in session.execute(
            select(LicenseChangeLog, Subscription.name).join(Subscription, Subscription.id == LicenseChangeLog.subscription_id)
            .where(LicenseChangeLog.id.in_(ids[i : i + 1000]))
        ):
            out[l.id] = {
                "id": l.id, "subscription": sub_name, "subscription_id": l.subscription_id, "kind": l.kind.value,
                "change_type": l.change_type.value, "source": l.source.value, "effective_date": l.effective_date,
                "bill_from": l.bill_from, "quantity": (l.quantity_before, l.quantity_after),
                "selling_price": (l.selling_price_before, l.selling_price_after),
                "sales_unit": (l.sales_unit_before, l.sales_unit_after),
                "status": (l.status_before.value, l.status_after.value), "slcl_id": l.slcl_id, "created_by": l.created_by,
            }
    return out


def slcl_statuses(session: Session, slcl_ids: Iterable[int]) -> dict[int, str]:
    ids = sorted(set(slcl_ids))
    if not ids:
        return {}
    q = select(ScheduledLicenseChangeLog.id, ScheduledLicenseChangeLog.status).where(ScheduledLicenseChangeLog.id.in_(ids))
    return {i: st.value for i, st in session.execute(q)}
