"""The auditor's own arithmetic and calendar (see ``w365.operations.audit``): exact Fraction and
integer maths, its own half-up rounding, its own anchor-aligned periods and ISO 4217 minor units."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

from dateutil.relativedelta import relativedelta

ONE_DAY = timedelta(days=1)
PRICE_PLACES = 6  # unit prices per billing period are kept to 6 places (SPEC B5)


# ISO 4217 List One: digits after the decimal point ("minor unit") of every current code. Kept
# here, not borrowed from w365.money (the engine's) nor from CLDR (which differs for IQD, RSD...);
# tests/test_audit.py cross-checks it against w365.money so the two cannot drift apart unseen.
_ISO_4217 = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
    2: "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN "
    "BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL "
    "GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD "
    "LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN "
    "PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB "
    "TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG",
}
ISO_4217_MINOR_UNITS: dict[str, int] = {code: digits for digits, codes in _ISO_4217.items() for code in codes.split()}


# --------------------------------------------------------------------------------------------
# Arithmetic and calendar (pure)


def round_half_up(value: Fraction | Decimal | int, places: int) -> Decimal:
    """``value`` rounded once to ``places`` decimals, ties away from zero (SPEC M2's ROUND_HALF_UP,
    symmetric for credits). Done on integers, so no Decimal context can round in between."""
    num, den = value.as_integer_ratio()
    return _round_ratio(num, den, places)


def _round_ratio(num: int, den: int, places: int) -> Decimal:
    """num / den (den > 0) rounded half away from zero: floor(|num| x 10^places / den + 1/2)."""
    units = (2 * abs(num) * 10**places + den) // (2 * den)
    return Decimal(f"{'-' if num < 0 and units else ''}{units}E-{places}")  # a string: exact, whatever the context


def add_months(anchor: date, months: int) -> date:
    """The anchor moved by whole months, clamped to the month's end (Jan 31 + 1 = Feb 28/29)."""
    return anchor + relativedelta(months=months)


def period_index(anchor: date, months: int, day: date) -> int:
    """Which period of ``months`` months from ``anchor`` holds ``day`` (negative before it).
    Every boundary is anchor + n x months, never one period chained onto the last (SPEC B2)."""
    n = ((day.year - anchor.year) * 12 + day.month - anchor.month) // months
    while add_months(anchor, n * months) > day:
        n -= 1
    while add_months(anchor, (n + 1) * months) <= day:
        n += 1
    return n


@lru_cache(maxsize=65536)
def period_of(anchor: date, months: int, day: date) -> tuple[date, date]:
    """The period ``[start, end)`` holding ``day`` (cached: lines of a contract share a few)."""
    n = period_index(anchor, months, day)
    return add_months(anchor, n * months), add_months(anchor, (n + 1) * months)


def billed_periods(anchor: date, months: int, billed_from: date | None, next_invoice: date | None) -> list[tuple[date, date]]:
    """Periods from the one holding ``billed_from`` up to (not including) the next invoice date."""
    if billed_from is None or next_invoice is None:
        return []
    out, n = [], period_index(anchor, months, billed_from)
    while add_months(anchor, n * months) < next_invoice:
        out.append((add_months(anchor, n * months), add_months(anchor, (n + 1) * months)))
        n += 1
    return out


def bill_from_day(effective: date, before: tuple[int, str], after: tuple[int, str], on_renewal: bool = False) -> date:
    """SPEC S6: a change that takes billable licences away (an active subscription losing
    quantity or its active status) bills the old values through D and the new from D + 1;
    any other change (more licences, activation, price only) bills the new values from D.
    A scheduled On Renewal change bills from D, the new term's first day, either way."""
    (q0, status0), (q1, status1) = before, after
    negative = status0 == "active" and (status1 != "active" or q1 < q0)
    return effective + ONE_DAY if negative and not on_renewal else effective


def _scheduled_bill_from(effective: date, direction: str, change_effective: str) -> date:
    """A scheduled change's bill-from day, from the direction it had when it was scheduled."""
    return effective + ONE_DAY if direction == "negative" and change_effective != "on_renewal" else effective


def line_amount(quantity: Decimal, unit_price: Decimal, days: int, period_days: int, places: int) -> Decimal:
    """SPEC M2/M3: quantity x unit price x days / period days, exact, rounded once."""
    qn, qd = quantity.as_integer_ratio()
    pn, pd = unit_price.as_integer_ratio()
    return _round_ratio(qn * pn * days, qd * pd * period_days, places)


# --------------------------------------------------------------------------------------------
# Formatting


def _money(value: Decimal, currency: str) -> str:
    """An amount shown with its currency's minor units when it has no more (PostgreSQL reads
    NUMERIC(18, 4) as 127.4200; SQLite keeps the text as written)."""
    places = ISO_4217_MINOR_UNITS.get(currency)
    if places is not None and value == round_half_up(value, places):
        return format(round_half_up(value, places), "f")
    return format(value, "f")


def _qty(q: Decimal) -> str:
    return format(q.quantize(Decimal(1)) if q == q.to_integral_value() else q.normalize(), "f")


def _billed_text(values: dict[Decimal, Decimal]) -> str:
    """{unit price: quantity} as "10 x 10.000000 + 2 x 12.500000", or "nothing"."""
    if not values:
        return "nothing"
    return " + ".join(f"{_qty(q)} x {round_half_up(p, PRICE_PLACES)}" for p, q in sorted(values.items()))
