"""The invoice generator: pure, like Kill Bill's. Contract + subscriptions + change logs + what
was already billed + the periods to reconcile -> proposed invoice lines.

The rule it implements (SPEC B3-B5, S6, C4, C12 and the B5 decision): for a subscription in a
billing period, the amount is the sum over its days of quantity x price per period / days in the
period, with quantity and price as the change log says for each day. What was billed is read the
same way from existing lines. A line is proposed for every run of days where the two differ:

* nothing billed yet on those days       -> a RECURRING line (first billing, prorated by days);
* billed at other values                 -> ADJUSTMENT lines: the difference per unit price,
  a charge (positive quantity) or a credit (negative quantity) for those days.

So a rerun proposes nothing (idempotent), a Dec 15 change on a Dec 1-31 invoice splits the line
at Dec 15, a decrease on the 10th credits from the 11th, and a scheduled change inside the period
being invoiced is billed although it is in the future (C12: pending SLCLs are laid over the LCLs).
A cancellation without refund (C4) leaves already-billed days as they are.

Nothing here touches the database; every input is a plain value.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Iterable, Sequence

from w365.calendar import BillingIntervalDetail, Period
from w365.ledger import BillingTimeline, Change, Segment
from w365.money import PRICE_PLACES, divide_round, line_amount, minor_units, product, round_half_up

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
    """An existing invoice line, as the generator needs it (end exclusive)."""

    subscription_id: int
    kind: str
    billing_period_from: date
    start: date
    end: date
    quantity: Decimal
    unit_price: Decimal
    lcl_ids: frozenset[int] = frozenset()


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

    @property
    def proration_factor(self) -> Fraction:
        return Fraction(self.days, self.period_days)


@dataclass
class Pricer:
    """Price per billing period in the contract's currency (SPEC B5 unit mapping, S1 currency).

    ``units``: sales unit -> months (None for one-time). ``rates``: (from, to) -> [(effective
    from, rate)] sorted; the rate effective on the period's first day applies to the period.
    """

    contract: ContractTerms
    units: dict[str, int | None]
    rates: dict[tuple[str, str], list[tuple[date, Decimal]]] = field(default_factory=dict)
    _cache: dict[tuple, tuple[Decimal, Decimal | None]] = field(default_factory=dict)

    def rate(self, source: str, on: date) -> Decimal | None:
        if source == self.contract.currency:
            return None
        best = None
        for eff, rate in self.rates.get((source, self.contract.currency), ()):
            if eff <= on:
                best = rate
        if best is None:
            raise BadContractData(
                f"no {source}->{self.contract.currency} exchange rate effective on {on} for a subscription priced in {source}"
            )
        return best

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
        numerator = product(selling_price, self.contract.period_months, rate if rate is not None else 1)
        result = (divide_round(numerator, months, PRICE_PLACES), rate)
        self._cache[key] = result
        return result

    def one_time(self, selling_price: Decimal, currency: str, on: date) -> tuple[Decimal, Decimal | None]:
        rate = self.rate(currency, on)
        return round_half_up(product(selling_price, rate if rate is not None else 1), PRICE_PLACES), rate


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    start: date
    end: date
    delta: tuple[tuple[Decimal, Decimal], ...]  # (unit price, quantity), sorted
    first_billing: bool  # no line has ever billed these days
    lcl_ids: frozenset[int]
    slcl_ids: frozenset[int]
    sales_unit: str | None
    fx_rate: Decimal | None


def _expected_map(seg: Segment | None, sub: SubscriptionInput, period: Period, pricer: Pricer) -> tuple[dict[Decimal, Decimal], Decimal | None]:
    if seg is None or seg.state.billable_quantity == 0:
        return {}, None
    price, rate = pricer.per_period(seg.state.selling_price, seg.state.sales_unit, sub.currency, period)
    return {price: Decimal(seg.state.billable_quantity)}, rate


def _reconcile_period(
    sub: SubscriptionInput,
    tl: BillingTimeline,
    period: Period,
    service: tuple[date, date],
    billed: Sequence[BilledLine],
    pricer: Pricer,
) -> list[_Run]:
    lo, hi = max(period.start, service[0]), min(period.end, service[1])
    segments = tl.segments(lo, hi) if lo < hi else []
    if not billed:
        return _first_billing_runs(sub, segments, period, pricer)
    points = {period.start, period.end}
    for s in segments:
        points.add(s.start)
        points.add(s.end)
    for b in billed:
        points.add(max(b.start, period.start))
        points.add(min(b.end, period.end))
    cuts = sorted(p for p in points if period.start <= p <= period.end)
    runs: list[_Run] = []
    si = 0
    for a, b in zip(cuts, cuts[1:]):
        if a >= b:
            continue
        while si < len(segments) and segments[si].end <= a:
            si += 1
        seg = segments[si] if si < len(segments) and segments[si].start <= a < segments[si].end else None
        expected, rate = _expected_map(seg, sub, period, pricer)
        have: dict[Decimal, Decimal] = defaultdict(Decimal)
        already: set[int] = set()
        covered = False  # any line on these days, even ones that net to nothing
        for line in billed:
            if line.start <= a < line.end:
                have[line.unit_price] += line.quantity
                already |= line.lcl_ids
                covered = True
        have = {p: q for p, q in have.items() if q != 0}
        if seg is not None and seg.no_refund and have:
            continue  # SPEC C4: a cancellation without refund keeps the prepaid days
        delta = {p: expected.get(p, Decimal(0)) - have.get(p, Decimal(0)) for p in set(expected) | set(have)}
        items = tuple(sorted((p, q) for p, q in delta.items() if q != 0))
        if not items:
            continue
        # M3: a delta line names the changes not billed before on these days.
        sources = frozenset(seg.sources) if seg else frozenset()
        run = _Run(
            a,
            b,
            items,
            not covered,
            (sources - already) or sources,
            frozenset(seg.slcl_sources) if seg else frozenset(),
            seg.state.sales_unit if seg else None,
            rate,
        )
        prev = runs[-1] if runs else None
        if prev and prev.end == a and prev.delta == items and prev.first_billing == run.first_billing:
            runs[-1] = _Run(prev.start, b, items, prev.first_billing, prev.lcl_ids | run.lcl_ids, prev.slcl_ids | run.slcl_ids, prev.sales_unit or run.sales_unit, prev.fx_rate or rate)
        else:
            runs.append(run)
    return runs


def _first_billing_runs(sub: SubscriptionInput, segments: Sequence[Segment], period: Period, pricer: Pricer) -> list[_Run]:
    """``_reconcile_period`` when nothing is billed on the period yet (most lines of a run):
    the runs are the billable segments themselves, equal neighbours merged."""
    runs: list[_Run] = []
    for seg in segments:
        qty = seg.state.billable_quantity
        if qty == 0:
            continue
        price, rate = pricer.per_period(seg.state.selling_price, seg.state.sales_unit, sub.currency, period)
        items = ((price, Decimal(qty)),)
        prev = runs[-1] if runs else None
        if prev and prev.end == seg.start and prev.delta == items:
            runs[-1] = _Run(prev.start, seg.end, items, True, prev.lcl_ids | frozenset(seg.sources), prev.slcl_ids | frozenset(seg.slcl_sources),
                            prev.sales_unit or seg.state.sales_unit, prev.fx_rate or rate)
        else:
            runs.append(_Run(seg.start, seg.end, items, True, frozenset(seg.sources), frozenset(seg.slcl_sources), seg.state.sales_unit, rate))
    return runs


def _fmt_days(start: date, end: date) -> str:
    return f"{start.isoformat()} to {(end - timedelta(days=1)).isoformat()}"


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
            for run in _reconcile_period(sub, tl, period, service, in_period, pricer):
                for price, qty in run.delta:
                    days = (run.end - run.start).days
                    kind = RECURRING if run.first_billing and qty > 0 else ADJUSTMENT
                    what = "" if kind == RECURRING else ("Adjustment: " if qty > 0 else "Credit: ")
                    out.append(
                        ProposedLine(
                            subscription_id=sub.id,
                            kind=kind,
                            period=period,
                            start=run.start,
                            end=run.end,
                            quantity=qty,
                            unit_price=price,
                            amount=line_amount(qty, price, days, period.days, contract.currency),
                            days=days,
                            period_days=period.days,
                            sales_unit=run.sales_unit,
                            lcl_ids=tuple(sorted(run.lcl_ids)),
                            slcl_ids=tuple(sorted(run.slcl_ids)),
                            source_currency=sub.currency if sub.currency != contract.currency else None,
                            fx_rate=run.fx_rate,
                            description=f"{what}{sub.name}, {_fmt_days(run.start, run.end)}"
                            + ("" if days == period.days else f" ({days}/{period.days} days)"),
                        )
                    )
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


def total(lines: Iterable[ProposedLine]) -> Decimal:
    """Invoice total: the sum of rounded lines (SPEC M2), exact."""
    return sum((ln.amount for ln in lines), Decimal(0))

