"""Numbers, amounts, dates and countries as people of a locale write them (issue 16, SPEC I13).

The invoice document is read by people, in the tenant's locale (``tenant.locale``, default
``en_US``): ``$1,234.56`` in en_US, ``1.234,56 €`` in de_DE, ``¥1,235`` for JPY, ``KWD 1,234.567``
for KWD. CLDR's patterns come through babel; the number of decimals of an amount is always the
currency's ISO 4217 minor unit (``w365.core.money.MINOR_UNITS``), never CLDR's cash digits (which
differ for IQD), and an amount is shown, never rounded: stored amounts are already rounded once
(SPEC M2), and :func:`money` refuses one that has more decimals than its currency allows.
"""

from __future__ import annotations

import copy
import re
from datetime import date
from decimal import Decimal
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import NumberPattern, get_currency_symbol, parse_pattern

from w365.core.limits import BadValue, show
from w365.core.money import MoneyError, PRICE_PLACES, as_currency, minor_units, plain

DEFAULT_LOCALE = "en_US"
NBSP = "\u00a0"
# Two-letter codes CLDR lists among territories that are not countries.
NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ"})


@lru_cache(maxsize=64)
def _locale(name: str) -> Locale:
    return Locale.parse(name)


def check_locale(value: str, what: str = "locale") -> str:
    """A locale CLDR knows, written ``language_TERRITORY`` (``en_US``, ``de_DE``, ``ja_JP``)."""
    text = (value or "").strip().replace("-", "_")
    if not re.fullmatch(r"[A-Za-z]{2,3}(_[A-Za-z0-9]{2,4}){0,2}", text):
        raise BadValue(what, f"{show(value)} is not a locale: write it like en_US or de_DE")
    try:
        loc = _locale(text)
    except (UnknownLocaleError, ValueError):
        raise BadValue(what, f"{show(value)} is not a locale babel/CLDR knows (e.g. en_US, de_DE, fr_FR, ja_JP)") from None
    return str(loc)


def check_country(value: str, what: str = "country") -> str:
    """An ISO 3166-1 alpha-2 country code (``US``, ``DE``), upper-cased."""
    code = (value or "").strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", code) or code in NOT_COUNTRIES or code not in _locale(DEFAULT_LOCALE).territories:
        raise BadValue(what, f"{show(value)} is not an ISO 3166 two-letter country code (e.g. US, DE, GB, JP)")
    return code


def country(code: str | None, locale: str) -> str:
    """The country's name in ``locale`` (``DE`` is "Germany" in en_US, "Deutschland" in de_DE)."""
    if not code:
        return ""
    return str(_locale(locale).territories.get(code, code))


def _pattern(locale: str, low: int, high: int) -> NumberPattern:
    pattern = copy.copy(parse_pattern(_locale(locale).currency_formats["standard"]))
    pattern.frac_prec = (low, high)
    return pattern


def _spaced(text: str, currency: str, locale: str) -> str:
    """CLDR's currency spacing, which babel leaves out: a symbol made of letters (``KWD``,
    ``CHF``) is kept apart from the digits by a no-break space (``KWD 1,234.567``)."""
    symbol = get_currency_symbol(currency, locale=_locale(locale))
    if symbol and symbol[-1].isalpha():
        text = re.sub(re.escape(symbol) + r"(?=[\d\-−])", symbol + NBSP, text)
    if symbol and symbol[0].isalpha():
        text = re.sub(r"(?<=\d)" + re.escape(symbol), NBSP + symbol, text)
    return text


def money(value: Decimal, currency: str, locale: str) -> str:
    """An amount with exactly its currency's minor units, in ``locale``'s pattern."""
    shown = as_currency(value, currency)  # refuses an amount with more places than the currency has
    places = minor_units(currency)
    text = _pattern(locale, places, places).apply(shown, _locale(locale), currency=currency, currency_digits=False)
    return _spaced(text, currency, locale)


def unit_price(value: Decimal, currency: str, locale: str) -> str:
    """A unit price: at least the currency's minor units, more when the price has them
    (``$20.00``, ``$1.234567``); prices keep up to six places (NUMERIC(18, 6))."""
    places = minor_units(currency)
    text = _pattern(locale, places, max(places, PRICE_PLACES)).apply(
        plain(value), _locale(locale), currency=currency, currency_digits=False, decimal_quantization=False)
    return _spaced(text, currency, locale)


def quantity(value: Decimal | int, locale: str) -> str:
    """A quantity as people write it: ``1,200`` and ``2.5`` in en_US, ``1.200`` and ``2,5`` in
    de_DE; never trailing zeros or an exponent (``1.2E+2``; issue 13)."""
    number = plain(Decimal(value))
    exponent = number.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    pattern = copy.copy(parse_pattern(_locale(locale).decimal_formats[None]))
    pattern.frac_prec = (places, places)
    return str(pattern.apply(number, _locale(locale)))


def percent(rate: Decimal, locale: str) -> str:
    """A tax rate given as a fraction (``0.19``) as ``locale`` writes a percentage (``19%``,
    ``19 %`` in de_DE, ``7.5%``): every digit the rate has, none added."""
    number = plain(Decimal(rate) * 100)
    exponent = number.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    pattern = copy.copy(parse_pattern(_locale(locale).percent_formats[None]))
    pattern.frac_prec = (places, places)
    return str(pattern.apply(Decimal(rate), _locale(locale)))


def day(value: date, locale: str) -> str:
    """A date in ``locale``'s medium form: ``Jan 15, 2026`` (en_US), ``15.01.2026`` (de_DE)."""
    return str(format_date(value, "medium", locale=_locale(locale)))


__all__ = ["DEFAULT_LOCALE", "MoneyError", "check_country", "check_locale", "country", "day", "money", "percent", "quantity", "unit_price"]
