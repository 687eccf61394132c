"""Pure rules of a subscription change (SPEC S6, C1-C4): its direction, kind and type, and the
reduction window of quantity-reduction-blocked products. No database: plain values in, values out."""

from __future__ import annotations

import logging
from datetime import date, timedelta

from w365.core.calendar import BillingIntervalDetail
from w365.core.ledger import State
from w365.core.tenant_time import Direction
from w365.errors import ValidationError
from w365.store.models import (
    QRB,
    ChangeType,
    LCLKind,
)

log = logging.getLogger(__name__)
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
