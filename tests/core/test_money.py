"""SPEC M1 (Decimal only, never float) and M2 (round once, half-up, ISO 4217 minor units)."""

from decimal import Decimal
from fractions import Fraction

import pytest

from w365.core.money import Amount, D, MoneyError, UnknownCurrency, line_amount, round_money, sum_amounts


def test_m1_constructor_refuses_float_and_garbage():
    assert D("10.10") == Decimal("10.10")
    assert D(3) == Decimal(3)
    with pytest.raises(MoneyError, match="float"):
        D(10.1)
    with pytest.raises(MoneyError, match="not a decimal"):
        D("ten")
    with pytest.raises(MoneyError, match="finite"):
        D("NaN")


@pytest.mark.parametrize(
    "currency,value,expected",
    [
        ("USD", "2.345", "2.35"),  # half-up, not banker's
        ("USD", "2.344", "2.34"),
        ("USD", "-2.345", "-2.35"),  # symmetric for credits
        ("JPY", "1234.5", "1235"),  # 0 decimals
        ("KWD", "1.23450", "1.235"),  # 3 decimals
        ("KWD", "1.2344", "1.234"),
    ],
)
def test_m2_rounding_to_minor_units(currency, value, expected):
    assert round_money(Decimal(value), currency) == Decimal(expected)
    assert str(round_money(Decimal(value), currency)) == expected


def test_m2_exact_fraction_rounding_uses_no_ambient_context():
    import decimal

    ctx = decimal.getcontext()
    old = ctx.prec, ctx.rounding
    ctx.prec, ctx.rounding = 3, decimal.ROUND_DOWN  # a hostile ambient context changes nothing
    try:
        # 10 seats x 12.50 x 17/31 = 68.548387... -> 68.55
        assert line_amount(10, Decimal("12.50"), 17, 31, "USD") == Decimal("68.55")
        assert round_money(Fraction(1, 3), "KWD") == Decimal("0.333")
    finally:
        ctx.prec, ctx.rounding = old


def test_m2_invoice_total_is_sum_of_rounded_lines():
    lines = [line_amount(1, Decimal("10"), 1, 3, "USD") for _ in range(3)]  # 3.33 each
    assert sum_amounts(lines, "USD") == Decimal("9.99")  # not 10.00


def test_m1_amount_is_immutable_and_refuses_mixed_currencies():
    a = Amount(Decimal("1.00"), "USD")
    with pytest.raises(MoneyError, match="USD and EUR"):
        a + Amount(Decimal("1.00"), "EUR")
    with pytest.raises(AttributeError):
        a.number = Decimal("2")  # type: ignore[misc]
    assert (a + a).number == Decimal("2.00")


def test_m2_unknown_currency_is_an_error_not_two_decimals():
    with pytest.raises(UnknownCurrency, match="XYZ"):
        round_money(Decimal("1.005"), "XYZ")
