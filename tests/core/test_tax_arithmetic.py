"""Tax arithmetic, worked examples (SPEC I2-I6): the code a line is taxed under, the rate on a
day, the tax of a line rounded once, a document's subtotal, tax per code and total."""

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from w365.core.tax import (
    NoTaxRate,
    TaxedAmount,
    TaxSummaryRow,
    Totals,
    code_for,
    is_credit_note,
    line_tax,
    rate_on,
    tax_line,
    tax_summary,
    totals,
)

D = Decimal
RATES = {
    "VAT20": [(date(2020, 1, 1), D("20"))],
    "US-NY": [(date(2020, 1, 1), D("8.875"))],
    # A rate change by effective date: 19 % through June 30, 21 % from July 1.
    "VAT": [(date(2026, 1, 1), D("19")), (date(2026, 7, 1), D("21"))],
    "EXEMPT": [(date(2020, 1, 1), D("0"))],
}


def test_i4_mixed_codes_on_one_invoice_usd():
    """SPEC I4: each line's tax rounded once, half-up, to cents; totals are sums of rounded lines.

    line 1  100.00 at VAT20  -> 20.00
    line 2   33.33 at VAT20  ->  6.666   -> 6.67
    line 3   49.99 at US-NY 8.875 % -> 4.4366125 -> 4.44
    line 4   10.00, no code  ->  0.00
    subtotal 193.32, tax 31.11, total 224.43
    """
    on = date(2026, 3, 1)
    lines = [(D("100.00"), "VAT20"), (D("33.33"), "VAT20"), (D("49.99"), "US-NY"), (D("10.00"), None)]
    taxed = [tax_line(amount, code, RATES, on, "USD") for amount, code in lines]
    assert [(t.code, t.rate, t.amount) for t in taxed] == [
        ("VAT20", D("20"), D("20.00")), ("VAT20", D("20"), D("6.67")), ("US-NY", D("8.875"), D("4.44")), (None, D(0), D("0.00"))]
    rows = [TaxedAmount(amount, t.code, t.rate, t.amount) for (amount, _), t in zip(lines, taxed)]
    assert totals(rows, "USD") == Totals(D("193.32"), D("31.11"), D("224.43"))
    assert tax_summary(rows, "USD") == [
        TaxSummaryRow("VAT20", D("20"), D("133.33"), D("26.67")),
        TaxSummaryRow("US-NY", D("8.875"), D("49.99"), D("4.44")),
        TaxSummaryRow(None, D(0), D("10.00"), D("0.00")),
    ]


def test_i4_tax_is_rounded_per_line_not_per_invoice():
    """SPEC I4: three lines of 0.05 at 10 %: 0.005 each, rounded half-up to 0.01, so 0.03 of tax
    (the invoice's 0.15 x 10 % = 0.015 would have rounded to 0.02: tax is per line)."""
    rows = [TaxedAmount(D("0.05"), "T10", D("10"), line_tax(D("0.05"), D("10"), "USD")) for _ in range(3)]
    assert [r.tax for r in rows] == [D("0.01")] * 3
    assert totals(rows, "USD") == Totals(D("0.15"), D("0.03"), D("0.18"))


def test_i4_jpy_zero_decimals_and_kwd_three():
    """SPEC I4, M2: JPY has no minor unit, KWD three.

    JPY 1234 x 10 % = 123.4  -> 123;  1235 x 10 % = 123.5 -> 124 (half-up)
    KWD 12.345 x 5 % = 0.61725 -> 0.617;  0.010 x 5 % = 0.0005 -> 0.001
    """
    assert line_tax(D("1234"), D("10"), "JPY") == D("123")
    assert line_tax(D("1235"), D("10"), "JPY") == D("124")
    assert totals([TaxedAmount(D("1234"), "T", D("10"), D("123")), TaxedAmount(D("1235"), "T", D("10"), D("124"))], "JPY") == Totals(
        D("2469"), D("247"), D("2716"))
    assert line_tax(D("12.345"), D("5"), "KWD") == D("0.617")
    assert line_tax(D("0.010"), D("5"), "KWD") == D("0.001")
    assert str(line_tax(D("12.345"), D("5"), "KWD")) == "0.617"


def test_i5_a_credit_takes_back_exactly_the_tax_charged():
    """SPEC I5: half-up is symmetric about zero: -33.33 at 20 % is -6.67, the negation of 6.67."""
    assert line_tax(D("-33.33"), D("20"), "USD") == -line_tax(D("33.33"), D("20"), "USD") == D("-6.67")
    assert line_tax(D("-0.05"), D("10"), "USD") == D("-0.01")


def test_i2_exempt_customer_and_product_override():
    """SPEC I2: exemption beats every code; the product's code beats the customer's."""
    assert code_for("VAT20", None, exempt=False) == "VAT20"
    assert code_for("VAT20", "US-NY", exempt=False) == "US-NY"  # per-product override
    assert code_for("VAT20", "US-NY", exempt=True) is None
    assert code_for(None, None, exempt=False) is None
    exempt = tax_line(D("500.00"), code_for("VAT20", None, exempt=True), RATES, date(2026, 3, 1), "EUR")
    assert (exempt.code, exempt.rate, exempt.amount) == (None, D(0), D("0.00"))


def test_i3_rate_change_by_effective_date():
    """SPEC I3: the rate effective on the line's first day billed: VAT 19 % through June 30,
    21 % from July 1. 100.00 billed from June 30 -> 19.00; from July 1 -> 21.00."""
    assert rate_on(RATES, "VAT", date(2026, 6, 30)) == D("19")
    assert rate_on(RATES, "VAT", date(2026, 7, 1)) == D("21")
    assert tax_line(D("100.00"), "VAT", RATES, date(2026, 6, 30), "EUR").amount == D("19.00")
    assert tax_line(D("100.00"), "VAT", RATES, date(2026, 7, 1), "EUR").amount == D("21.00")
    with pytest.raises(NoTaxRate, match=r"tax code VAT has no rate effective on 2025-12-31 \(its first is from 2026-01-01\)"):
        rate_on(RATES, "VAT", date(2025, 12, 31))
    with pytest.raises(NoTaxRate, match="tax code 'GST' is unknown"):
        rate_on(RATES, "GST", date(2026, 1, 1))


def test_i6_a_negative_total_is_a_credit_note():
    """SPEC I6: a credit note is a document whose total is negative; zero is an invoice."""
    assert is_credit_note(D("-0.01")) and not is_credit_note(D("0.00")) and not is_credit_note(D("12.00"))


CURRENCIES = st.sampled_from(["USD", "JPY", "KWD", "EUR", "BHD"])


@settings(max_examples=300, deadline=None)
@given(cents=st.integers(-10**12, 10**12), rate=st.decimals(0, 100, places=4, allow_nan=False), currency=CURRENCIES)
def test_i4_i5_i7_line_tax_is_symmetric_and_the_auditor_rounds_it_the_same(cents, rate, currency):
    """SPEC I4, I5, I7: for any amount in a currency's minor units and any rate: a credit's tax
    is the negation of the charge's, and the auditor's own half-up rounding (exact Fractions)
    gives the engine's tax to the minor unit."""
    from w365.core.money import minor_units
    from w365.operations.audit.arithmetic import round_half_up as audit_round

    amount = Decimal(cents).scaleb(-minor_units(currency))
    tax = line_tax(amount, rate, currency)
    assert line_tax(-amount, rate, currency) == -tax
    assert tax == audit_round(Fraction(amount) * Fraction(rate) / 100, minor_units(currency))
