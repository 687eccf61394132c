"""Small builders for test data (plain ORM rows; changes go through the services)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy.orm import Session

from w365.store.models import (
    QRB,
    BillingContract,
    ChangeBilling,
    Customer,
    Product,
    ProductKind,
    Provider,
    ProviderKind,
    Subscription,
    Tenant,
    UnitMapping,
)
from w365.billing.subscriptions import create_subscription

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)


def set_timezone(session: Session, tz: str) -> None:
    session.get(Tenant, 1).time_zone = tz  # type: ignore[union-attr]
    session.flush()


def add_unit(session: Session, code: str, months: int | None, name: str | None = None) -> None:
    if session.get(UnitMapping, code) is None:
        session.add(UnitMapping(code=code, name=name or code.title(), months=months))
        session.flush()


def provider(session: Session, kind: ProviderKind = ProviderKind.PARTNER_CENTER, name: str | None = None) -> Provider:
    p = Provider(name=name or f"{kind.value} provider", kind=kind, connection_id="partner_center" if kind == ProviderKind.PARTNER_CENTER else None)
    session.add(p)
    session.flush()
    return p


def product(session: Session, sku: str = "CFQ7TTC0LH18", kind: ProductKind = ProductKind.LICENSE, qrb: QRB = QRB.WINDOW, qrw: int | None = 7) -> Product:
    p = Product(sku=sku, name=f"Product {sku}", kind=kind, offer_id=sku, default_qrb=qrb, default_qrw_days=qrw)
    session.add(p)
    session.flush()
    return p


def customer(session: Session, name: str = "Fabrikam", **kw) -> Customer:  # type: ignore[no-untyped-def]
    c = Customer(name=name, created_at=NOW, **kw)
    session.add(c)
    session.flush()
    return c


def contract(
    session: Session,
    cust: Customer,
    *,
    start: date = date(2025, 12, 1),
    frequency: str = "MONTHLY",
    currency: str = "USD",
    end: date | None = None,
    term_months: int | None = 12,
    next_invoice_date: date | None = None,
    refunds_allowed: bool = False,
    change_billing: ChangeBilling = ChangeBilling.IMMEDIATE,
    auto_renew: bool = True,
    number: str | None = None,
) -> BillingContract:
    c = BillingContract(
        number=number or f"BC-{cust.id}-{start.isoformat()}-{frequency}",
        customer_id=cust.id, frequency=frequency, currency=currency, start_date=start, end_date=end,
        term_months=term_months, next_invoice_date=next_invoice_date or start, auto_renew=auto_renew,
        refunds_allowed=refunds_allowed, change_billing=change_billing, created_at=NOW,
    )
    session.add(c)
    session.flush()
    return c


def subscription(
    session: Session,
    contract_: BillingContract,
    *,
    prov: Provider | None = None,
    prod: Product | None = None,
    quantity: int = 10,
    price: str = "10.00",
    cost: str = "8.00",
    unit: str = "MONTHLY",
    currency: str | None = None,
    start: date | None = None,
    name: str = "M365 Business Basic",
    now: datetime = NOW,
    **kw,  # type: ignore[no-untyped-def]
) -> Subscription:
    prov = prov or provider(session, name=f"pc-{contract_.id}-{name}")
    prod = prod or product(session, sku=f"SKU-{contract_.id}-{name}")
    return create_subscription(
        session, contract=contract_, product=prod, provider=prov, name=name, quantity=quantity,
        selling_price=Decimal(price), cost_price=Decimal(cost), sales_unit=unit, currency=currency or contract_.currency,
        start_date=start or contract_.start_date, now=now, **kw,
    )


def fresh(session: Session) -> Session:
    """End the test's transaction and forget cached rows, so the next read sees what jobs (in
    their own sessions) committed; on SQLite a transaction reads one snapshot."""
    session.commit()
    session.expire_all()
    return session


def run_in_parallel(fn, workers: int = 2, timeout: float = 120):  # type: ignore[no-untyped-def]
    """Run ``fn()`` in ``workers`` threads at once; returns their results, re-raises an error."""
    import threading

    results, errors = [], []

    def target() -> None:
        try:
            results.append(fn())
        except Exception as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=target) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    if errors:
        raise errors[0]
    return results


def row_counts(store) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Rows in every table of the store: a refused input must leave them all unchanged."""
    from sqlalchemy import func, select

    from w365.store.models import Base

    with store.session() as s:
        return {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}
