"""Rows read from CSV files into the store: the import folder's files, their columns and how each
field is checked (issue 12), shared by ``w365 import`` and the price-list job.

Every problem names its file, row and column; a value longer than its column in the store is
refused by name. Field parsers raise :class:`BadField` with the reason; callers add the row.
"""

from __future__ import annotations

import csv
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

from w365.core import limits
from w365.core.money import MoneyError, check_currency
from w365.store.models import BillingContract, Customer, Product, ProductPrice, Provider, Subscription, TaxCode

# customers.csv's bill-to address (issue 16, SPEC I17): the customer columns of the same names.
BILLING_ADDRESS = ("billing_address_line1", "billing_address_line2", "billing_city", "billing_postal_code", "billing_region",
                   "billing_country")
# file -> (required columns, optional columns); loaded in this order.
FILES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "providers.csv": (("name", "kind"), ("connection_id", "alert_email")),
    "tax_codes.csv": (("code", "rate", "effective_from"), ("name",)),
    "customers.csv": (("name",), ("email", "salesperson", "provider_tenant_id", "tax_code", "tax_exempt_reference") + BILLING_ADDRESS
                      + ("billing_email",)),
    "products.csv": (("sku", "name", "kind"), ("provider", "offer_id", "qrb", "qrw_days", "tax_code")),
    "prices.csv": (("sku", "sales_unit", "currency", "cost_price", "selling_price", "effective_from"), ("price_list",)),
    "exchange_rates.csv": (("from_currency", "to_currency", "rate", "effective_from"), ()),
    "contracts.csv": (
        ("number", "customer", "frequency", "currency", "start_date"),
        ("end_date", "term_months", "next_invoice_date", "auto_renew", "refunds_allowed", "change_billing", "price_list", "salesperson"),
    ),
    "subscriptions.csv": (
        ("contract", "product", "provider", "name", "quantity", "selling_price", "cost_price", "sales_unit", "currency", "start_date"),
        ("qrb", "qrw_days", "provider_subscription_id", "provisioned_on", "usage_threshold", "markup_pct"),
    ),
}


# file -> column -> longest value (its column in the store, or the column it refers to). Every
# other column (numbers, dates, booleans, codes) takes at most DEFAULT_LENGTH characters.
_L = limits.column_length
TEXT_LENGTHS: dict[str, dict[str, int]] = {
    "providers.csv": {"name": _L(Provider.name), "connection_id": _L(Provider.connection_id), "alert_email": _L(Provider.alert_email)},
    "tax_codes.csv": {"name": _L(TaxCode.name)},
    "customers.csv": {"name": _L(Customer.name), "email": _L(Customer.email), "billing_email": _L(Customer.billing_email), "salesperson": _L(Customer.salesperson),
                      "provider_tenant_id": _L(Customer.provider_tenant_id), "tax_exempt_reference": _L(Customer.tax_exempt_reference),
                      # billing_country: its rule (two letters of ISO 3166) says more than "at most 2 characters".
                      **{col: _L(getattr(Customer, col)) for col in BILLING_ADDRESS if col != "billing_country"}},
    "products.csv": {"sku": _L(Product.sku), "name": _L(Product.name), "provider": _L(Provider.name), "offer_id": _L(Product.offer_id)},
    "prices.csv": {"sku": _L(Product.sku), "price_list": _L(ProductPrice.price_list)},
    "contracts.csv": {"number": _L(BillingContract.number), "customer": _L(Customer.name), "price_list": _L(BillingContract.price_list),
                      "salesperson": _L(BillingContract.salesperson)},
    "subscriptions.csv": {"contract": _L(BillingContract.number), "product": _L(Product.sku), "provider": _L(Provider.name),
                          "name": _L(Subscription.name), "provider_subscription_id": _L(Subscription.provider_subscription_id)},
}
DEFAULT_LENGTH = 64
# While reading, csv accepts values up to this long, so that a longer one than its column is
# refused by name (row and column) rather than by the csv module's 128 KiB limit.
FIELD_LIMIT = 1 << 20


@dataclass(frozen=True)
class RowError:
    file: str
    row: int  # line number in the file (the header is line 1)
    reason: str

    def __str__(self) -> str:
        return f"{self.file}, row {self.row}: {self.reason}"


class BadField(ValueError):
    """A value refused by its column's rule; the message names the column (a ValueError, so a
    pydantic validator can raise it and the row's error keeps these words)."""


def required(rec: dict[str, str], col: str) -> str:
    value = (rec.get(col) or "").strip()
    if not value:
        raise BadField(f"{col} is empty")
    return value


def optional(rec: dict[str, str], col: str) -> str | None:
    value = (rec.get(col) or "").strip()
    return value or None


def bounded(check: Callable[[Any, str], Any], value: str | None, col: str) -> Any:
    """``value`` checked by a ``w365.core.limits`` function (None stays None), as a row problem."""
    if value is None:
        return None
    try:
        return check(value, col)
    except limits.BadValue as exc:
        raise BadField(str(exc)) from None


def field_date(value: str | None, col: str) -> date | None:
    return bounded(limits.day, value, col)  # type: ignore[no-any-return]


def field_price(value: str | None, col: str) -> Decimal | None:
    return bounded(limits.price, value, col)  # type: ignore[no-any-return]


def field_bool(value: str | None, col: str, default: bool) -> bool:
    if value is None:
        return default
    v = value.lower()
    if v in ("true", "yes", "1", "y"):
        return True
    if v in ("false", "no", "0", "n"):
        return False
    raise BadField(f"{col} {value!r} is not true/false")


def field_enum(value: str | None, col: str, enum_cls: Any, default: Any) -> Any:
    if value is None:
        return default
    try:
        return enum_cls(value.lower())
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise BadField(f"{col} {value!r} is not one of {allowed}") from None


def field_currency(value: str, col: str = "currency") -> str:
    try:
        return check_currency(value.upper())
    except MoneyError as exc:
        raise BadField(str(exc)) from None


@contextmanager
def csv_field_limit(limit: int) -> Iterator[None]:
    old = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def read_csv(path: Path, required: tuple[str, ...], optional: tuple[str, ...], lengths: dict[str, int],
             errors: list[RowError]) -> list[tuple[int, dict[str, str]]] | None:
    """One CSV file's rows as (line number, {column: value}); None if its header is unusable.

    Nothing is lost or guessed: a column named twice, a row with more (or fewer) values than the
    header names, bytes that are not UTF-8 and a value longer than its column are problems,
    reported by row and column in ``errors`` (a DictReader would keep the last of two columns of
    the same name and drop extra values silently).
    """
    name = path.name
    rows: list[tuple[int, dict[str, str]]] = []
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as fh, csv_field_limit(FIELD_LIMIT):
        reader = csv.reader(fh, strict=True)
        line = 0
        try:
            header = [h.strip() for h in next(reader, [])]
            line = reader.line_num
            bad_header: list[str] = []
            for i, col in enumerate(header, start=1):
                try:
                    limits.utf8(col, f"column {i}")
                except limits.BadValue as exc:
                    bad_header.append(str(exc))
            if bad_header:
                errors += [RowError(name, 1, reason) for reason in bad_header]
                return None
            seen: dict[str, int] = {}
            for i, col in enumerate(header, start=1):
                if not col:
                    bad_header.append(f"column {i} has no name")
                elif col in seen:
                    bad_header.append(f"column {col!r} appears twice (columns {seen[col]} and {i}); one value would overwrite the other")
                else:
                    seen[col] = i
            missing = [c for c in required if c not in seen]
            unknown = [c for c in seen if c not in required + optional]
            if missing:
                bad_header.append(f"missing column(s) {', '.join(missing)}")
            if unknown:
                bad_header.append(f"unknown column(s) {', '.join(c if c.isprintable() else repr(c) for c in unknown)}")
            if bad_header:
                errors.append(RowError(name, 1, "; ".join(bad_header)))
                return None
            for record in reader:
                row, line = line + 1, reader.line_num
                if not record:
                    continue  # a blank line
                if len(record) != len(header):
                    if len(record) > len(header):
                        extra = ", ".join(limits.show(v) for v in record[len(header):][:3])
                        what = f"the extra value(s) {extra} would be lost"
                    else:
                        what = f"no value for {', '.join(header[len(record):])}; write empty values as ,,"
                    n = len(record)
                    errors.append(RowError(name, row, f"{n} value{'s' if n != 1 else ''}, but the header names {len(header)} columns: {what}"))
                    continue
                for col, value in zip(header, record):
                    try:
                        limits.text(limits.utf8(value, col).strip(), col, lengths.get(col, DEFAULT_LENGTH))
                    except limits.BadValue as exc:
                        errors.append(RowError(name, row, str(exc)))
                rows.append((row, dict(zip(header, record))))
        except csv.Error as exc:  # an unclosed quote, a NUL byte, a value longer than FIELD_LIMIT
            errors.append(RowError(name, line + 1, f"not readable as CSV from this row on ({exc}); nothing of this file was read"))
            return None
    return rows
