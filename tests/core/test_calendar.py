"""SPEC B1 (cadences), B2 (anchor-based next invoice dates, month-end clamped), B3 (proration by
actual days), B5 (unit mapping)."""

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest

from w365.core.calendar import (
    ANNUAL,
    MONTHLY,
    QUARTERLY,
    SEMI_ANNUAL,
    TRIENNIAL,
    BillingIntervalDetail,
    CalendarError,
    frequency_group,
    price_per_period,
    proration_factor,
)


@pytest.mark.parametrize(
    "months,anchor,expected",
    [
        # B1: monthly from Jan 1 -> Feb 1, Mar 1, Apr 1
        (MONTHLY, date(2024, 1, 1), [date(2024, 2, 1), date(2024, 3, 1), date(2024, 4, 1)]),
        # B1: quarterly from Jan 1 -> Apr 1, Jul 1, Oct 1, Jan 1
        (QUARTERLY, date(2024, 1, 1), [date(2024, 4, 1), date(2024, 7, 1), date(2024, 10, 1), date(2025, 1, 1)]),
        # B1: annual from 2024-01-01 -> 2025-01-01, 2026-01-01
        (ANNUAL, date(2024, 1, 1), [date(2025, 1, 1), date(2026, 1, 1)]),
        # B1: triennial from 2024-01-01 -> 2027-01-01, 2030-01-01
        (TRIENNIAL, date(2024, 1, 1), [date(2027, 1, 1), date(2030, 1, 1)]),
        # B1: custom cadence from the unit mapping, Semi-Annual = 6
        (SEMI_ANNUAL, date(2024, 1, 1), [date(2024, 7, 1), date(2025, 1, 1)]),
    ],
)
def test_b1_cadences(months, anchor, expected):
    assert BillingIntervalDetail(anchor, months).invoice_dates(len(expected)) == expected


def test_b2_anchor_on_31st_is_clamped_not_chained():
    # Timeline: anchor Jan 31 -> Feb 29 (leap) -> Mar 31 -> Apr 30 -> May 31; chaining would give Mar 29.
    bid = BillingIntervalDetail(date(2024, 1, 31), MONTHLY)
    assert bid.invoice_dates(4) == [date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30), date(2024, 5, 31)]
    assert BillingIntervalDetail(date(2023, 1, 31), MONTHLY).boundary(1) == date(2023, 2, 28)


def test_b2_quarterly_anchor_on_31st_and_leap_day_annual():
    assert BillingIntervalDetail(date(2024, 8, 31), QUARTERLY).invoice_dates(2) == [date(2024, 11, 30), date(2025, 2, 28)]
    assert BillingIntervalDetail(date(2024, 2, 29), ANNUAL).invoice_dates(4) == [
        date(2025, 2, 28), date(2026, 2, 28), date(2027, 2, 28), date(2028, 2, 29)]


def test_b2_period_lookup_and_boundaries():
    bid = BillingIntervalDetail(date(2024, 1, 31), MONTHLY)
    p = bid.period_containing(date(2024, 3, 15))
    assert (p.index, p.start, p.end, p.days) == (1, date(2024, 2, 29), date(2024, 3, 31), 31)
    assert bid.period_containing(date(2024, 2, 28)).start == date(2024, 1, 31)
    assert bid.index_of(date(2023, 12, 31)) == -1
    assert [x.start for x in bid.periods(date(2024, 2, 1), date(2024, 4, 1))] == [
        date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31)]
    assert bid.next_boundary_on_or_after(date(2024, 2, 29)) == date(2024, 2, 29)
    assert bid.next_boundary_on_or_after(date(2024, 3, 1)) == date(2024, 3, 31)


def test_b3_proration_by_actual_days():
    # A subscription starting Dec 15 on a Dec 1-31 period: 17 of 31 days.
    assert proration_factor(17, 31) == Fraction(17, 31)
    # February in a leap year has 29 days: half of it is 14.5/29
    assert proration_factor(14, 29) == Fraction(14, 29)
    with pytest.raises(CalendarError):
        proration_factor(32, 31)


def test_b5_unit_mapping_prices():
    assert price_per_period(Decimal("10.00"), MONTHLY, ANNUAL) == Decimal("120.000000")  # Annual = 12 x Monthly
    assert price_per_period(Decimal("10.00"), MONTHLY, TRIENNIAL) == Decimal("360.000000")  # Triennial = 36 x Monthly
    assert price_per_period(Decimal("100.00"), ANNUAL, MONTHLY) == Decimal("8.333333")
    assert price_per_period(Decimal("120"), ANNUAL, QUARTERLY) == Decimal("30.000000")
    with pytest.raises(CalendarError, match="one-time"):
        price_per_period(Decimal("1"), None, MONTHLY)


def test_j1_which_job_bills_which_cadence():
    assert frequency_group(MONTHLY) == "monthly"
    assert frequency_group(QUARTERLY) == "quarterly"
    assert {frequency_group(m) for m in (ANNUAL, TRIENNIAL, SEMI_ANNUAL)} == {"annual"}
