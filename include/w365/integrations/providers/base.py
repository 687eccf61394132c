"""The provider interface (SPEC P1) and the record shapes every provider speaks.

A provider is where subscriptions are provisioned and usage comes from: Microsoft Partner Center
(REST), a file drop (a folder of CSV/JSON exports of the same shapes, for providers without an
API) or Manual (no API: people provision, alerted by the manual sync job). Each implementation
yields raw records; parsing and validation happen here, once, so one malformed record is
reported and the rest go on.

Subscription records have Partner Center's subscription-resource shape: ``id``, ``offerId``,
``offerName``, ``friendlyName``, ``quantity``, ``unitType``, ``status`` (active, suspended,
deleted, ...), ``autoRenewEnabled``, ``billingCycle`` (monthly, annual, triennial),
``termDuration`` (P1M, P1Y, P3Y), ``creationDate``, ``effectiveStartDate``,
``commitmentEndDate``, ``cancellationAllowedUntilDate``, listed per customer tenant id.

Usage line items carry customer, subscription, meter, usage date, quantity, unit price, pre-tax
total and currency; :func:`usage_frame` turns them into a pandas DataFrame of strings with the
columns in ``USAGE_COLUMNS`` (numbers stay decimal text: never float, SPEC M1).
"""

from __future__ import annotations

import abc
import functools
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Callable, Iterable, Iterator

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo

from w365.core import limits
from w365.errors import ExternalError

if TYPE_CHECKING:  # pandas is imported when usage is read, not when this module is
    import pandas as pd


class BadRecord(ValueError):
    """A provider record that cannot be used as it stands; the message says why."""


class ProviderUnavailable(ExternalError):
    """The provider as a whole could not be read (connection, API down after retries, no export)."""


# Partner Center subscription status -> w365 subscription status. "pending" is not provisioned
# yet: nothing to record until it is.
STATUS_MAP = {
    "active": "active",
    "suspended": "suspended",
    "disabled": "suspended",
    "deleted": "deactivated",
    "expired": "deactivated",
    "cancelled": "deactivated",
    "pending": None,
}
# billingCycle -> the sales unit / contract frequency it is billed in.
BILLING_CYCLE_UNITS = {"monthly": "MONTHLY", "quarterly": "QUARTERLY", "annual": "ANNUAL", "triennial": "TRIENNIAL"}


@dataclass
class SubscriptionBatch:
    """One customer's subscription records (raw), or why they could not be read."""

    customer_tenant_id: str | None
    records: list[Any] = field(default_factory=list)
    error: str | None = None


def _text(value: Any, key: str, required: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise BadRecord(f"'{key}' is missing")
        return None
    if isinstance(value, (dict, list)):
        raise BadRecord(f"'{key}' is not a string")
    return str(value).strip()


def _instant(value: Any, key: str) -> datetime | None:
    text = _text(value, key)
    if text is None:
        return None
    try:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRecord(f"'{key}' {text!r} is not an ISO date/time") from None
    return instant if instant.tzinfo else instant.replace(tzinfo=timezone.utc)


def _quantity(value: Any, key: str = "quantity") -> int:
    """A licence count within ``w365.core.limits`` (0 to 1,000,000): a provider record beyond it is
    quarantined with the reason, the same on SQLite and PostgreSQL (issue 12)."""
    if isinstance(value, bool) or value is None:
        raise BadRecord(f"'quantity' {value!r} is not a whole number")
    if isinstance(value, int):
        number: int | Decimal = value
    else:
        text = str(value).strip()
        try:
            number = Decimal(text) if len(text) <= 64 else Decimal("NaN")
        except Exception:  # noqa: BLE001 - decimal.InvalidOperation and friends
            raise BadRecord(f"'quantity' {limits.show(value)} is not a whole number") from None
        if not number.is_finite() or number != number.to_integral_value():
            raise BadRecord(f"'quantity' {limits.show(value)} is not a whole number")
    try:
        return limits.quantity(number, "'quantity'")
    except limits.BadValue as exc:
        raise BadRecord(str(exc)) from None


@functools.cache
def _text_lengths() -> dict[str, int]:
    """Record fields -> the column they are stored in or matched against (w365.store.models,
    imported when the first record is parsed)."""
    from w365.store.models import Customer, Product, Subscription

    return {"id": limits.column_length(Subscription.provider_subscription_id),
            "customerId": limits.column_length(Customer.provider_tenant_id), "offerId": limits.column_length(Product.offer_id)}


def _bounded_text(value: Any, key: str, required: bool = False) -> str | None:
    """A text field no longer than its column, without control characters (issue 12)."""
    text = _text(value, key, required)
    if text is None:
        return None
    try:
        return limits.text(text, f"'{key}'", _text_lengths()[key])
    except limits.BadValue as exc:
        raise BadRecord(str(exc)) from None


def _bool(value: Any, key: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise BadRecord(f"'{key}' {value!r} is not true/false")


def _status(value: Any, key: str) -> str:
    status = (_text(value, key, required=True) or "").lower()
    if status not in STATUS_MAP:
        raise BadRecord(f"'{key}' {status!r} is not one of {', '.join(STATUS_MAP)}")
    return status


def _lower(value: Any, key: str) -> str | None:
    text = _text(value, key)
    return text.lower() if text else None


def _rule(check: Callable[[Any, str], Any]) -> BeforeValidator:
    """A field's rule, called with the record's value and the field's name in the record."""

    def run(value: Any, info: ValidationInfo) -> Any:
        return check(value, _ALIASES.get(str(info.field_name), str(info.field_name)))

    return BeforeValidator(run)


_OPTIONAL = Field(default=None, validate_default=True)


class ProviderSubscription(BaseModel):
    """A subscription record in Partner Center's subscription-resource shape, validated field by
    field (pydantic, issue 14); each field's problem names the record's field."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    id: Annotated[str, _rule(lambda v, k: _bounded_text(v, k, required=True))]
    customer_tenant_id: Annotated[str | None, Field(default=None, validate_default=True, alias="customerId"), _rule(_bounded_text)]
    status: Annotated[str, _rule(_status)]  # as the provider says (lower case)
    quantity: Annotated[int, _rule(_quantity)]
    offer_id: Annotated[str, Field(alias="offerId"), _rule(lambda v, k: _bounded_text(v, k, required=True))]
    offer_name: Annotated[str | None, Field(default=None, validate_default=True, alias="offerName"), _rule(_text)]
    friendly_name: Annotated[str | None, Field(default=None, validate_default=True, alias="friendlyName"), _rule(_text)]
    unit_type: Annotated[str | None, Field(default=None, validate_default=True, alias="unitType"), _rule(_text)]
    auto_renew: Annotated[bool | None, Field(default=None, validate_default=True, alias="autoRenewEnabled"), _rule(_bool)]
    billing_cycle: Annotated[str | None, Field(default=None, validate_default=True, alias="billingCycle"), _rule(_lower)]
    term_duration: Annotated[str | None, Field(default=None, validate_default=True, alias="termDuration"), _rule(_text)]
    creation_date: Annotated[datetime | None, Field(default=None, validate_default=True, alias="creationDate"), _rule(_instant)]
    effective_start_date: Annotated[datetime | None, Field(default=None, validate_default=True, alias="effectiveStartDate"),
                                    _rule(_instant)]
    commitment_end_date: Annotated[datetime | None, Field(default=None, validate_default=True, alias="commitmentEndDate"),
                                   _rule(_instant)]
    cancellation_allowed_until: Annotated[datetime | None, Field(default=None, validate_default=True, alias="cancellationAllowedUntilDate"),
                                          _rule(_instant)]

    @property
    def w365_status(self) -> str | None:
        return STATUS_MAP.get(self.status)

    @property
    def name(self) -> str:
        return self.friendly_name or self.offer_name or self.offer_id




_ALIASES = {name: f.alias for name, f in ProviderSubscription.model_fields.items() if f.alias}


def parse_subscription(raw: Any, customer_tenant_id: str | None = None) -> ProviderSubscription:
    """Validate one subscription record; raises :class:`BadRecord` with the first problem."""
    if not isinstance(raw, dict):
        raise BadRecord(f"a subscription record must be an object, not {type(raw).__name__}")
    try:
        record = ProviderSubscription.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        cause = (error.get("ctx") or {}).get("error")
        raise BadRecord(str(cause) if cause is not None else f"'{error['loc'][0]}' is missing") from None
    if record.customer_tenant_id:
        return record
    if not customer_tenant_id:
        raise BadRecord("no customer tenant id ('customerId')")
    return record.model_copy(update={"customer_tenant_id": customer_tenant_id})


# --------------------------------------------------------------------------------------------
# Usage line items

USAGE_COLUMNS = (
    "customer", "subscription", "meter_id", "meter_name", "unit", "usage_date", "quantity", "unit_price",
    "pre_tax_total", "currency",
)
# Names a provider may use for each column (Partner Center's first).
USAGE_ALIASES: dict[str, tuple[str, ...]] = {
    "customer": ("customerId", "customer_id", "customer"),
    "subscription": ("subscriptionId", "subscription_id", "entitlementId", "subscription"),
    "meter_id": ("meterId", "meter_id"),
    "meter_name": ("meterName", "meter_name"),
    "unit": ("unitOfMeasure", "unitType", "unit"),
    "usage_date": ("usageDate", "usage_date"),
    "quantity": ("quantity",),
    "unit_price": ("unitPrice", "unit_price"),
    "pre_tax_total": ("preTaxTotal", "pretaxTotal", "billingPreTaxTotal", "pre_tax_total"),
    "currency": ("currency", "billingCurrency", "pricingCurrency"),
}
REQUIRED_USAGE = ("subscription", "meter_id", "usage_date", "quantity", "unit_price", "pre_tax_total", "currency")


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        # Never produced by our JSON parsing (parse_float=Decimal). Kept as text that is not a
        # number, so the validator rejects the line with the others instead of guessing (M1).
        return f"float {value!r}"
    return str(value)


def usage_frame(records: Iterable[dict[str, Any]]) -> "pd.DataFrame":
    """Usage records (dicts with provider column names) -> DataFrame of strings, USAGE_COLUMNS."""
    import pandas as pd

    columns: dict[str, list[str | None]] = {c: [] for c in USAGE_COLUMNS}
    lookups = {c: USAGE_ALIASES[c] for c in USAGE_COLUMNS}
    for rec in records:
        if not isinstance(rec, dict):
            rec = {}
        for col, names in lookups.items():
            value = None
            for name in names:
                if name in rec:
                    value = rec[name]
                    break
            columns[col].append(_cell(value))
    return pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in columns.items()})


def normalise_usage_columns(frame: "pd.DataFrame") -> "pd.DataFrame":
    """Rename a provider's columns (CSV export) to USAGE_COLUMNS; missing optional ones are empty."""
    rename: dict[str, str] = {}
    present = set(frame.columns)
    for col, names in USAGE_ALIASES.items():
        for name in names:
            if name in present:
                rename[name] = col
                break
    out = frame.rename(columns=rename)
    missing = [c for c in REQUIRED_USAGE if c not in out.columns]
    if missing:
        raise BadRecord(f"usage export has no column for {', '.join(missing)}")
    for col in USAGE_COLUMNS:
        if col not in out.columns:
            out[col] = None
    return out[list(USAGE_COLUMNS)]


# --------------------------------------------------------------------------------------------


class ProviderClient(abc.ABC):
    """What the sync jobs need from a provider."""

    kind: str = ""
    has_api = True  # False for Manual: nothing to read

    @abc.abstractmethod
    def subscription_batches(self) -> Iterator[SubscriptionBatch]:
        """Every customer's subscription records, one batch per customer. A customer that cannot
        be read is a batch with ``error`` set; the provider as a whole failing raises
        :class:`ProviderUnavailable`."""

    @abc.abstractmethod
    def usage(self, day: date, kind: str) -> "pd.DataFrame | None":
        """Usage line items for ``day`` (``kind`` interim or final) as a :func:`usage_frame`;
        None when the provider has nothing for that day (no export yet)."""

    def usage_batches(self, day: date, kind: str) -> "Iterator[pd.DataFrame] | None":
        """The same line items in chunks, so a large day never sits in memory whole (issue 15).
        A provider that can read part of its export at a time overrides this; a failure while
        reading raises :class:`ProviderUnavailable`."""
        frame = self.usage(day, kind)
        return None if frame is None else iter([frame])

    def close(self) -> None:  # noqa: B027 - optional
        pass

    def __enter__(self) -> "ProviderClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
