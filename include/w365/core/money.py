"""Money: Decimal only, ISO 4217 minor units, half-up rounding once per line (SPEC M1, M2).

Modelled on beancount's ``core/amount.py``: one constructor for Decimals (``D``), an immutable
``Amount`` that carries its currency, and rounding that names its mode instead of trusting the
ambient ``decimal`` context. Arithmetic that may not be exact (proration, unit mapping) is done
with ``fractions.Fraction`` and rounded exactly once, so no intermediate ever loses a digit.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction
from typing import Union

# The currencies w365 invoices in. An unknown code is an error, never a silent two-decimal
# default: KWD and JPY invoices would be wrong by 10x / 100x.
CURRENCIES = (
    "AED", "ARS", "AUD", "BGN", "BHD", "BRL", "CAD", "CHF", "CLP", "CNY", "COP", "CZK", "DKK", "EGP", "EUR", "GBP", "HKD",
    "HUF", "IDR", "ILS", "INR", "IQD", "ISK", "JOD", "JPY", "KES", "KRW", "KWD", "LYD", "MXN", "MYR", "NGN", "NOK", "NZD",
    "OMR", "PEN", "PHP", "PLN", "QAR", "RON", "SAR", "SEK", "SGD", "THB", "TND", "TRY", "TWD", "UAH", "USD", "VND", "ZAR",
)
# Where CLDR's currency digits (babel) follow cash practice instead of ISO 4217's minor unit.
ISO_4217_NOT_CLDR = {"IQD": 3}


def _minor_units() -> dict[str, int]:
    """ISO 4217 minor units (SPEC M2), from CLDR's currency data through babel."""
    from babel.numbers import get_currency_precision

    return {code: ISO_4217_NOT_CLDR.get(code, get_currency_precision(code)) for code in CURRENCIES}


MINOR_UNITS: dict[str, int] = _minor_units()

# Unit prices per billing period are kept to this many places (NUMERIC(18, 6) in the store).
PRICE_PLACES = 6
# Quantities (usage can be fractional) are kept to this many places.
QUANTITY_PLACES = 6

# A private context for the few Decimal operations that are not exact by construction; it is
# passed explicitly, so the ambient (thread-local, mutable) context never decides a result.
_CTX = decimal.Context(prec=38, rounding=ROUND_HALF_UP, traps=[InvalidOperation, decimal.DivisionByZero])

Number = Union[Decimal, int, str, Fraction]


class MoneyError(ValueError):
    """Bad monetary input: names the offending value and why it was refused."""


class UnknownCurrency(MoneyError):
    pass


def D(value: Number | None) -> Decimal:
    """The one way to make a Decimal from input. Floats are refused: they are already wrong."""
    if isinstance(value, bool):
        raise MoneyError(f"{value!r} is a boolean, not an amount")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        text = value.strip().replace("_", "")
        if not text:
            raise MoneyError("an empty string is not an amount")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise MoneyError(f"{value!r} is not a decimal number") from None
    elif isinstance(value, Fraction):
        raise MoneyError(f"{value!r} is a Fraction; round it with round_half_up()")
    elif isinstance(value, float):
        raise MoneyError(f"{value!r} is a float; pass a string or Decimal (SPEC M1)")
    elif value is None:
        raise MoneyError("no amount given")
    else:
        raise MoneyError(f"{value!r} ({type(value).__name__}) is not an amount")
    if not result.is_finite():
        raise MoneyError(f"{value!r} is not a finite number")
    return result


def minor_units(currency: str) -> int:
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise UnknownCurrency(f"unknown currency {currency!r}: not an ISO 4217 code w365 knows") from None


def check_currency(currency: str) -> str:
    minor_units(currency)
    return currency


def check_places(value: Decimal, places: int, what: str) -> Decimal:
    """Refuse input with more decimals than the column keeps instead of rounding it silently."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        raise MoneyError(f"{what} {value} has {-exponent} decimal places; at most {places} are allowed")
    return value


def round_half_up(value: Fraction | Decimal | int, places: int) -> Decimal:
    """Round exactly, half away from zero, to ``places`` decimals (Decimal, int or Fraction)."""
    exponent = _EXPONENTS.get(places) or Decimal(1).scaleb(-places)
    if isinstance(value, (Decimal, int)):
        return Decimal(value).quantize(exponent, rounding=ROUND_HALF_UP, context=_CTX)
    frac = Fraction(value)
    return divide_round(Decimal(frac.numerator), frac.denominator, places) if frac.denominator != 1 else Decimal(frac.numerator).quantize(exponent, rounding=ROUND_HALF_UP, context=_CTX)


_EXPONENTS = {p: Decimal(1).scaleb(-p) for p in range(0, 13)}


def product(*factors: Decimal | int) -> Decimal:
    """An exact product (38 significant digits hold any product of our 18-digit columns)."""
    result = Decimal(1)
    for f in factors:
        result = _CTX.multiply(result, Decimal(f))
    return result


def divide_round(numerator: Decimal, denominator: int, places: int) -> Decimal:
    """numerator / denominator rounded half-up to ``places``, exactly.

    The quotient is computed to 38 significant digits, then rounded once. That equals rounding
    the exact rational: a quotient N/d can only sit within 1e-38 of a rounding boundary without
    being on it if d exceeds ~1e30, and our denominators are day counts and month counts.
    """
    if denominator <= 0:
        raise MoneyError(f"cannot divide by {denominator}")
    exponent = _EXPONENTS.get(places) or Decimal(1).scaleb(-places)
    return _CTX.divide(numerator, Decimal(denominator)).quantize(exponent, rounding=ROUND_HALF_UP, context=_CTX)


def round_money(value: Fraction | Decimal | int, currency: str) -> Decimal:
    """Round an amount once, half-up, to the currency's minor unit (SPEC M2)."""
    return round_half_up(value, minor_units(currency))


def as_currency(value: Decimal, currency: str) -> Decimal:
    """A stored amount shown with its currency's minor units (PostgreSQL returns the column's
    scale, e.g. 100.0000; amounts are stored already rounded, so this never changes a value)."""
    exponent = Decimal(1).scaleb(-minor_units(currency))
    shown = value.quantize(exponent, context=_CTX)
    if shown != value:
        raise MoneyError(f"{value} {currency} has more precision than {currency} allows")
    return shown


def plain(value: Decimal | int) -> Decimal:
    """A quantity as people write it: no trailing zeros and never an exponent, so ``str()`` and
    ``format(_, "f")`` give ``120``, ``2.5``, ``0`` (``Decimal("120.000000").normalize()`` alone
    is ``1.2E+2``; issue 13). The value is unchanged."""
    d = value if isinstance(value, Decimal) else Decimal(value)
    return Decimal(format(d.normalize(context=_CTX), "f")) if d else Decimal(0)


def plain_price(value: Decimal | int) -> Decimal:
    """A unit price as people read it: trailing zeros dropped, but at least two places
    (``12.00``, ``1.234567``; stored as NUMERIC(18, 6)). The value is unchanged."""
    d = plain(value)
    exponent = d.as_tuple().exponent
    return d.quantize(Decimal("0.01")) if isinstance(exponent, int) and exponent > -2 else d


def line_amount(quantity: Decimal | int, unit_price: Decimal, days: int, period_days: int, currency: str) -> Decimal:
    """quantity x unit price x days / period days, computed exactly and rounded once (M2, B3)."""
    if period_days <= 0:
        raise MoneyError(f"period of {period_days} days")
    return divide_round(product(quantity, unit_price, days), period_days, minor_units(currency))


@dataclass(frozen=True, slots=True)
class Amount:
    """An immutable amount in one currency; adding two currencies is an error, not a guess."""

    number: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.number, Decimal):
            object.__setattr__(self, "number", D(self.number))
        check_currency(self.currency)

    @classmethod
    def zero(cls, currency: str) -> "Amount":
        return cls(Decimal(0).quantize(Decimal(1).scaleb(-minor_units(currency))), currency)

    def _same(self, other: "Amount") -> None:
        if not isinstance(other, Amount):
            raise TypeError(f"cannot combine Amount with {type(other).__name__}")
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} and {other.currency}")

    def __add__(self, other: "Amount") -> "Amount":
        self._same(other)
        return Amount(_CTX.add(self.number, other.number), self.currency)

    def __sub__(self, other: "Amount") -> "Amount":
        self._same(other)
        return Amount(_CTX.subtract(self.number, other.number), self.currency)

    def __neg__(self) -> "Amount":
        return Amount(_CTX.minus(self.number), self.currency)

    def rounded(self) -> "Amount":
        return Amount(round_money(self.number, self.currency), self.currency)

    def __str__(self) -> str:
        return f"{self.number} {self.currency}"


def sum_amounts(numbers: Iterable[Decimal], currency: str) -> Decimal:
    """An invoice total: the sum of its rounded line amounts (SPEC M2), exact, in ``currency``
    (one home for every total: the dispatcher, previews and drafts)."""
    total = Amount.zero(currency).number
    for n in numbers:
        total = _CTX.add(total, n)
    return total
