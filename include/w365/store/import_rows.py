"""The import format's rows as pydantic models (issue 14): one model per file, one field per
column, each column's rule written once as an annotated type.

A row is validated as a whole; its first problem (in column order) becomes the row's error,
worded by the column's rule (``w365.store.csv_rows``: "start_date '2026-13-01' is not a date
...", "currency: unknown currency 'XYZ' ..."), so every error names its file, row and column.
What needs the store (an unknown customer, a duplicate, a period boundary) is checked by the
importer once the row's columns are valid.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Callable, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo

from w365.core import limits
from w365.core.local_format import check_country
from w365.core.tax import check_code, check_rate
from w365.core.vocabulary import QRB, ChangeBilling, ProductKind, ProviderKind
from w365.store.csv_rows import BadField, bounded, field_bool, field_currency, field_date, field_enum, field_price, optional, required

M = TypeVar("M", bound=BaseModel)


def _column(rule: Callable[[Any, str], Any]) -> BeforeValidator:
    """A column's rule, called with the cell's text and the column's name."""

    def check(value: Any, info: ValidationInfo) -> Any:
        return rule(value, str(info.field_name))

    return BeforeValidator(check)


def _text(value: Any, col: str) -> str:
    return required({col: value or ""}, col)


def _opt_text(value: Any, col: str) -> str | None:
    return optional({col: value or ""}, col)


def _unit(value: Any, col: str) -> str:
    return _text(value, col).upper()


def _enum(cls: Any, default: Any, needed: bool = False) -> BeforeValidator:
    return _column(lambda v, col: field_enum(_text(v, col) if needed else _opt_text(v, col), col, cls, default))


def _bounded(check: Callable[[Any, str], Any], needed: bool = False) -> BeforeValidator:
    return _column(lambda v, col: bounded(check, _text(v, col) if needed else _opt_text(v, col), col))


def _flag(default: bool) -> BeforeValidator:
    return _column(lambda v, col: field_bool(_opt_text(v, col), col, default))


Text = Annotated[str, _column(_text)]
OptText = Annotated[str | None, _column(_opt_text), Field(default=None, validate_default=True)]
Unit = Annotated[str, _column(_unit)]
Currency = Annotated[str, _column(lambda v, col: field_currency(_text(v, col)))]
Day = Annotated[date, _column(lambda v, col: field_date(_text(v, col), col))]
OptDay = Annotated[date | None, _column(lambda v, col: field_date(_opt_text(v, col), col)), Field(default=None, validate_default=True)]
Price = Annotated[Decimal, _column(lambda v, col: field_price(_text(v, col), col))]


def _country(value: Any, col: str) -> str | None:
    text = _opt_text(value, col)
    return None if text is None else check_country(text, col)


OptCountry = Annotated[str | None, _column(_country), Field(default=None, validate_default=True)]


def _currency_code(value: Any, col: str) -> str:
    """A currency column of exchange_rates.csv: the error names the column first."""
    try:
        return field_currency(_text(value, col))
    except BadField as exc:
        if str(exc).endswith("is empty"):
            raise
        raise BadField(f"{col}: {exc}") from None


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ProviderRow(_Row):
    name: Text
    kind: Annotated[ProviderKind, _enum(ProviderKind, None, needed=True)]
    connection_id: OptText
    alert_email: OptText


class TaxCodeRow(_Row):
    """tax_codes.csv: one rate of a code from a day on (SPEC I1, I9)."""

    code: Annotated[str, _bounded(check_code, needed=True)]
    rate: Annotated[Decimal, _bounded(check_rate, needed=True)]
    effective_from: Day
    name: OptText


OptTaxCode = Annotated[str | None, _bounded(check_code), Field(default=None, validate_default=True)]


class CustomerRow(_Row):
    name: Text
    email: OptText
    # I21: where invoices are e-mailed; one or more addresses, each checked.
    billing_email: Annotated[str | None, _bounded(lambda v, col: ", ".join(limits.email_addresses(v, col))),
                             Field(default=None, validate_default=True)]
    salesperson: OptText
    provider_tenant_id: OptText
    tax_code: OptTaxCode
    tax_exempt_reference: OptText
    # The bill-to address of the invoice document (issue 16, SPEC I17); all optional.
    billing_address_line1: OptText
    billing_address_line2: OptText
    billing_city: OptText
    billing_postal_code: OptText
    billing_region: OptText
    billing_country: OptCountry


class ProductRow(_Row):
    sku: Text
    name: Text
    kind: Annotated[ProductKind, _enum(ProductKind, None, needed=True)]
    provider: OptText
    offer_id: OptText
    qrb: Annotated[QRB, _enum(QRB, QRB.WINDOW), Field(default=None, validate_default=True)]
    qrw_days: Annotated[int | None, _bounded(limits.qrw_days), Field(default=None, validate_default=True)]
    tax_code: OptTaxCode


class PriceRow(_Row):
    sku: Text
    sales_unit: Unit
    currency: Currency
    cost_price: Price
    selling_price: Price
    effective_from: Day
    price_list: OptText


class RateRow(_Row):
    from_currency: Annotated[str, _column(_currency_code)]
    to_currency: Annotated[str, _column(_currency_code)]
    rate: Annotated[Decimal, _bounded(limits.exchange_rate, needed=True)]
    effective_from: Day


class ContractRow(_Row):
    number: Text
    customer: Text
    frequency: Unit
    currency: Currency
    start_date: Day
    end_date: OptDay
    term_months: Annotated[int | None, _bounded(limits.term_months), Field(default=None, validate_default=True)]
    next_invoice_date: OptDay
    auto_renew: Annotated[bool, _flag(True), Field(default=None, validate_default=True)]
    refunds_allowed: Annotated[bool, _flag(False), Field(default=None, validate_default=True)]
    change_billing: Annotated[ChangeBilling, _enum(ChangeBilling, ChangeBilling.IMMEDIATE),
                              Field(default=None, validate_default=True)]
    price_list: OptText
    salesperson: OptText


class SubscriptionRow(_Row):
    contract: Text
    product: Text
    provider: Text
    name: Text
    quantity: Annotated[int, _bounded(limits.quantity, needed=True)]
    selling_price: Price
    cost_price: Price
    sales_unit: Unit
    currency: Currency
    start_date: Day
    qrb: Annotated[QRB | None, _enum(QRB, None), Field(default=None, validate_default=True)]
    qrw_days: Annotated[int | None, _bounded(limits.qrw_days), Field(default=None, validate_default=True)]
    provider_subscription_id: OptText
    provisioned_on: OptDay
    usage_threshold: Annotated[Decimal | None, _bounded(limits.threshold), Field(default=None, validate_default=True)]
    markup_pct: Annotated[Decimal | None, _bounded(limits.markup_pct), Field(default=None, validate_default=True)]


def first_problem(exc: ValidationError) -> str:
    """A row's first problem in column order, in its column rule's words."""
    error = exc.errors(include_url=False)[0]
    cause = (error.get("ctx") or {}).get("error")
    if cause is not None:
        return str(cause)
    column = ".".join(str(part) for part in error["loc"])
    return f"{column} is empty" if error["type"] == "missing" else f"{column}: {error['msg']}"


def parse(model: type[M], record: dict[str, str]) -> M:
    """``record`` (column -> cell text) as ``model``; raises :class:`BadField` with the first problem."""
    try:
        return model.model_validate(record)
    except ValidationError as exc:
        raise BadField(first_problem(exc)) from None
