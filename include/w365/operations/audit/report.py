"""What the auditor reports, and the ledger as the auditor reads it (see ``w365.operations.audit``)."""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import String, type_coerce

# --------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class Difference:
    """One thing the books say differently from the rules. ``settled_by`` names the coming run
    due to settle it; None makes it an error."""

    # day, period_total, line_amount, line_days, proration, period, link, subscription, invoice_total, currency, customer,
    # numbering, bill_from, data
    check: str
    contract: str | None
    expected: str
    found: str
    invoice: str | None = None
    line: int | None = None
    subscription: int | None = None
    first_day: date | None = None
    last_day: date | None = None
    settled_by: str | None = None

    @property
    def is_error(self) -> bool:
        return self.settled_by is None

    def __str__(self) -> str:
        where = [f"contract {self.contract}" if self.contract else "tenant"]
        if self.invoice:
            where.append(f"invoice {self.invoice}" + (f" line {self.line}" if self.line is not None else ""))
        if self.subscription is not None:
            where.append(f"subscription #{self.subscription}")
        if self.first_day:
            where.append(str(self.first_day) if self.last_day in (None, self.first_day) else f"{self.first_day}..{self.last_day}")
        outcome = f"settled by the {self.settled_by}" if self.settled_by else "error"
        return f"{self.check}: {', '.join(where)}: expected {self.expected}, found {self.found} ({outcome})"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(first_day=self.first_day and self.first_day.isoformat(), last_day=self.last_day and self.last_day.isoformat(),
                 error=self.is_error)
        return d


@dataclass
class AuditReport:
    days_checked: int = 0  # subscription-days of billed periods
    lines_checked: int = 0
    invoices_checked: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def errors(self) -> list[Difference]:
        return [d for d in self.differences if d.is_error]

    def summary(self) -> str:
        errors = len(self.errors)
        return (f"{self.days_checked} subscription-day(s), {self.lines_checked} line(s), {self.invoices_checked} invoice(s) checked; "
                f"{len(self.differences)} difference(s): {errors} error(s), {len(self.differences) - errors} due to be settled by a coming run")

    def to_dict(self) -> dict[str, Any]:
        return {"days_checked": self.days_checked, "lines_checked": self.lines_checked, "invoices_checked": self.invoices_checked,
                "errors": len(self.errors), "differences": [d.to_dict() for d in self.differences]}


# --------------------------------------------------------------------------------------------
# The ledger, as this module reads it


class _DataError(Exception):
    """The rows do not say what a day should cost (no unit mapping, no exchange rate...)."""


class _Change(NamedTuple):
    """An LCL, or a pending SLCL laid over the LCLs, as the fold sees it."""

    day: date  # recomputed bill-from day
    order: tuple[int, int]  # write order: (0, LCL id), then (1, SLCL id) after every LCL
    sets: dict[str, Any]  # the fields it changes: quantity, price, unit, status
    billed: bool  # some invoice line links it (or the SLCL it was merged from)
    no_refund: bool  # a cancellation without refund (SPEC C4)


class _Day(NamedTuple):
    """The values from one change point on: (quantity, selling price, sales unit, status)."""

    quantity: int
    price: Decimal
    unit: str
    status: str
    no_refund: bool  # its status was set by a cancellation without refund
    unbilled: bool  # a change that set one of these values has not been billed yet


class _Timeline:
    """The billed values of one subscription on any day (SPEC S3, S6, C12): the first LCL
    defines every field; on each day, a field has the value of the latest-written change that
    set it among those billed from that day or earlier (pending SLCLs count as written after
    every LCL). So a change typed later wins from its day on, even over one typed earlier with
    a later bill-from day. Nothing is billed before the first LCL (the subscription's
    activation or import) takes effect, even if a later-written change was dated earlier: such
    a change still sets its fields, from then on."""

    def __init__(self, first: dict[str, Any], changes: list[_Change], first_change: _Change):
        self.start = first_change.day
        values = dict(first)
        setters = dict.fromkeys(values, first_change)
        self.days: list[date] = []
        self.states: list[_Day] = []
        for ch in sorted(changes, key=lambda c: c[:2]):  # (bill-from day, write order)
            for name, value in ch.sets.items():
                if ch.order >= setters[name].order:  # the latest-written wins
                    values[name], setters[name] = value, ch
            state = _Day(values["quantity"], values["price"], values["unit"], values["status"], setters["status"].no_refund,
                         not all(s.billed for s in setters.values()))
            if self.days and self.days[-1] == ch.day:
                self.states[-1] = state
            else:
                self.days.append(ch.day)
                self.states.append(state)

    def on(self, day: date) -> _Day | None:
        i = bisect.bisect_right(self.days, day) - 1
        return self.states[i] if i >= 0 and day >= self.start else None


def _text(column: Any) -> Any:
    """An enum column read as its stored text (no enum objects to build for every row)."""
    return type_coerce(column, String).label(column.key)


FIELDS = ("quantity", "price", "unit", "status")  # what decides a day's bill (cost price does not)
# The status a scheduled change's action sets (a scheduled suspension, issue 13: "suspend").
_STATUS_OF_ACTION = {"activate": "active", "deactivate": "deactivated", "suspend": "suspended"}
