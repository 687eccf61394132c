"""Subscriptions and their License Change Logs: creating one (with its activation LCL), writing
an LCL for a change, and reading them (SPEC S1-S8). ``w365.billing.changes`` decides what to write."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterator

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from w365.billing.change_rules import change_type_of, direction_of, kind_of
from w365.core import limits, tenant_time
from w365.core.ledger import State, state_of
from w365.core.money import check_currency
from w365.core.tenant_time import Direction
from w365.errors import NotFound, ValidationError
from w365.store.models import (
    OPEN_SLCL_STATUSES,
    QRB,
    BillingContract,
    ChangeSource,
    InvoiceLine,
    LicenseChangeLog,
    Product,
    Provider,
    ProviderKind,
    ProvisioningStatus,
    ScheduledLicenseChangeLog,
    Subscription,
    SubscriptionStatus,
    Tenant,
    UnitMapping,
)

log = logging.getLogger(__name__)

def get_tenant(session: Session) -> Tenant:
    tenant = session.get(Tenant, 1)
    if tenant is None:
        raise NotFound("the billing store has no tenant row; run `w365 db upgrade`")
    return tenant


def unit_months(session: Session, code: str) -> int | None:
    unit = session.get(UnitMapping, code)
    if unit is None:
        raise ValidationError(f"sales unit {code!r}", "is not in the unit mapping", "SPEC B5")
    return unit.months


def label(sub: Subscription) -> str:
    return f"subscription #{sub.id} ({sub.name})"


def is_billed(session: Session, subscription_id: int) -> bool:
    return bool(session.scalar(select(exists().where(InvoiceLine.subscription_id == subscription_id))))


def open_slcl(session: Session, subscription_id: int) -> ScheduledLicenseChangeLog | None:
    return session.scalars(
        select(ScheduledLicenseChangeLog).where(
            ScheduledLicenseChangeLog.subscription_id == subscription_id,
            ScheduledLicenseChangeLog.status.in_(OPEN_SLCL_STATUSES),
        )
    ).first()


@contextmanager
def refused_as(record: str) -> Iterator[None]:
    """A value out of ``w365.core.limits``' bounds, refused as a rule of the change service."""
    try:
        yield
    except limits.BadValue as exc:
        raise ValidationError(record, str(exc)) from None


# --------------------------------------------------------------------------------------------
# Creating


def create_subscription(
    session: Session,
    *,
    contract: BillingContract,
    product: Product,
    provider: Provider,
    name: str,
    quantity: int,
    selling_price: Decimal,
    cost_price: Decimal,
    sales_unit: str,
    currency: str,
    start_date: date,
    now: datetime,
    qrb: QRB | None = None,
    qrw_days: int | None = None,
    provider_subscription_id: str | None = None,
    provisioned_on: date | None = None,
    source: ChangeSource = ChangeSource.USER,
    usage_threshold: Decimal | None = None,
    markup_pct: Decimal | None = None,
    created_by: str | None = None,
) -> Subscription:
    """A new active subscription and its activation LCL, billed from ``start_date`` (SPEC S1, S3).
    Every value is checked against ``w365.core.limits`` first (issue 12)."""
    record = f"subscription {limits.show(name)}"
    with refused_as(record):
        limits.text(name, "name", limits.column_length(Subscription.name))
        quantity = limits.quantity(quantity)
        selling_price = limits.price(selling_price, "selling price")
        cost_price = limits.price(cost_price, "cost price")
        limits.subscription_value(quantity, selling_price, cost_price)
        limits.day(start_date, "start date")
        if provisioned_on is not None:
            limits.day(provisioned_on, "provisioned on")
        if qrw_days is not None:
            qrw_days = limits.qrw_days(qrw_days, "qrw days")
        if usage_threshold is not None:
            usage_threshold = limits.threshold(usage_threshold, "usage threshold")
        if markup_pct is not None:
            markup_pct = limits.markup_pct(markup_pct, "markup %")
        if provider_subscription_id is not None:
            limits.text(provider_subscription_id, "provider subscription id", limits.column_length(Subscription.provider_subscription_id))
    check_currency(currency)
    unit_months(session, sales_unit)
    tz = get_tenant(session).time_zone
    sub = Subscription(
        name=name,
        product_id=product.id,
        provider_id=provider.id,
        customer_id=contract.customer_id,
        contract_id=contract.id,
        quantity=quantity,
        selling_price=selling_price,
        cost_price=cost_price,
        sales_unit=sales_unit,
        currency=currency,
        price_list=contract.price_list,
        status=SubscriptionStatus.ACTIVE,
        qrb=qrb or product.default_qrb,
        qrw_days=qrw_days if qrw_days is not None else product.default_qrw_days,
        provider_subscription_id=provider_subscription_id,
        start_date=start_date,
        provisioned_on=provisioned_on or start_date,
        usage_threshold=usage_threshold,
        markup_pct=markup_pct if markup_pct is not None else Decimal("0"),
        created_at=now,
        updated_at=now,
    )
    session.add(sub)
    session.flush()
    after = state_of(sub)
    before = State(0, after.selling_price, after.cost_price, after.sales_unit, SubscriptionStatus.PENDING.value)
    write_lcl(
        session,
        sub,
        before,
        after,
        day=start_date,
        effective_at=tenant_time.scheduled_instant(start_date, Direction.POSITIVE, tz),
        source=source,
        provider_kind=provider.kind,
        now=now,
        created_by=created_by,
    )
    return sub


# --------------------------------------------------------------------------------------------
# Writing an LCL


def lcl_values(
    subscription_id: int,
    before: State,
    after: State,
    *,
    day: date,
    effective_at: datetime,
    source: ChangeSource,
    provider_kind: ProviderKind,
    now: datetime,
    slcl_id: int | None = None,
    apply_refund: bool = True,
    created_by: str | None = None,
    note: str | None = None,
    bill_from: date | None = None,
) -> dict:
    """The column values of one LCL: kind (C7), direction and bill-from day (S6), provisioning (S5).
    ``bill_from``: the scheduled change's own bill-from day, when it merges one (On Renewal)."""
    direction = direction_of(before, after)
    if source == ChangeSource.PROVIDER:
        prov, prov_at = ProvisioningStatus.PROVISIONED, effective_at
    elif provider_kind == ProviderKind.MANUAL:
        prov, prov_at = ProvisioningStatus.PENDING, None  # people provision it; alerted daily
    else:
        prov, prov_at = ProvisioningStatus.PROVISIONED, effective_at  # SPEC S5
    return dict(
        subscription_id=subscription_id,
        kind=kind_of(before, after),
        change_type=change_type_of(before, after),
        direction=direction.value,
        quantity_before=before.quantity,
        quantity_after=after.quantity,
        selling_price_before=before.selling_price,
        selling_price_after=after.selling_price,
        cost_price_before=before.cost_price,
        cost_price_after=after.cost_price,
        sales_unit_before=before.sales_unit,
        sales_unit_after=after.sales_unit,
        status_before=SubscriptionStatus(before.status),
        status_after=SubscriptionStatus(after.status),
        effective_date=day,
        effective_at=effective_at,
        bill_from=bill_from or tenant_time.bill_from(day, direction),
        apply_refund=apply_refund,
        source=source,
        slcl_id=slcl_id,
        provisioning_status=prov,
        provisioned_at=prov_at,
        note=note,
        created_by=created_by,
        created_at=now,
    )


def state_values(after: State, now: datetime) -> dict:
    """The subscription columns an LCL's "after" sets."""
    return dict(
        quantity=after.quantity,
        selling_price=after.selling_price,
        cost_price=after.cost_price,
        sales_unit=after.sales_unit,
        status=SubscriptionStatus(after.status),
        updated_at=now,
    )


def write_lcl(
    session: Session,
    sub: Subscription,
    before: State,
    after: State,
    *,
    flush: bool = True,
    **change: Any,
) -> LicenseChangeLog:
    """Append one LCL and set the subscription to its "after" values, in the caller's transaction.
    ``change``: the keyword arguments of :func:`lcl_values` (day, effective_at, source, ...)."""
    lcl = LicenseChangeLog(**lcl_values(sub.id, before, after, **change))
    for key, value in state_values(after, change["now"]).items():
        setattr(sub, key, value)
    session.add(lcl)
    if flush:
        session.flush()
    return lcl


def list_subscriptions(
    session: Session,
    *,
    contract: str | None = None,
    customer_id: int | None = None,
    statuses: list[SubscriptionStatus] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Subscriptions with their contract, customer and product, filtered (``w365 subscription
    list``, issue 13); each names its open scheduled change, if any."""
    from w365.store.models import Customer

    s, c, p, cu, sl = Subscription, BillingContract, Product, Customer, ScheduledLicenseChangeLog
    q = (
        select(s, c.number, cu.name, p.sku)
        .join(c, c.id == s.contract_id).join(cu, cu.id == s.customer_id).join(p, p.id == s.product_id)
        .order_by(s.id)
    )
    if contract is not None:
        q = q.where(c.number == contract)
    if customer_id is not None:
        q = q.where(s.customer_id == customer_id)
    if statuses:
        q = q.where(s.status.in_(statuses))
    if limit is not None:
        q = q.limit(limit)
    rows = session.execute(q).all()
    open_ = dict(session.execute(
        select(sl.subscription_id, sl.id).where(sl.status.in_(OPEN_SLCL_STATUSES), sl.subscription_id.in_([r[0].id for r in rows]))
    ).tuples().all()) if rows else {}
    return [{
        "id": sub.id, "name": sub.name, "contract": number, "customer_id": sub.customer_id, "customer": customer, "product": sku,
        "status": sub.status.value, "quantity": sub.quantity, "selling_price": sub.selling_price, "cost_price": sub.cost_price,
        "sales_unit": sub.sales_unit, "currency": sub.currency, "start_date": sub.start_date, "provider_id": sub.provider_id,
        "scheduled_change": open_.get(sub.id),
    } for sub, number, customer, sku in rows]
