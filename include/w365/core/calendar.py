"""Billing calendar: frequencies, anchor-aligned periods, proration and unit mapping (SPEC B1-B3, B5).

Pure date logic, like Kill Bill's ``BillingIntervalDetail``: every boundary is computed from the
anchor as ``anchor + relativedelta(months=n * period_months)``, never by chaining one period onto
the last, so an anchor on the 31st gives Jan 31, Feb 28 (29), Mar 31, Apr 30 and never drifts to
the 28th. Periods are half-open ``[start, end)``; inclusive "to" dates are only for display.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Iterator

from dateutil.relativedelta import relativedelta

from w365.core.money import PRICE_PLACES, divide_round, product, round_half_up

# Built-in frequencies (SPEC B1). Custom cadences come from the unit_mapping table.
MONTHLY, QUARTERLY, SEMI_ANNUAL, ANNUAL, TRIENNIAL = 1, 3, 6, 12, 36
STANDARD_UNITS: dict[str, int | None] = {
    "MONTHLY": MONTHLY,
    "QUARTERLY": QUARTERLY,
    "ANNUAL": ANNUAL,
    "TRIENNIAL": TRIENNIAL,
    "ONE_TIME": None,  # non-recurring (NRI): billed once, never prorated
}


class CalendarError(ValueError):
    pass


def add_months(anchor: date, months: int) -> date:
    """anchor + n months, clamped to the month's last day (Jan 31 + 1 month = Feb 28/29)."""
    return anchor + relativedelta(months=months)


@dataclass(frozen=True, slots=True)
class Period:
    """One billing period ``[start, end)`` and its index from the anchor (0 = first period)."""

    index: int
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    def __contains__(self, day: date) -> bool:
        return self.start <= day < self.end

    def clip(self, start: date, end: date) -> tuple[date, date] | None:
        """The part of ``[start, end)`` inside this period, or None."""
        lo, hi = max(self.start, start), min(self.end, end)
        return (lo, hi) if lo < hi else None


class BillingIntervalDetail:
    """The periods of a contract: anchor (start date) plus n x ``period_months``."""

    def __init__(self, anchor: date, period_months: int):
        if not isinstance(period_months, int) or period_months <= 0:
            raise CalendarError(f"a billing period must be a positive number of months, not {period_months!r}")
        self.anchor = anchor
        self.period_months = period_months

    def __repr__(self) -> str:
        return f"BillingIntervalDetail(anchor={self.anchor}, period_months={self.period_months})"

    def boundary(self, index: int) -> date:
        return add_months(self.anchor, index * self.period_months)

    def period(self, index: int) -> Period:
        return Period(index, self.boundary(index), self.boundary(index + 1))

    def index_of(self, day: date) -> int:
        """Index of the period containing ``day`` (negative before the anchor)."""
        months = (day.year - self.anchor.year) * 12 + (day.month - self.anchor.month)
        n = months // self.period_months
        # The estimate is off by at most one either way because of day-of-month clamping.
        while self.boundary(n) > day:
            n -= 1
        while self.boundary(n + 1) <= day:
            n += 1
        return n

    def period_containing(self, day: date) -> Period:
        return self.period(self.index_of(day))

    def next_boundary_on_or_after(self, day: date) -> date:
        n = self.index_of(day)
        start = self.boundary(n)
        return start if start == day else self.boundary(n + 1)

    def periods(self, start: date, end: date) -> Iterator[Period]:
        """Every period overlapping ``[start, end)``."""
        if start >= end:
            return
        n = self.index_of(start)
        while True:
            p = self.period(n)
            if p.start >= end:
                return
            yield p
            n += 1

    def invoice_dates(self, count: int, first_index: int = 1) -> list[date]:
        """The next ``count`` invoice dates after the first period (the seed's examples)."""
        return [self.boundary(i) for i in range(first_index, first_index + count)]


def proration_factor(days: int, period_days: int) -> Fraction:
    """Days billed / days in that period (SPEC B3), exact."""
    if period_days <= 0 or days < 0 or days > period_days:
        raise CalendarError(f"cannot prorate {days} days of a {period_days}-day period")
    return Fraction(days, period_days)


@lru_cache(maxsize=4096)
def stored_proration(days: int, period_days: int) -> Decimal:
    """The proration factor as an invoice line stores and shows it (SPEC M3): 10 places, half up.
    Amounts never use it (they are computed exactly from days / period days, SPEC M2)."""
    return round_half_up(proration_factor(days, period_days), 10)


def price_per_period(price: Decimal, unit_months: int | None, period_months: int, rate: Decimal | None = None) -> Decimal:
    """Convert a price per sales unit into a price per billing period (SPEC B5), converted at
    ``rate`` into the contract's currency when the price is in another one (SPEC S1).

    Annual = 12 x Monthly, Triennial = 36 x Monthly: a monthly price on an annual contract is
    multiplied by 12; an annual price on a monthly contract is divided by 12 and kept to six
    places, the precision stored on invoice lines (the line amount is computed from that stored
    unit price, so every amount can be recomputed from what the line shows). One rounding, of
    the exact price x period months x rate / unit months.
    """
    if unit_months is None:
        raise CalendarError("a one-time sales unit has no price per period")
    if unit_months <= 0:
        raise CalendarError(f"sales unit of {unit_months} months")
    return divide_round(product(price, period_months, rate if rate is not None else 1), unit_months, PRICE_PLACES)


def frequency_group(period_months: int) -> str:
    """Which catalogue job bills a cadence: monthly, quarterly, or annual (everything else).

    Decision (SPEC J1): triennial and custom cadences (semi-annual, ...) are billed by the
    annual jobs, whose 30-day advance suits long terms.
    """
    if period_months == MONTHLY:
        return "monthly"
    if period_months == QUARTERLY:
        return "quarterly"
    return "annual"


