"""Tax (issue 16, SPEC I1-I5): which code a line is taxed under, the rate on a day, the tax of a
line, and a document's subtotal, tax per code and total. Pure: plain values in, Decimals out.

Prices are tax-exclusive. A line's tax is its (already rounded) amount x rate / 100, rounded
once, half-up, to the currency's minor unit (as amounts are, SPEC M2); a document's tax total is
the sum of its lines' rounded taxes, and its total = subtotal + tax total. A credit line has the
same tax as the line it mirrors, negated: half-up rounding is symmetric about zero.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from w365.core import limits
from w365.core.money import divide_round, minor_units, product, sum_amounts

# Rates are percentages, kept to 4 places (NUMERIC(7, 4)): 20, 7.25, 8.875.
RATE_PLACES = 4
MAX_RATE = Decimal(100)
CODE_LENGTH = 24  # tax_code.code
_CODE = re.compile(r"[A-Z][A-Z0-9_-]*")
HELP_CODE = f"letters A-Z, digits, _ and -, starting with a letter (upper-cased), at most {CODE_LENGTH} characters"
HELP_RATE = f"percent, 0 to {MAX_RATE}, at most {RATE_PLACES} decimals (20 = 20 %)"

# code -> [(effective from, rate %)], sorted by effective date.
TaxRates = dict[str, list[tuple[date, Decimal]]]


class NoTaxRate(ValueError):
    """A tax code has no rate effective on the day asked (or is unknown)."""


@dataclass(frozen=True, slots=True)
class LineTax:
    """What a line is taxed under: its code (None: untaxed, e.g. an exempt customer), the rate
    in percent and the tax amount in the document's currency."""

    code: str | None
    rate: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class TaxedAmount:
    """One line as a document's totals need it: its amount and its tax."""

    amount: Decimal
    code: str | None
    rate: Decimal
    tax: Decimal


@dataclass(frozen=True, slots=True)
class TaxSummaryRow:
    """One row of a document's tax summary: code, rate, the amounts taxed at it and their tax."""

    code: str | None
    rate: Decimal
    taxable: Decimal
    tax: Decimal


@dataclass(frozen=True, slots=True)
class Totals:
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal


def check_code(value: Any, what: str = "tax_code") -> str:
    """A tax code as typed (``vat20`` -> ``VAT20``); raises ``limits.BadValue``."""
    code = limits.text(value.strip() if isinstance(value, str) else str(value), what, CODE_LENGTH).upper()
    if not _CODE.fullmatch(code):
        raise limits.BadValue(what, f"{limits.show(value)} is not a tax code ({HELP_CODE})")
    return code


def check_rate(value: Any, what: str = "rate") -> Decimal:
    """A rate in percent (``20``, ``8.875``); raises ``limits.BadValue``."""
    return limits.decimal(value, what, RATE_PLACES, MAX_RATE)


def code_for(customer_code: str | None, product_code: str | None, exempt: bool) -> str | None:
    """The code a line is taxed under (I2): an exempt customer's lines carry none; otherwise the
    product's code (the per-product override) beats the customer's; neither gives none."""
    if exempt:
        return None
    return product_code or customer_code


def rate_on(rates: TaxRates, code: str, on: date) -> Decimal:
    """The rate of ``code`` effective on ``on``: the latest one effective on or before it (I3).
    A line is taxed at the rate effective on its first day billed."""
    best = None
    for effective, rate in rates.get(code, ()):
        if effective <= on:
            best = rate
    if best is None:
        if code not in rates:
            raise NoTaxRate(f"tax code {code!r} is unknown")
        raise NoTaxRate(f"tax code {code} has no rate effective on {on} (its first is from {rates[code][0][0]})")
    return best


def line_tax(amount: Decimal, rate: Decimal, currency: str) -> Decimal:
    """amount x rate / 100, rounded once, half-up, to the currency's minor unit (I4)."""
    return divide_round(product(amount, rate), 100, minor_units(currency))


def tax_line(amount: Decimal, code: str | None, rates: TaxRates, on: date, currency: str) -> LineTax:
    """The tax of one line whose first day billed is ``on``; no code is no tax."""
    if code is None:
        return LineTax(None, Decimal(0), line_tax(amount, Decimal(0), currency))
    rate = rate_on(rates, code, on)
    return LineTax(code, rate, line_tax(amount, rate, currency))


def totals(lines: Iterable[TaxedAmount], currency: str) -> Totals:
    """A document's subtotal (sum of rounded line amounts), tax total (sum of rounded line
    taxes) and total = subtotal + tax total (I4)."""
    lines = list(lines)
    subtotal = sum_amounts((l.amount for l in lines), currency)
    tax_total = sum_amounts((l.tax for l in lines), currency)
    return Totals(subtotal, tax_total, sum_amounts((subtotal, tax_total), currency))


def tax_summary(lines: Iterable[TaxedAmount], currency: str) -> list[TaxSummaryRow]:
    """Tax per code and rate, in order of first appearance: what a document prints under its
    lines (I4). Taxable and tax are sums of the lines' rounded amounts and taxes, so the rows
    add up to the document's subtotal and tax total exactly."""
    rows: dict[tuple[str | None, Decimal], list[TaxedAmount]] = {}
    for l in lines:
        rows.setdefault((l.code, l.rate), []).append(l)
    return [
        TaxSummaryRow(code, rate, sum_amounts((l.amount for l in ls), currency), sum_amounts((l.tax for l in ls), currency))
        for (code, rate), ls in rows.items()
    ]


def is_credit_note(total: Decimal) -> bool:
    """A document whose total is negative is a credit note, never a negative invoice (I6)."""
    return total < 0
