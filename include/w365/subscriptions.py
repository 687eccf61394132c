"""Changing subscriptions: the one entry point for every change (SPEC S1-S9, C1-C10).

``change_subscription`` validates a request and then either writes a License Change Log now
(Effective = Immediately, or Custom with today's date) or schedules an SLCL (Custom with a future
date, or On Renewal). Nothing here reads the clock: callers pass ``now``.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Iterator, Optional

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from w365 import limits, tenant_time
from w365.calendar import BillingIntervalDetail
from w365.db.models import (
    OPEN_SLCL_STATUSES,
    QRB,
    BillingContract,
    ChangeEffective,
    ChangeSource,
    ChangeType,
    ContractStatus,
    InvoiceLine,
    LCLKind,
    LicenseChangeLog,
    Product,
    ProductKind,
    Provider,
    ProviderKind,
    ProvisioningStatus,
    ScheduledLicenseChangeLog,
    SLCLAction,
    SLCLStatus,
    Subscription,
    SubscriptionStatus,
    Tenant,
    UnitMapping,
)
from w365.db.session import lock_contracts
from w365.errors import NotFound, ValidationError
from w365.ledger import State, state_of
from w365.money import check_currency
from w365.tenant_time import Direction

log = logging.getLogger(__name__)

ACTIONS = ("change", "activate", "deactivate", "suspend", "reactivate")
# A request's action as a scheduled change stores it (a reactivation is an activation).
SLCL_ACTIONS = {"activate": SLCLAction.ACTIVATE, "reactivate": SLCLAction.ACTIVATE, "deactivate": SLCLAction.DEACTIVATE,
                "suspend": SLCLAction.SUSPEND}


@dataclass
class ChangeRequest:
    """What someone asks to change. ``None`` = unchanged."""

    action: str = "change"
    quantity: Optional[int] = None
    selling_price: Optional[Decimal] = None
    cost_price: Optional[Decimal] = None
    sales_unit: Optional[str] = None
    provider_id: Optional[int] = None
    effective: ChangeEffective = ChangeEffective.IMMEDIATELY
    effective_date: Optional[date] = None  # for Custom
    provision_on: Optional[date] = None  # SPEC C5; defaults to the effective date
    apply_refund: bool = False  # cancellations only (SPEC C4)
    currency: Optional[str] = None  # what the requester saw; must match (SPEC C10)
    price_list: Optional[str] = None
    force: bool = False  # SPEC S9
    source: ChangeSource = ChangeSource.USER
    requested_by: Optional[str] = None
    note: Optional[str] = None


@dataclass
class ChangeResult:
    subscription: Subscription
    lcl: Optional[LicenseChangeLog] = None
    slcl: Optional[ScheduledLicenseChangeLog] = None

    @property
    def scheduled_for(self) -> datetime:
        return self.slcl.scheduled_for if self.slcl is not None else self.lcl.effective_at  # type: ignore[union-attr]


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
def _refused_as(record: str) -> Iterator[None]:
    """A value out of ``w365.limits``' bounds, refused as a rule of the change service."""
    try:
        yield
    except limits.BadValue as exc:
        raise ValidationError(record, str(exc)) from None


# --------------------------------------------------------------------------------------------
# Pure rules


def direction_of(before: State, after: State) -> Direction:
    """SPEC S6: up/activation positive; down/deactivation/suspension negative; price neutral."""
    before_active = before.status == "active"
    after_active = after.status == "active"
    if after_active and not before_active:
        return Direction.POSITIVE
    if before_active and not after_active:
        return Direction.NEGATIVE
    if after.quantity > before.quantity:
        return Direction.POSITIVE
    if after.quantity < before.quantity:
        return Direction.NEGATIVE
    return Direction.NEUTRAL


def kind_of(before: State, after: State) -> LCLKind:
    """SPEC C7: a quantity (or status) change is standard; a price-only change is audit."""
    if before.quantity != after.quantity or before.status != after.status:
        return LCLKind.STANDARD
    return LCLKind.AUDIT


def change_type_of(before: State, after: State) -> ChangeType:
    if before.status != after.status:
        if after.status == "active":
            return ChangeType.REACTIVATION if before.status == "suspended" else ChangeType.ACTIVATION
        if after.status == "suspended":
            return ChangeType.SUSPENSION
        return ChangeType.DEACTIVATION
    qty = before.quantity != after.quantity
    price = (before.selling_price, before.cost_price, before.sales_unit) != (
        after.selling_price,
        after.cost_price,
        after.sales_unit,
    )
    if qty and price:
        return ChangeType.QUANTITY_PRICE
    return ChangeType.QUANTITY if qty else ChangeType.PRICE


def reduction_window_start(
    provisioned_on: date | None,
    start_date: date,
    contract_start: date,
    term_months: int | None,
    last_renewed_on: date | None,
    day: date,
) -> date:
    """SPEC C2: the window counts from provisioning or the last renewal, whichever is later;
    a renewal on or before ``day`` reopens it (so On Renewal reductions are allowed)."""
    starts = [provisioned_on or start_date]
    if last_renewed_on is not None and last_renewed_on <= day:
        starts.append(last_renewed_on)
    if term_months:
        starts.append(BillingIntervalDetail(contract_start, term_months).period_containing(day).start)
    return max(s for s in starts if s <= day) if any(s <= day for s in starts) else starts[0]


def check_reduction(sub_label: str, qrb: QRB, qrw_days: int | None, window_start: date, day: date) -> None:
    """Refuse a quantity reduction that QRB/QRW does not allow on ``day`` (SPEC C2)."""
    if qrb == QRB.ALLOWED:
        return
    if qrb == QRB.DISALLOWED:
        raise ValidationError(sub_label, "quantity reductions are not allowed (Quantity Reduction Behaviour: Disallowed)", "SPEC C2")
    days = qrw_days or 0
    offset = (day - window_start).days
    if not 0 <= offset < days:
        last = window_start + timedelta(days=days - 1)
        raise ValidationError(
            sub_label,
            f"a reduction effective {day} is outside the {days}-day reduction window "
            f"({window_start} to {last}); schedule it On Renewal instead",
            "SPEC C2",
        )


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
    Every value is checked against ``w365.limits`` first (issue 12)."""
    record = f"subscription {limits.show(name)}"
    with _refused_as(record):
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


# --------------------------------------------------------------------------------------------
# Changing


def _target_state(session: Session, sub: Subscription, req: ChangeRequest) -> State:
    cur = state_of(sub)
    label_ = label(sub)
    if req.action not in ACTIONS:
        raise ValidationError(label_, f"unknown action {req.action!r}; one of {', '.join(ACTIONS)}")
    status = cur.status
    if req.action == "activate":
        if cur.status == "active":
            raise ValidationError(label_, "is already active")
        status = "active"
    elif req.action == "reactivate":
        if cur.status != "suspended":
            raise ValidationError(label_, f"is {cur.status}, not suspended: nothing to reactivate")
        status = "active"
    elif req.action == "suspend":
        if cur.status != "active":
            raise ValidationError(label_, f"is {cur.status}: only an active subscription can be suspended")
        status = "suspended"
    elif req.action == "deactivate":
        if cur.status == "deactivated":
            raise ValidationError(label_, "is already deactivated")
        status = "deactivated"
    elif cur.status == "suspended":
        raise ValidationError(label_, "is suspended: reactivate it before changing quantity or price")
    elif cur.status == "deactivated":
        raise ValidationError(label_, "is deactivated: activate it before changing quantity or price")

    # The request's values within w365.limits (issue 12): refused here, before anything is
    # computed or written, whichever surface (CLI, portal, API) the request came from.
    with _refused_as(label_):
        quantity = cur.quantity if req.quantity is None else limits.quantity(req.quantity)
        selling = cur.selling_price if req.selling_price is None else limits.price(req.selling_price, "selling price")
        cost = cur.cost_price if req.cost_price is None else limits.price(req.cost_price, "cost price")
        if req.sales_unit is not None:
            limits.text(req.sales_unit, "sales unit", limits.column_length(UnitMapping.code))
        if req.effective_date is not None:
            limits.day(req.effective_date, "effective date")
        if req.provision_on is not None:
            limits.day(req.provision_on, "provision on")
        for what, value, column in (("requested by", req.requested_by, LicenseChangeLog.created_by),
                                    ("currency", req.currency, Subscription.currency),
                                    ("price list", req.price_list, Subscription.price_list)):
            if value is not None:
                limits.text(value, what, limits.column_length(column))
    if req.action == "deactivate" and req.quantity is None:
        quantity = cur.quantity  # the seats stay on record; status stops billing
    unit = cur.sales_unit if req.sales_unit is None else req.sales_unit
    if unit != cur.sales_unit:
        new_months = unit_months(session, unit)
        old_months = unit_months(session, cur.sales_unit)
        if (new_months is None) != (old_months is None):
            raise ValidationError(label_, f"sales unit {unit} and {cur.sales_unit} are not both recurring or both one-time", "SPEC C10")
    return State(quantity, selling, cost, unit, status)


def validate_change(
    session: Session,
    sub: Subscription,
    contract: BillingContract,
    req: ChangeRequest,
    before: State,
    after: State,
    day: date,
) -> None:
    """Every rule a change must pass, whether applied now, scheduled, or merged later."""
    label_ = label(sub)
    if before == after and (req.provider_id is None or req.provider_id == sub.provider_id):
        raise ValidationError(label_, "the request changes nothing")
    with _refused_as(label_):  # issue 12: what the result bills must fit an invoice line
        limits.in_range(day, "effective date")
        if (after.quantity, after.selling_price, after.cost_price) != (before.quantity, before.selling_price, before.cost_price):
            limits.subscription_value(after.quantity, after.selling_price, after.cost_price)
    if req.currency is not None and req.currency != sub.currency:
        raise ValidationError(label_, f"the change is in {req.currency} but the subscription is in {sub.currency}", "SPEC C10")
    if req.price_list is not None and req.price_list != sub.price_list:
        raise ValidationError(
            label_, f"the change uses price list {req.price_list!r} but the subscription uses {sub.price_list!r}", "SPEC C10"
        )
    if contract.status != ContractStatus.ACTIVE:
        raise ValidationError(label_, f"its billing contract {contract.number} is {contract.status.value}", "SPEC C10")
    if contract.end_date is not None and day > contract.end_date and not contract.auto_renew:
        raise ValidationError(label_, f"{day} is after the end of contract {contract.number} ({contract.end_date}), which does not auto-renew", "SPEC C10")
    billed = None

    def _billed() -> bool:
        nonlocal billed
        if billed is None:
            billed = is_billed(session, sub.id)
        return billed

    if after.sales_unit != before.sales_unit and not req.force and _billed():
        raise ValidationError(
            label_,
            f"changing the sales unit ({before.sales_unit} -> {after.sales_unit}) after the subscription has been billed "
            "would reprice invoiced periods; pass force to do it anyway",
            "SPEC S9",
        )
    if req.provider_id is not None and req.provider_id != sub.provider_id and not req.force and _billed():
        raise ValidationError(
            label_,
            "changing the provider after the subscription has been billed breaks provisioning and reconciliation; "
            "pass force to do it anyway",
            "SPEC S9",
        )
    if req.action == "deactivate" and req.apply_refund and not contract.refunds_allowed:
        raise ValidationError(label_, f"billing contract {contract.number} does not allow refunds", "SPEC C4")
    if req.apply_refund and req.action != "deactivate":
        raise ValidationError(label_, "Apply Refund goes with a cancellation (deactivate) only", "SPEC C4")
    reduces = before.status == "active" and (after.billable_quantity < before.billable_quantity)
    if reduces and req.action in ("change", "deactivate"):
        start = reduction_window_start(
            sub.provisioned_on, sub.start_date, contract.start_date, contract.term_months, contract.last_renewed_on, day
        )
        check_reduction(label_, sub.qrb, sub.qrw_days, start, day)


def renewal_date(contract: BillingContract, today: date) -> date:
    """The contract's next renewal date (SPEC C3): the day after its term ends, or for an
    evergreen contract the next period boundary."""
    if contract.end_date is not None:
        return contract.end_date + timedelta(days=1)
    from w365.calendar import BillingIntervalDetail as BID

    months = contract.term_months or unit_months_required(contract)
    return BID(contract.start_date, months).next_boundary_on_or_after(today + timedelta(days=1))


def unit_months_required(contract: BillingContract) -> int:
    from w365.calendar import STANDARD_UNITS

    months = STANDARD_UNITS.get(contract.frequency)
    if months is None:
        raise ValidationError(f"contract {contract.number}", f"frequency {contract.frequency} has no term length")
    return months


def change_subscription(
    session: Session, subscription_id: int, req: ChangeRequest, *, now: datetime
) -> ChangeResult:
    """Validate and apply or schedule one change (SPEC S5, S6, C1-C8)."""
    tenant_time.require_aware(now, "now")
    # The contract's lock first, as every billing writer takes it (issue 11): an invoice run
    # never bills half of this change, and the order of locks is the same everywhere.
    contract_id = session.scalar(select(Subscription.contract_id).where(Subscription.id == subscription_id))
    if contract_id is None:
        raise NotFound(f"subscription #{subscription_id} does not exist")
    lock_contracts(session, [contract_id])
    sub = session.get(Subscription, subscription_id, with_for_update={"key_share": True}, populate_existing=True)
    if sub is None:
        raise NotFound(f"subscription #{subscription_id} does not exist")
    contract = session.get(BillingContract, sub.contract_id)
    assert contract is not None
    tz = get_tenant(session).time_zone
    today = tenant_time.today(tz, now)
    before = state_of(sub)
    after = _target_state(session, sub, req)
    direction = direction_of(before, after)

    if req.effective == ChangeEffective.IMMEDIATELY:
        day, scheduled = today, None
    elif req.effective == ChangeEffective.CUSTOM:
        if req.effective_date is None:
            raise ValidationError(label(sub), "Effective = Custom needs an effective date")
        if req.effective_date < today:
            raise ValidationError(label(sub), f"effective date {req.effective_date} is in the past (today is {today} in {tz})")
        day = req.effective_date
        scheduled = tenant_time.scheduled_instant(day, direction, tz)
    else:
        # A renewed term starts with its new values, in both directions: the D / D+1 rule of
        # S6 is for changes inside a term. Applied as the term starts (00:05), billed from D.
        day = renewal_date(contract, today)
        scheduled = tenant_time.scheduled_instant(day, tenant_time.Direction.POSITIVE, tz)

    validate_change(session, sub, contract, req, before, after, day)
    provider = session.get(Provider, req.provider_id or sub.provider_id)
    if provider is None:
        raise ValidationError(label(sub), f"provider #{req.provider_id} does not exist")

    if day == today:
        if req.provider_id is not None:
            sub.provider_id = req.provider_id
        lcl = write_lcl(
            session,
            sub,
            before,
            after,
            day=day,
            effective_at=now if scheduled is None else scheduled,
            source=req.source,
            provider_kind=provider.kind,
            now=now,
            apply_refund=req.apply_refund if req.action == "deactivate" else True,
            created_by=req.requested_by,
            note=req.note,
        )
        log.info("%s: %s change written as LCL #%s (bill from %s)", label(sub), lcl.change_type.value, lcl.id, lcl.bill_from)
        return ChangeResult(sub, lcl=lcl)

    # A suspension on a later date is an SLCL like any other change (issue 13): merged by the
    # Scheduled Update at 23:30 on D (negative, SPEC S6), billed through D and not after.
    existing = open_slcl(session, sub.id)
    if existing is not None:
        raise ValidationError(
            label(sub),
            f"already has scheduled change #{existing.id} ({existing.status.value}, effective {existing.effective_date}); "
            "cancel or merge it first",
            "SPEC C8",
        )
    if req.provider_id is not None and req.provider_id != sub.provider_id:
        raise ValidationError(label(sub), "a provider change cannot be scheduled; apply it immediately")
    slcl = ScheduledLicenseChangeLog(
        subscription_id=sub.id,
        status=SLCLStatus.PENDING,
        action=SLCL_ACTIONS.get(req.action, SLCLAction.CHANGE),
        change_effective=req.effective,
        quantity=after.quantity if after.quantity != before.quantity else None,
        selling_price=after.selling_price if after.selling_price != before.selling_price else None,
        cost_price=after.cost_price if after.cost_price != before.cost_price else None,
        sales_unit=after.sales_unit if after.sales_unit != before.sales_unit else None,
        currency=req.currency or sub.currency,
        price_list=req.price_list or sub.price_list,
        apply_refund=req.apply_refund,
        direction=direction.value,
        effective_date=day,
        provision_on=req.provision_on or day,
        scheduled_for=scheduled,
        bill_from=day if req.effective == ChangeEffective.ON_RENEWAL else tenant_time.bill_from(day, direction),
        source=req.source,
        requested_by=req.requested_by,
        created_at=now,
        updated_at=now,
    )
    session.add(slcl)
    session.flush()
    log.info("%s: scheduled change #%s for %s", label(sub), slcl.id, scheduled.isoformat())
    return ChangeResult(sub, slcl=slcl)


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
    from w365.db.models import Customer

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


def delete_subscription(session: Session, subscription_id: int, *, now: datetime) -> ChangeResult:
    """SPEC S8: subscriptions are never deleted. A billed one is refused; an unbilled one is
    deactivated today (its history stays)."""
    sub = session.get(Subscription, subscription_id)
    if sub is None:
        raise NotFound(f"subscription #{subscription_id} does not exist")
    if is_billed(session, sub.id):
        raise ValidationError(
            label(sub), "has been billed and cannot be deleted; deactivate it (w365 subscription change --deactivate)", "SPEC S8"
        )
    return change_subscription(session, subscription_id, ChangeRequest(action="deactivate", note="delete requested"), now=now)
