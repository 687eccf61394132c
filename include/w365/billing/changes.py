"""Changing subscriptions: the one entry point for every change (SPEC S1-S9, C1-C10).

``change_subscription`` validates a request and then either writes a License Change Log now
(Effective = Immediately, or Custom with today's date) or schedules an SLCL (Custom with a future
date, or On Renewal). Nothing here reads the clock: callers pass ``now``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from w365.billing.change_rules import (
    check_reduction,
    direction_of,
    reduction_window_start,
)
from w365.billing.subscriptions import (
    get_tenant,
    is_billed,
    label,
    open_slcl,
    refused_as,
    unit_months,
    write_lcl,
)
from w365.core import limits, tenant_time
from w365.core.ledger import State, state_of
from w365.errors import NotFound, ValidationError
from w365.store.models import (
    BillingContract,
    ChangeEffective,
    ChangeSource,
    ContractStatus,
    LicenseChangeLog,
    Provider,
    ScheduledLicenseChangeLog,
    SLCLAction,
    SLCLStatus,
    Subscription,
    UnitMapping,
)
from w365.store.session import lock_contracts

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

    # The request's values within w365.core.limits (issue 12): refused here, before anything is
    # computed or written, whichever surface (CLI, portal, API) the request came from.
    with refused_as(label_):
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
    with refused_as(label_):  # issue 12: what the result bills must fit an invoice line
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


def renewal_date(session: Session, contract: BillingContract, today: date) -> date:
    """The contract's next renewal date (SPEC C3): the day after its term ends, or for an
    evergreen contract the next boundary of its term (term months, else its frequency's months
    in the unit mapping, SPEC B5)."""
    if contract.end_date is not None:
        return contract.end_date + timedelta(days=1)
    from w365.core.calendar import BillingIntervalDetail as BID

    months = contract.term_months or unit_months(session, contract.frequency)
    if not months:
        raise ValidationError(f"contract {contract.number}", f"frequency {contract.frequency} has no term length")
    return BID(contract.start_date, months).next_boundary_on_or_after(today + timedelta(days=1))


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
        day = renewal_date(session, contract, today)
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
    log.info("%s: scheduled change #%s for %s", label(sub), slcl.id, scheduled)
    return ChangeResult(sub, slcl=slcl)


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
