"""SPEC I12, I13 (issue 16): amounts, prices, quantities, dates and countries on the invoice
document, as people of the tenant's locale write them (w365.core.local_format)."""

from datetime import date
from decimal import Decimal

import pytest

from w365.core import local_format as fmt
from w365.core.limits import BadValue
from w365.core.money import MoneyError

NBSP = "\u00a0"


@pytest.mark.parametrize(
    "value,currency,locale,expected",
    [
        ("1341.56", "USD", "en_US", "$1,341.56"),
        ("-5.00", "USD", "en_US", "-$5.00"),  # a credit
        ("0.00", "USD", "en_US", "$0.00"),
        ("100031", "JPY", "en_US", "¥100,031"),  # JPY: 0 decimals, none added
        ("1028.929", "KWD", "en_US", f"KWD{NBSP}1,028.929"),  # KWD: 3 decimals; CLDR's spacing after a letter code
        ("1234.56", "EUR", "de_DE", f"1.234,56{NBSP}€"),  # de_DE: "." groups, "," decimals, symbol after
        ("1234.56", "USD", "de_DE", f"1.234,56{NBSP}$"),
        ("1.234", "IQD", "en_US", f"IQD{NBSP}1.234"),  # ISO 4217's 3 decimals, not CLDR's cash digits (0)
        ("1234.5600", "USD", "en_US", "$1,234.56"),  # PostgreSQL's NUMERIC(18, 4) scale is not shown
    ],
)
def test_i13_money_has_the_currency_minor_units_in_the_locale(value: str, currency: str, locale: str, expected: str) -> None:
    assert fmt.money(Decimal(value), currency, locale) == expected


def test_i13_money_shows_never_rounds() -> None:
    """A stored amount is rounded once when billed (SPEC M2): the document refuses to round it again."""
    with pytest.raises(MoneyError, match="more precision than JPY allows"):
        fmt.money(Decimal("100.5"), "JPY", "en_US")


@pytest.mark.parametrize(
    "value,currency,locale,expected",
    [
        ("20.000000", "USD", "en_US", "$20.00"),  # at least the minor units
        ("1.234567", "USD", "en_US", "$1.234567"),  # every place the price has (NUMERIC(18, 6))
        ("1234.500000", "JPY", "en_US", "¥1,234.5"),  # a JPY price per period may have decimals
        ("1000.123500", "KWD", "en_US", f"KWD{NBSP}1,000.1235"),
        ("10.170000", "EUR", "de_DE", f"10,17{NBSP}€"),
    ],
)
def test_i12_unit_prices_keep_their_places(value: str, currency: str, locale: str, expected: str) -> None:
    assert fmt.unit_price(Decimal(value), currency, locale) == expected


@pytest.mark.parametrize(
    "value,locale,expected",
    [("120.000000", "en_US", "120"), ("2.500000", "en_US", "2.5"), ("1200", "en_US", "1,200"), ("0E-6", "en_US", "0"),
     ("2.500000", "de_DE", "2,5"), ("1200.000000", "de_DE", "1.200")],
)
def test_i12_quantities_as_people_write_them(value: str, locale: str, expected: str) -> None:
    """Never trailing zeros or an exponent (Decimal("120.000000").normalize() is 1.2E+2)."""
    assert fmt.quantity(Decimal(value), locale) == expected


def test_i12_dates_percentages_and_countries_in_the_locale() -> None:
    assert fmt.day(date(2026, 1, 15), "en_US") == "Jan 15, 2026"
    assert fmt.day(date(2026, 1, 15), "de_DE") == "15.01.2026"
    assert fmt.percent(Decimal("0.19"), "en_US") == "19%"
    assert fmt.percent(Decimal("0.075"), "en_US") == "7.5%"
    assert fmt.percent(Decimal("0.19"), "de_DE") == f"19{NBSP}%"
    assert (fmt.country("DE", "en_US"), fmt.country("DE", "de_DE"), fmt.country(None, "en_US")) == ("Germany", "Deutschland", "")


def test_i17_locale_and_country_are_checked_with_one_clear_line() -> None:
    assert fmt.check_locale("de-DE") == "de_DE" and fmt.check_locale(" en_US ") == "en_US"
    assert fmt.check_country(" de ") == "DE"
    with pytest.raises(BadValue, match=r"^locale 'xx_YY' is not a locale babel/CLDR knows"):
        fmt.check_locale("xx_YY")
    with pytest.raises(BadValue, match=r"^locale 'english' is not a locale: write it like en_US or de_DE$"):
        fmt.check_locale("english")
    for bad in ("Germany", "ZZ", "EU", "D1", ""):
        with pytest.raises(BadValue, match="is not an ISO 3166 two-letter country code"):
            fmt.check_country(bad, "billing_country")
