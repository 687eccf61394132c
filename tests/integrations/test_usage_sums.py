"""A usage day's repeated meters are summed exactly (SPEC P1, M1; issue 15): as integers of the
column's smallest unit (10^-6 for quantities, 10^-4 for totals), never float, with the sums that
outgrow the store's precision named. Checked with plain values against ``Decimal``."""

from decimal import Decimal

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from w365.core import limits
from w365.integrations.usage_day import aggregate


def _frame(rows):
    return pd.DataFrame({
        "subscription_id": pd.Series([r[0] for r in rows], dtype="int64"),
        "meter_id": [r[1] for r in rows], "meter_name": "VM", "unit": "1 Hour",
        "quantity": [r[2] for r in rows], "unit_price": "0.5", "pre_tax_total": [r[3] for r in rows], "currency": "USD",
        "customer_id": pd.Series([7] * len(rows), dtype="int64"),
    })


def _sums(rows):
    out = aggregate(_frame(rows))[0]
    return {(int(r.subscription_id), r.meter_id): (Decimal(r.quantity), Decimal(r.pre_tax_total)) for r in out.itertuples()}


def test_p1_repeated_meters_sum_exactly_whatever_the_text():
    """Timeline of one day: sub 1 meter vm has three lines written three ways (blanks, a plus
    sign, places beyond the column that are zeros), sub 1 meter db one line (kept as written),
    sub 2 meter vm two lines that cancel out."""
    rows = [
        (1, "vm", " 1.000001 ", "0.1001"),
        (1, "db", "4", "4.0000"),
        (1, "vm", "+2.5", "-0.0001"),
        (2, "vm", "-3", "10"),
        (1, "vm", "0.50000000", "2.00000"),  # 0.5 and 2 with zeros past the column's places
        (2, "vm", "3.000000", "-10.0000"),
    ]
    assert _sums(rows) == {
        (1, "vm"): (Decimal("4.000001"), Decimal("2.1000")),  # 1.000001 + 2.5 + 0.5; 0.1001 - 0.0001 + 2
        (1, "db"): (Decimal("4"), Decimal("4")),
        (2, "vm"): (Decimal("0"), Decimal("0")),
    }
    out, overflow = aggregate(_frame(rows))
    assert overflow == set()
    assert out.loc[out["meter_id"] == "db", "quantity"].tolist() == ["4"]  # a single line stays as written
    assert out.loc[(out["subscription_id"] == 1) & (out["meter_id"] == "vm"), "quantity"].tolist() == ["4.000001"]


def test_p1_a_sum_larger_than_the_column_holds_back_its_subscription():
    """quantity is NUMERIC(18, 6): 12 integer digits. Two lines of 999,999,999,999 sum to 13
    digits; ten lines of 999,999,999,999.999999 pass int64 (10^19 in units of 10^-6) too."""
    big = "999999999999.999999"
    rows = [(1, "vm", "999999999999", "1"), (1, "vm", "1", "1"), (2, "db", "1", "1"), (2, "db", "2", "1")]
    rows += [(3, "vm", big, "1")] * 10 + [(4, "vm", "-" + big, "1"), (4, "vm", big, "1")]
    out, overflow = aggregate(_frame(rows))
    assert overflow == {1, 3}
    got = {(int(r.subscription_id), r.meter_id): Decimal(r.quantity) for r in out.itertuples()}
    assert got[(2, "db")] == Decimal(3) and got[(4, "vm")] == Decimal(0)


_QUANTITY = st.decimals(min_value=Decimal("-999999999999.999999"), max_value=Decimal("999999999999.999999"), places=6)
_TOTAL = st.decimals(min_value=Decimal("-99999999999999.9999"), max_value=Decimal("99999999999999.9999"), places=4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.sampled_from(["a", "b"]), _QUANTITY, _TOTAL), min_size=1, max_size=40))
def test_m1_sums_equal_decimal_sums_and_overflow_exactly_when_decimal_says(lines):
    """Random days: every (subscription, meter) sum equals the Decimal sum of its lines, and a
    subscription is held back exactly when one of its Decimal sums needs more integer digits
    than its column has."""
    rows = [(s, m, format(q, "f"), format(t, "f")) for s, m, q, t in lines]
    expected: dict[tuple[int, str], tuple[Decimal, Decimal]] = {}
    for s, m, q, t in lines:
        a, b = expected.get((s, m), (Decimal(0), Decimal(0)))
        expected[(s, m)] = (a + q, b + t)
    q_digits, t_digits = limits.USAGE_NUMBERS["quantity"][0], limits.USAGE_NUMBERS["pre_tax_total"][0]
    too_big = {s for (s, _), (q, t) in expected.items() if abs(q) >= Decimal(10) ** q_digits or abs(t) >= Decimal(10) ** t_digits}
    out, overflow = aggregate(_frame(rows))
    assert overflow == too_big
    got = {(int(r.subscription_id), r.meter_id): (Decimal(r.quantity), Decimal(r.pre_tax_total)) for r in out.itertuples()}
    assert {k: v for k, v in got.items() if k[0] not in too_big} == {k: v for k, v in expected.items() if k[0] not in too_big}
