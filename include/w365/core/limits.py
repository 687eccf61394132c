"""Bounds on everything w365 accepts as input (issue 12), in one place.

The initial import, the CLI, the portal's request models, the provider sync's record parsing and
the change service (``w365.billing.changes``) all check numbers, dates and text here, so the four
surfaces cannot drift, and the embedded default (SQLite, which stores any integer, any decimal
text and text of any length) refuses what PostgreSQL would, with the same message, before anything
is written. The bounds are far beyond what a CSP reaches and well inside the store's columns
(docs/import-format.md, "Limits"):

* a licence quantity is a whole number, 0 to 1,000,000;
* a selling or cost price (per sales unit) is 0 to 1,000,000,000 with at most 6 decimals:
  NUMERIC(18, 6) holds 999,999,999,999.999999, which leaves room for the unit mapping
  (triennial = 36 x monthly) and exchange rates;
* quantity x price (what a subscription bills per sales unit) is at most 1,000,000,000,000:
  invoice amounts are NUMERIC(18, 4), at most 99,999,999,999,999.9999, so a line at the bounds
  still fits with room for a multi-year period and an invoice of many lines;
* a markup is 0 to 1,000 % with at most 4 decimals (NUMERIC(9, 4)); a usage threshold 0 to
  1,000,000,000,000 with at most 4 decimals (NUMERIC(18, 4));
* usage line items: quantity and unit price below 10^12 with at most 6 decimals, pre-tax total
  below 10^14 with at most 4 (their columns; a day's sum is checked again, ``w365.usage``);
* an amount paid (the accounting feed) fits its column, NUMERIC(18, 4);
* a quantity-reduction window is 0 to 366 days, a contract term 1 to 120 months, invoicing
  ahead (``advance_days``) 0 to 366 days;
* a date is 2000-01-01 to 2099-12-31;
* text is at most as long as its column in ``w365.store.models`` (:func:`column_length`);
* a record id is 1 to 2,147,483,647 (PostgreSQL ``integer``);
* a custom billing/sales unit is 1 to 120 months long; an exchange rate is above 0, at most
  1,000,000, with at most 8 decimals (NUMERIC(18, 8)); a demo history 0 to 3,660 days.

Every check raises :class:`BadValue` (a :class:`~w365.errors.W365Error` and a ``ValueError``),
whose message names the field, shows the value and says the bound: ``quantity 3000000000 is
above the maximum of 1,000,000 licences``. Callers label the field as their users know it (a CSV
column, a CLI flag, a JSON field) and wrap the error as their surface reports errors.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from w365.errors import W365Error

MIN_DATE = date(2000, 1, 1)
MAX_DATE = date(2099, 12, 31)
MAX_QUANTITY = 1_000_000
MAX_PRICE = Decimal("1000000000")
PRICE_PLACES = 6
MAX_VALUE = Decimal("1000000000000")  # quantity x price per sales unit
MAX_MARKUP_PCT = Decimal("1000")
MARKUP_PLACES = 4
MAX_THRESHOLD = Decimal("1000000000000")
MONEY_PLACES = 4
MAX_STORED_AMOUNT = Decimal("99999999999999.9999")  # NUMERIC(18, 4): a payment reported for an invoice
MAX_QRW_DAYS = 366
MAX_TERM_MONTHS = 120
MAX_ADVANCE_DAYS = 366
MAX_ID = 2_147_483_647
MAX_UNIT_MONTHS = 120  # a custom billing/sales unit (issue 13): as long as the longest contract term
MAX_RATE = Decimal("1000000")  # an exchange rate (issue 13): 1 of one currency in another
RATE_PLACES = 8  # NUMERIC(18, 8)
MAX_HISTORY_DAYS = 3660  # `w365 demo load --history-days` (issue 13): ten years of operation
_UNIT_CODE = re.compile(r"[A-Z][A-Z0-9_]*")
# Usage line items: column -> (digits before the point, decimals), the store's columns.
USAGE_NUMBERS: dict[str, tuple[int, int]] = {"quantity": (12, 6), "unit_price": (12, 6), "pre_tax_total": (14, 4)}

# What --help says (the same words as docs/import-format.md).
HELP_QUANTITY = f"whole number of licences, 0 to {MAX_QUANTITY:,}"
HELP_PRICE = f"per sales unit, 0 to {MAX_PRICE:,}, at most {PRICE_PLACES} decimals; quantity x price at most {MAX_VALUE:,}"
HELP_DATE = f"YYYY-MM-DD, {MIN_DATE} to {MAX_DATE}"
HELP_UNIT_MONTHS = f"whole number of months, 1 to {MAX_UNIT_MONTHS}"
HELP_RATE = f"above 0, at most {MAX_RATE:,}, at most {RATE_PLACES} decimals"
HELP_UNIT_CODE = "letters A-Z, digits and _, starting with a letter (upper-cased), as long as its column"

_WHOLE = re.compile(r"[+-]?[0-9]+")  # ASCII digits only: "٣" is not 3 to PostgreSQL
_WIDE = Context(prec=100)  # exact for every product and quantization of bounded values
_SHOWN = 40  # longest value quoted in a message; a longer one is cut, its length said


class BadValue(W365Error, ValueError):
    """A value out of its bounds or not of its kind. ``what`` names the field, ``detail`` the
    rest (value and reason): argparse and pydantic put their own field names in front."""

    def __init__(self, what: str, detail: str):
        self.what = what
        self.detail = detail
        super().__init__(f"{what} {detail}" if what else detail)


def show(value: Any) -> str:
    """A value for a message: quoted, control characters and undecodable bytes escaped, cut
    when long (a 200 KB field is not echoed back)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > _SHOWN:
        return f"{text[:_SHOWN - 10]!r}... ({len(text):,} characters)"
    return repr(text)


def _plain(value: Any) -> str:
    """A number as the user wrote it (stripped), for messages about its size."""
    text = value.strip() if isinstance(value, str) else str(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN - 10]}... ({len(text):,} characters)"


# --------------------------------------------------------------------------------------------
# Kinds


def whole(value: Any, what: str, low: int = 0, high: int = MAX_QUANTITY, unit: str = "") -> int:
    """A whole number from int or decimal digits, ``low`` to ``high`` inclusive."""
    if isinstance(value, bool) or value is None:
        raise BadValue(what, f"{show(value)} is not a whole number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            raise BadValue(what, f"{show(value)} is not a whole number")
        if value.adjusted() > 18:
            raise BadValue(what, f"{_plain(value)} is above the maximum of {high:,}{unit}")
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not _WHOLE.fullmatch(text):
            raise BadValue(what, f"{show(value)} is not a whole number")
        if len(text.lstrip("+-").lstrip("0")) > 18:  # before int(): no 200 KB of digits
            if text.startswith("-"):
                raise BadValue(what, f"{_plain(value)} is negative" if low == 0 else f"{_plain(value)} is below the minimum of {low:,}")
            raise BadValue(what, f"{_plain(value)} is above the maximum of {high:,}{unit}")
        number = int(text)
    else:
        raise BadValue(what, f"{show(value)} is not a whole number")
    if number < low:
        raise BadValue(what, f"{number} is negative" if low == 0 else f"{number} is below the minimum of {low:,}")
    if number > high:
        raise BadValue(what, f"{_plain(value)} is above the maximum of {high:,}{unit}")
    return number


def decimal(value: Any, what: str, places: int, high: Decimal, low: Decimal = Decimal(0)) -> Decimal:
    """An exact decimal from a Decimal, int or decimal text (never a float, SPEC M1), ``low`` to
    ``high`` inclusive, with at most ``places`` decimals (more are refused, never rounded)."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        kind = "a float; write it as decimal text (SPEC M1)" if isinstance(value, float) else "not a decimal number"
        raise BadValue(what, f"{show(value)} is {kind}")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        text = value.strip().replace("_", "")
        if not text.isascii():
            raise BadValue(what, f"{show(value)} is not a decimal number")
        if len(text) > 64:  # no decimal within the bounds is written that long
            raise BadValue(what, f"{show(value)} is not a decimal number of at most 64 characters")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise BadValue(what, f"{show(value)} is not a decimal number") from None
    else:
        raise BadValue(what, f"{show(value)} is not a decimal number")
    if not number.is_finite():
        raise BadValue(what, f"{show(value)} is not a finite number")
    if number.is_zero():
        number = abs(number)  # -0 is 0
    if number < low:
        raise BadValue(what, f"{_plain(value)} is negative" if low == 0 else f"{_plain(value)} is below the minimum of {low:,}")
    if number > high:
        raise BadValue(what, f"{_plain(value)} is above the maximum of {high:,}")
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > places:
        scaled = number.quantize(Decimal(1).scaleb(-places), context=_WIDE)
        if scaled != number:
            raise BadValue(what, f"{_plain(value)} has {-exponent} decimal places; at most {places} are allowed")
        number = scaled  # 1.50000000: trailing zeros only, kept at the column's scale
    return number


def day(value: Any, what: str) -> date:
    """A calendar date (``date`` or ISO ``YYYY-MM-DD``) from MIN_DATE to MAX_DATE."""
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        parsed = value
    elif isinstance(value, str) and len(value.strip()) <= 10:
        try:
            parsed = date.fromisoformat(value.strip())
        except ValueError:
            raise BadValue(what, f"{show(value)} is not a date (YYYY-MM-DD)") from None
    else:
        raise BadValue(what, f"{show(value)} is not a date (YYYY-MM-DD)")
    return in_range(parsed, what)


def in_range(value: date, what: str) -> date:
    if value < MIN_DATE:
        raise BadValue(what, f"{value} is before {MIN_DATE}, the earliest date w365 accepts")
    if value > MAX_DATE:
        raise BadValue(what, f"{value} is after {MAX_DATE}, the latest date w365 accepts")
    return value


def instant(value: Any, what: str, naive_is_utc: bool = False) -> datetime:
    """An ISO date-time with its zone (``Z`` or an offset), on a date within the bounds. With
    ``naive_is_utc`` one without a zone is taken as UTC."""
    text = value.strip() if isinstance(value, str) else ""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00")) if 10 < len(text) <= 40 else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise BadValue(what, f"{show(value)} is not a date-time (YYYY-MM-DDTHH:MM with a zone)")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        if not naive_is_utc:
            raise BadValue(what, f"{show(value)} has no time zone; add Z or an offset such as +02:00")
        parsed = parsed.replace(tzinfo=timezone.utc)
    in_range(parsed.date(), what)
    return parsed


def day_or_instant(value: Any, what: str) -> date | datetime:
    """A run's as-of: a tenant date ``YYYY-MM-DD`` or an ISO instant with its zone."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and len(text) > 10:
        return instant(text, what)
    return day(text, what)


def month(value: Any, what: str) -> date:
    """A month ``YYYY-MM`` (its first day)."""
    text = value.strip() if isinstance(value, str) else ""
    if not re.fullmatch(r"\d{4}-\d{2}", text):
        raise BadValue(what, f"{show(value)} is not a month (YYYY-MM)")
    return day(f"{text}-01", what)


def flag(value: Any, what: str) -> bool:
    """true/false (also yes/no, y/n, 1/0); anything else is refused, never read as false."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if value is not None else ""
    if text in ("true", "yes", "y", "1"):
        return True
    if text in ("false", "no", "n", "0"):
        return False
    raise BadValue(what, f"{show(value)} is not true/false")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def text(value: str, what: str, max_length: int) -> str:
    """Text no longer than its column (PostgreSQL refuses longer; SQLite would keep it) and
    without control characters (PostgreSQL cannot store NUL; a tab or line break in a name is a
    broken file, not a name)."""
    if len(value) > max_length:
        raise BadValue(what, f"is {len(value):,} characters long; at most {max_length} are allowed")
    bad = _CONTROL.search(value)
    if bad:
        raise BadValue(what, f"{show(value)} contains the control character U+{ord(bad.group()):04X} at character {bad.start() + 1}")
    return value


_ADDRESS = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\".]+(?:\.[^@\s,;<>\".]+)+")


def email_addresses(value: str, what: str) -> list[str]:
    """One or more e-mail addresses separated by commas or semicolons (a billing e-mail, I21):
    each ``local@domain.tld`` without spaces, quotes or angle brackets, so none can smuggle a
    header or a second recipient into a message."""
    found = [a.strip() for a in re.split(r"[,;]", value) if a.strip()]
    if not found:
        raise BadValue(what, "has no e-mail address")
    for a in found:
        if not _ADDRESS.fullmatch(a):
            raise BadValue(what, f"{show(a)} is not an e-mail address (name@example.com)")
    return found


def column_length(column: Any) -> int:
    """The length of a ``String(n)`` model column, e.g. ``column_length(Customer.name)``."""
    length = getattr(getattr(column, "type", None), "length", None)
    if not isinstance(length, int):
        raise TypeError(f"{column} is not a String(n) column")
    return length


def utf8(value: str, what: str) -> str:
    """Text read with ``errors="surrogateescape"`` that held bytes which are not UTF-8."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        byte = ord(bad) - 0xDC00 if 0xDC80 <= ord(bad) <= 0xDCFF else None
        shown = f"byte 0x{byte:02X}" if byte is not None else f"character {bad!r}"
        raise BadValue(what, f"is not UTF-8 text ({shown} at character {exc.start + 1}); save the file as UTF-8") from None
    return value


# --------------------------------------------------------------------------------------------
# The domain's bounds


def quantity(value: Any, what: str = "quantity") -> int:
    return whole(value, what, 0, MAX_QUANTITY, " licences")


def price(value: Any, what: str = "price") -> Decimal:
    return decimal(value, what, PRICE_PLACES, MAX_PRICE)


def markup_pct(value: Any, what: str = "markup_pct") -> Decimal:
    return decimal(value, what, MARKUP_PLACES, MAX_MARKUP_PCT)


def threshold(value: Any, what: str = "usage_threshold") -> Decimal:
    return decimal(value, what, MONEY_PLACES, MAX_THRESHOLD)


def stored_amount(value: Any, what: str = "amount") -> Decimal:
    """An amount reported about an invoice (a payment): whatever its column holds."""
    return decimal(value, what, MONEY_PLACES, MAX_STORED_AMOUNT)


def qrw_days(value: Any, what: str = "qrw_days") -> int:
    return whole(value, what, 0, MAX_QRW_DAYS, " days")


def term_months(value: Any, what: str = "term_months") -> int:
    return whole(value, what, 1, MAX_TERM_MONTHS, " months")


def advance_days(value: Any, what: str = "advance_days") -> int:
    return whole(value, what, 0, MAX_ADVANCE_DAYS, " days")


def record_id(value: Any, what: str = "id") -> int:
    return whole(value, what, 1, MAX_ID)


def unit_months(value: Any, what: str = "months") -> int:
    """The length of a recurring billing/sales unit (the unit mapping, SPEC B1, B5)."""
    return whole(value, what, 1, MAX_UNIT_MONTHS, " months")


def unit_code(value: Any, what: str, max_length: int) -> str:
    """A unit mapping code (``SEMIANNUAL``), upper-cased: what contracts' ``frequency`` and
    subscriptions' ``sales_unit`` name."""
    code = text(value.strip() if isinstance(value, str) else str(value), what, max_length).upper()
    if not _UNIT_CODE.fullmatch(code):
        raise BadValue(what, f"{show(value)} is not a unit code ({HELP_UNIT_CODE})")
    return code


def exchange_rate(value: Any, what: str = "rate") -> Decimal:
    """An exchange rate (SPEC S1): above 0, at most MAX_RATE, at most RATE_PLACES decimals."""
    number = decimal(value, what, RATE_PLACES, MAX_RATE)
    if number == 0:
        raise BadValue(what, f"{_plain(value)} is not above 0; an exchange rate is a positive number")
    return number


def history_days(value: Any, what: str = "history_days") -> int:
    return whole(value, what, 0, MAX_HISTORY_DAYS, " days")


def subscription_value(licences: int, selling_price: Decimal, cost_price: Decimal | None = None, what: str = "quantity x price") -> None:
    """What a subscription bills per sales unit (quantity x the higher of its prices) must fit
    an invoice line with room."""
    top = max(selling_price, cost_price if cost_price is not None else selling_price)
    total = _WIDE.multiply(Decimal(licences), top)
    if total > MAX_VALUE:
        raise BadValue(what, f"{licences:,} x {top:,} = {total:,} is above the maximum of {MAX_VALUE:,} per sales unit")


def usage_number_pattern(column: str) -> str:
    """The regular expression a usage line's number (decimal text) must match: within its column."""
    digits, places = USAGE_NUMBERS[column]
    return rf" *[+-]?[0-9]{{1,{digits}}}(?:\.[0-9]{{0,{places}}}0*)? *"

