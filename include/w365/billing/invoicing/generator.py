"""The invoice generator: pure, like Kill Bill's. Contract + subscriptions + change logs + what
was already billed + the periods to reconcile -> proposed invoice lines.

The rule it implements (SPEC B3-B5, S6, C4, C12, M2 and the B5 decision): for a subscription in a
billing period, the amount is the sum over its days of quantity x price per period / days in the
period, with quantity and price as the change log says for each day. The period's *ideal lines*
are the runs of days with the same values, each rounded once: what its first invoice would have
said had every change been known then. Reconciling a period:

* nothing billed yet                     -> the ideal lines, as RECURRING lines;
* billed, and the standing lines differ  -> credit and re-bill (ADJUSTMENT lines): each standing
  line that is not an ideal line is reversed (same days, price and quantity, negated), and each
  ideal line not standing is billed.

So the period's total is always the sum of its ideal lines, to the minor unit, whenever a change
was entered; a rerun proposes nothing (idempotent); a Dec 15 change on a Dec 1-31 invoice splits
the line at Dec 15; a scheduled change inside the period being invoiced is billed although it is
in the future (C12: pending SLCLs are laid over the LCLs). A cancellation without refund (C4)
leaves already-billed days as they are.

Nothing here touches the database; every input is a plain value.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, Iterable, Sequence

from w365.core.fx import NoRate, Rates, rate_on
from w365.core.calendar import BillingIntervalDetail, Period, price_per_period, proration_factor
from w365.core.ledger import BillingTimeline, Change, Segment
from w365.core.money import (
    PRICE_PLACES,
    line_amount,
    minor_units,
    product,
    round_half_up,
)

RECURRING = "recurring"
ADJUSTMENT = "adjustment"
ONE_TIME = "one_time"


class BadContractData(Exception):
    """The contract cannot be billed as its data stands; the reason names the record."""


@dataclass(frozen=True)
class ContractTerms:
    id: int
    number: str
    currency: str
    anchor: date  # start date: periods are anchor + n x period_months (SPEC B2)
    period_months: int
    service_end: date | None = None  # first day not billed (end of a term that will not renew)

    @property
    def calendar(self) -> BillingIntervalDetail:
        return BillingIntervalDetail(self.anchor, self.period_months)


@dataclass(frozen=True)
class SubscriptionInput:
    id: int
    name: str
    kind: str  # license | usage | one_time
    currency: str
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class BilledLine:
    """An existing invoice line, as the generator needs it (end exclusive). ``ref`` names it for
    the credit that may reverse it ("INV-000012 line 3")."""

    subscription_id: int
    kind: str
    billing_period_from: date
    start: date
    end: date
    quantity: Decimal
    unit_price: Decimal
    lcl_ids: frozenset[int] = frozenset()
    slcl_ids: frozenset[int] = frozenset()
    ref: str = ""
    sales_unit: str | None = None
    fx_rate: Decimal | None = None
    line_id: int | None = None  # the stored line, so a credit that reverses it can name it (tax, I5)


@dataclass
class ProposedLine:
    subscription_id: int
    kind: str
    period: Period
    start: date
    end: date  # exclusive
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    days: int
    period_days: int
    sales_unit: str | None
    lcl_ids: tuple[int, ...] = ()
    slcl_ids: tuple[int, ...] = ()
    source_currency: str | None = None
    fx_rate: Decimal | None = None
    description: str = ""
    reverses: int | None = None  # the stored line this credit reverses (its tax is taken back, I5)

    @property
    def proration_factor(self) -> Fraction:
        return proration_factor(self.days, self.period_days)


@dataclass
class Pricer:
    """Price per billing period in the contract's currency (SPEC B5 unit mapping, S1 currency).

    ``units``: sales unit -> months (None for one-time). ``rates``: (from, to) -> [(effective
    from, rate)] sorted; the rate effective on the period's first day applies to the period.
    """

    contract: ContractTerms
    units: dict[str, int | None]
    rates: Rates = field(default_factory=dict)
    _cache: dict[tuple, tuple[Decimal, Decimal | None]] = field(default_factory=dict)

    def rate(self, source: str, on: date) -> Decimal | None:
        try:
            return rate_on(self.rates, source, self.contract.currency, on)
        except NoRate as exc:
            raise BadContractData(f"{exc} for a subscription priced in {source}") from None

    def per_period(self, selling_price: Decimal, sales_unit: str, currency: str, period: Period) -> tuple[Decimal, Decimal | None]:
        key = (selling_price, sales_unit, currency, period.start)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if sales_unit not in self.units:
            raise BadContractData(f"sales unit {sales_unit!r} is missing from the unit mapping")
        months = self.units[sales_unit]
        if months is None:
            raise BadContractData(f"sales unit {sales_unit} is one-time but the subscription is recurring")
        rate = self.rate(currency, period.start)
        result = (price_per_period(selling_price, months, self.contract.period_months, rate), rate)
        self._cache[key] = result
        return result

    def one_time(self, selling_price: Decimal, currency: str, on: date) -> tuple[Decimal, Decimal | None]:
        rate = self.rate(currency, on)
        return round_half_up(product(selling_price, rate if rate is not None else 1), PRICE_PLACES), rate


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """Days ``[start, end)`` on which the expected values are constant: one line per unit price."""

    start: date
    end: date
    items: tuple[tuple[Decimal, Decimal], ...]  # (unit price per period, quantity), sorted
    lcl_ids: frozenset[int]
    slcl_ids: frozenset[int]
    sales_unit: str | None
    fx_rate: Decimal | None


def _append(runs: list[_Run], run: _Run) -> None:
    """Add a run, merged into its neighbour when the values are equal: where a change point
    falls must not change the lines (nor their rounding)."""
    prev = runs[-1] if runs else None
    if prev and prev.end == run.start and prev.items == run.items:
        runs[-1] = _Run(prev.start, run.end, run.items, prev.lcl_ids | run.lcl_ids, prev.slcl_ids | run.slcl_ids,
                        prev.sales_unit or run.sales_unit, prev.fx_rate or run.fx_rate)
    else:
        runs.append(run)


def _billed_on(billed: Sequence[BilledLine], day: date) -> tuple[tuple[Decimal, Decimal], ...]:
    have: dict[Decimal, Decimal] = defaultdict(Decimal)
    for line in billed:
        if line.start <= day < line.end:
            have[line.unit_price] += line.quantity
    return tuple(sorted((p, q) for p, q in have.items() if q != 0))


def _ideal_runs(sub: SubscriptionInput, segments: Sequence[Segment], period: Period, billed: Sequence[BilledLine], pricer: Pricer) -> list[_Run]:
    """The period's lines had every change been known at its first billing (SPEC B5 decision):
    runs of days with the same quantity and price, equal neighbours merged. On days a
    cancellation without refund took away (SPEC C4), days already billed keep what was billed."""
    runs: list[_Run] = []
    for seg in segments:
        srcs, slcls = frozenset(seg.sources), frozenset(seg.slcl_sources)
        if seg.no_refund and billed:
            cuts = sorted({seg.start, seg.end} | {d for b in billed for d in (b.start, b.end) if seg.start < d < seg.end})
            for a, b in zip(cuts, cuts[1:]):
                kept = _billed_on(billed, a)
                if kept:
                    _append(runs, _Run(a, b, kept, srcs, slcls, seg.state.sales_unit, None))
            continue
        qty = seg.state.billable_quantity
        if qty == 0:
            continue
        price, rate = pricer.per_period(seg.state.selling_price, seg.state.sales_unit, sub.currency, period)
        _append(runs, _Run(seg.start, seg.end, ((price, Decimal(qty)),), srcs, slcls, seg.state.sales_unit, rate))
    return runs


def _live(billed: Sequence[BilledLine]) -> list[BilledLine]:
    """The billed lines still standing: a credit that mirrors a line (same days and unit price,
    opposite quantity) cancels it."""
    out: list[BilledLine | None] = []
    open_: dict[tuple[date, date, Decimal, Decimal], list[int]] = defaultdict(list)
    for b in billed:
        mirror = open_.get((b.start, b.end, b.unit_price, -b.quantity))
        if mirror:
            out[mirror.pop()] = None
        else:
            open_[(b.start, b.end, b.unit_price, b.quantity)].append(len(out))
            out.append(b)
    return [b for b in out if b is not None]


def _fmt_days(start: date, end: date) -> str:
    return f"{start.isoformat()} to {(end - timedelta(days=1)).isoformat()}"


def _reconcile_period(
    contract: ContractTerms, sub: SubscriptionInput, period: Period, runs: Sequence[_Run], billed: Sequence[BilledLine]
) -> list[ProposedLine]:
    """Lines that make the period's billed lines equal its ideal lines (SPEC B4, C11, C12, M2).

    Nothing billed yet: the ideal lines, as recurring lines. Otherwise credit and re-bill: every
    standing line that is not exactly an ideal line is reversed (a credit of the same days,
    price and quantity, so of the same amount), and every ideal line not standing is billed. Each
    line is rounded once, so the period's total is the sum of its ideal lines however late a
    change was entered. A rerun proposes nothing.
    """
    standing: dict[tuple[date, date, Decimal, Decimal], list[BilledLine]] = defaultdict(list)
    for b in _live(billed):
        standing[(b.start, b.end, b.unit_price, b.quantity)].append(b)
    wanted: list[tuple[_Run, Decimal, Decimal]] = []
    for run in runs:
        for price, qty in run.items:
            same = standing.get((run.start, run.end, price, qty))
            if same:
                same.pop()
            else:
                wanted.append((run, price, qty))
    reversed_ = sorted((b for lines in standing.values() for b in lines), key=lambda b: (b.start, b.unit_price, b.quantity))
    converted = sub.currency if sub.currency != contract.currency else None
    out: list[ProposedLine] = []

    def line(kind: str, start: date, end: date, qty: Decimal, price: Decimal, what: str, **kw: Any) -> ProposedLine:
        days = (end - start).days
        return ProposedLine(
            subscription_id=sub.id, kind=kind, period=period, start=start, end=end, quantity=qty, unit_price=price,
            amount=line_amount(qty, price, days, period.days, contract.currency), days=days, period_days=period.days,
            source_currency=converted, description=f"{what}{sub.name}, {_fmt_days(start, end)}"
            + ("" if days == period.days else f" ({days}/{period.days} days)"), **kw,
        )

    for b in reversed_:
        out.append(line(ADJUSTMENT, b.start, b.end, -b.quantity, b.unit_price, f"Credit: reverses {b.ref or 'a line billed before'}: ",
                        sales_unit=b.sales_unit, lcl_ids=tuple(sorted(b.lcl_ids)), slcl_ids=tuple(sorted(b.slcl_ids)), fx_rate=b.fx_rate,
                        reverses=b.line_id))
    for run, price, qty in wanted:
        covered = any(b.start < run.end and run.start < b.end for b in billed)
        kind = RECURRING if qty > 0 and not covered else ADJUSTMENT
        what = "" if kind == RECURRING else ("Re-billed: " if qty > 0 else "Credit: ")
        out.append(line(kind, run.start, run.end, qty, price, what, sales_unit=run.sales_unit,
                        lcl_ids=tuple(sorted(run.lcl_ids)), slcl_ids=tuple(sorted(run.slcl_ids)), fx_rate=run.fx_rate))
    return out


def propose_lines(
    contract: ContractTerms,
    subscriptions: Iterable[SubscriptionInput],
    billed: Iterable[BilledLine],
    periods: Sequence[Period],
    pricer: Pricer,
) -> list[ProposedLine]:
    """Lines that make what is billed for ``periods`` equal what the change logs say."""
    minor_units(contract.currency)  # an unknown currency fails the contract, not a line
    periods = sorted(periods, key=lambda p: p.start)
    if not periods:
        return []
    by_sub: dict[int, list[BilledLine]] = defaultdict(list)
    one_time_billed: set[int] = set()
    for b in billed:
        by_sub[b.subscription_id].append(b)
        if b.kind == ONE_TIME:
            one_time_billed.add(b.subscription_id)
    service = (contract.anchor, contract.service_end or date.max)
    out: list[ProposedLine] = []
    for sub in sorted(subscriptions, key=lambda s: s.id):
        if sub.kind == "usage" or not sub.changes:
            continue  # usage is billed in arrears from usage records
        if sub.kind == "one_time":
            line = _one_time(contract, sub, periods, one_time_billed, pricer)
            if line:
                out.append(line)
            continue
        tl = BillingTimeline(list(sub.changes))
        sub_billed = by_sub.get(sub.id, [])
        for period in periods:
            in_period = [b for b in sub_billed if b.billing_period_from == period.start and b.kind != ONE_TIME]
            lo, hi = max(period.start, service[0]), min(period.end, service[1])
            segments = tl.segments(lo, hi) if lo < hi else []
            runs = _ideal_runs(sub, segments, period, in_period, pricer)
            out += _reconcile_period(contract, sub, period, runs, in_period)
    return out


def _one_time(
    contract: ContractTerms, sub: SubscriptionInput, periods: Sequence[Period], billed: set[int], pricer: Pricer
) -> ProposedLine | None:
    """A non-recurring charge: billed once, in the period of its activation, never prorated (B3)."""
    if sub.id in billed:
        return None
    tl = BillingTimeline(list(sub.changes))
    first = min(sub.changes, key=lambda c: c.order)
    seg = tl.state_on(first.bill_from)
    if seg is None or seg.state.billable_quantity == 0:
        return None
    period = next((p for p in periods if first.bill_from in p), None)
    if period is None:
        return None  # activated in a period this system does not bill (e.g. migrated)
    price, rate = pricer.one_time(seg.state.selling_price, sub.currency, first.bill_from)
    qty = Decimal(seg.state.billable_quantity)
    return ProposedLine(
        subscription_id=sub.id,
        kind=ONE_TIME,
        period=period,
        start=first.bill_from,
        end=first.bill_from + timedelta(days=1),
        quantity=qty,
        unit_price=price,
        amount=line_amount(qty, price, 1, 1, contract.currency),
        days=1,
        period_days=1,
        sales_unit=seg.state.sales_unit,
        lcl_ids=tuple(sorted(seg.sources)),
        source_currency=sub.currency if sub.currency != contract.currency else None,
        fx_rate=rate,
        description=f"{sub.name} (one-time)",
    )
