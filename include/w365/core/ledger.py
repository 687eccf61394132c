"""The License Change Log ledger: pure folds over a subscription's changes (SPEC S3, S6, C12).

Two folds, both over plain values so they can be tested without a database:

* ``current_state``: the chain of LCLs in the order they were written. Each LCL's "before" must
  equal the previous one's "after", and the subscription row must equal the last "after".
  ``check_chain`` reports every place where that is not so (``w365 verify ledger``).
* ``BillingTimeline``: the values billed on each tenant-local day. Each LCL changes the fields
  it changes from its ``bill_from`` day; pending scheduled changes (SLCLs) in the period being
  invoiced are laid on top (SPEC C12). Where two changes have both taken effect and touch the
  same field, the later-written one wins.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Iterable, Sequence

ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class State:
    """A subscription's billable values."""

    quantity: int
    selling_price: Decimal
    cost_price: Decimal
    sales_unit: str
    status: str

    @property
    def billable_quantity(self) -> int:
        return self.quantity if self.status == ACTIVE else 0


FIELDS = ("quantity", "selling_price", "cost_price", "sales_unit", "status")


@dataclass(frozen=True, slots=True)
class Change:
    """One LCL (or a pending SLCL, ``slcl_id`` set and ``lcl_id`` None) as the folds see it."""

    lcl_id: int | None
    bill_from: date
    before: State
    after: State
    slcl_id: int | None = None
    apply_refund: bool = True
    order: int = 0  # write order; LCL id, or a large number for not-yet-merged SLCLs


# The status a scheduled change's action leaves a subscription in ("change" keeps it).
STATUS_AFTER_ACTION = {"activate": "active", "deactivate": "deactivated", "suspend": "suspended"}


def scheduled_state(current: State, action: str, quantity: int | None, selling_price: Decimal | None,
                    cost_price: Decimal | None, sales_unit: str | None) -> State:
    """A scheduled change laid over the current values (SPEC C12): what it sets, the rest as is.
    The one overlay: the invoice loader bills pending SLCLs with it, the merge writes it."""
    return State(
        current.quantity if quantity is None else quantity,
        current.selling_price if selling_price is None else selling_price,
        current.cost_price if cost_price is None else cost_price,
        current.sales_unit if sales_unit is None else sales_unit,
        STATUS_AFTER_ACTION.get(action, current.status),
    )


def state_of(obj: object, suffix: str = "") -> State:
    """Build a State from a Subscription row (suffix "") or an LCL (suffix "_before"/"_after")."""
    return State(
        quantity=int(getattr(obj, "quantity" + suffix)),
        selling_price=getattr(obj, "selling_price" + suffix),
        cost_price=getattr(obj, "cost_price" + suffix),
        sales_unit=getattr(obj, "sales_unit" + suffix),
        status=getattr(obj, "status" + suffix),
    )


def change_of(lcl: object) -> Change:
    return Change(
        lcl_id=lcl.id,  # type: ignore[attr-defined]
        bill_from=lcl.bill_from,  # type: ignore[attr-defined]
        before=state_of(lcl, "_before"),
        after=state_of(lcl, "_after"),
        slcl_id=getattr(lcl, "slcl_id", None),
        apply_refund=bool(getattr(lcl, "apply_refund", True)),
        order=lcl.id,  # type: ignore[attr-defined]
    )


# --------------------------------------------------------------------------------------------
# The write-order chain


@dataclass(frozen=True)
class Drift:
    subscription_id: int
    lcl_id: int | None
    problem: str


def check_chain(subscription_id: int, current: State, changes: Sequence[Change]) -> list[Drift]:
    """Prove the subscription's current state is the fold of its LCLs (in write order)."""
    problems: list[Drift] = []
    if not changes:
        return [Drift(subscription_id, None, "has no license change log at all")]
    ordered = sorted(changes, key=lambda c: c.order)
    previous: State | None = None
    for ch in ordered:
        if previous is not None and ch.before != previous:
            diffs = _diff(previous, ch.before)
            problems.append(Drift(subscription_id, ch.lcl_id, f"'before' does not match the previous LCL's 'after': {diffs}"))
        previous = ch.after
    assert previous is not None
    if previous != current:
        problems.append(
            Drift(subscription_id, ordered[-1].lcl_id, f"subscription differs from its last LCL: {_diff(previous, current)}")
        )
    return problems


def _diff(expected: State, actual: State) -> str:
    return ", ".join(
        f"{f} {getattr(expected, f)} -> {getattr(actual, f)}" for f in FIELDS if getattr(expected, f) != getattr(actual, f)
    )


def current_state(changes: Sequence[Change]) -> State:
    return max(changes, key=lambda c: c.order).after


# --------------------------------------------------------------------------------------------
# The billing timeline


@dataclass(frozen=True, slots=True)
class Segment:
    """Days ``[start, end)`` on which the billed values are constant."""

    start: date
    end: date
    state: State
    sources: tuple[int, ...]  # LCL ids that set these values
    slcl_sources: tuple[int, ...] = ()
    no_refund: bool = False  # values set by a cancellation without refund (SPEC C4)


@dataclass
class BillingTimeline:
    """Per-day billed values of one subscription, as a list of change points."""

    changes: list[Change] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._points: list[date] = []
        self._states: list[Segment] = []
        self._build()

    def _build(self) -> None:
        if not self.changes:
            return
        # Walk the change points in bill-from order. On each day a field has the value of the
        # latest-written change (highest ``order``) among those that changed it and bill from
        # that day or earlier: a change typed later wins from its day on, also over one typed
        # earlier with a later bill-from day (a decrease for tomorrow, then an increase today;
        # a change made before a future start). Before the first-written change (the
        # activation or import), its "before" values hold: nothing billable. (Spelled out field
        # by field: this runs for every subscription of every billing run.)
        ordered = sorted(self.changes, key=lambda c: (c.bill_from, c.order))
        first = min(self.changes, key=lambda c: c.order)
        b0 = first.before
        values: list[object] = [b0.quantity, b0.selling_price, b0.cost_price, b0.sales_unit, b0.status]
        setters: list[Change | None] = [None] * 5
        days: list[date] = []
        for ch in ordered:
            a, o = ch.after, ch.order
            if ch is first:  # the first change defines every field (unless a later-written one set it)
                for i, v in enumerate((a.quantity, a.selling_price, a.cost_price, a.sales_unit, a.status)):
                    if setters[i] is None:
                        values[i], setters[i] = v, ch
            elif a is not ch.before:
                b = ch.before
                if a.quantity != b.quantity and (setters[0] is None or setters[0].order < o):
                    values[0], setters[0] = a.quantity, ch
                if a.selling_price != b.selling_price and (setters[1] is None or setters[1].order < o):
                    values[1], setters[1] = a.selling_price, ch
                if a.cost_price != b.cost_price and (setters[2] is None or setters[2].order < o):
                    values[2], setters[2] = a.cost_price, ch
                if a.sales_unit != b.sales_unit and (setters[3] is None or setters[3].order < o):
                    values[3], setters[3] = a.sales_unit, ch
                if a.status != b.status and (setters[4] is None or setters[4].order < o):
                    values[4], setters[4] = a.status, ch
            if days and days[-1] == ch.bill_from:
                self._states.pop()
                days.pop()
            state = State(*values)  # type: ignore[arg-type]
            present = [x for x in setters if x is not None]
            srcs = tuple(sorted({x.lcl_id for x in present if x.lcl_id is not None}))
            slcls = tuple(sorted({x.slcl_id for x in present if x.slcl_id is not None}))
            no_refund = not all(x.apply_refund for x in present)
            days.append(ch.bill_from)
            self._states.append(Segment(ch.bill_from, date.max, state, srcs, slcls, no_refund))
        self._points = days

    def state_on(self, day: date) -> Segment | None:
        i = bisect.bisect_right(self._points, day) - 1
        return self._states[i] if i >= 0 else None

    def segments(self, start: date, end: date) -> list[Segment]:
        """Constant-value runs covering ``[start, end)``; days before the first change are absent."""
        out: list[Segment] = []
        if not self._points or start >= end:
            return out
        i = max(bisect.bisect_right(self._points, start) - 1, 0)
        while i < len(self._points):
            seg_start = max(self._points[i], start)
            seg_end = min(self._points[i + 1] if i + 1 < len(self._points) else end, end)
            if seg_start >= end:
                break
            if seg_start < seg_end and self._points[i] <= seg_start:
                st = self._states[i]
                out.append(Segment(seg_start, seg_end, st.state, st.sources, st.slcl_sources, st.no_refund))
            i += 1
        return out


def timeline(changes: Iterable[Change]) -> BillingTimeline:
    return BillingTimeline(list(changes))
