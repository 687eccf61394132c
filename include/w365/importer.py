"""Initial data load from a folder of CSV files (``w365 import DIR``); format in docs/import-format.md.

All or nothing: every row of every file is checked first and every problem is reported with its
file, row and reason; only a clean load is written, in one transaction. Subscriptions get their
activation License Change Log (source = import), so the ledger holds from the first day.
"""

from __future__ import annotations

import csv
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from w365 import limits
from w365.calendar import BillingIntervalDetail
from w365.db.models import (
    QRB,
    BillingContract,
    ChangeBilling,
    ChangeSource,
    Customer,
    ExchangeRate,
    Product,
    ProductKind,
    ProductPrice,
    Provider,
    ProviderKind,
    Subscription,
    UnitMapping,
)
from w365.errors import UsageError, W365Error
from w365.money import MoneyError, check_currency
from w365.subscriptions import create_subscription

log = logging.getLogger(__name__)

# file -> (required columns, optional columns); loaded in this order.
FILES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "providers.csv": (("name", "kind"), ("connection_id", "alert_email")),
    "customers.csv": (("name",), ("email", "salesperson", "provider_tenant_id")),
    "products.csv": (("sku", "name", "kind"), ("provider", "offer_id", "qrb", "qrw_days")),
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
    "customers.csv": {"name": _L(Customer.name), "email": _L(Customer.email), "salesperson": _L(Customer.salesperson),
                      "provider_tenant_id": _L(Customer.provider_tenant_id)},
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
MAX_LISTED = 200  # problems listed in the message; all are in ImportFailed.errors


@dataclass(frozen=True)
class RowError:
    file: str
    row: int  # line number in the file (the header is line 1)
    reason: str

    def __str__(self) -> str:
        return f"{self.file}, row {self.row}: {self.reason}"


class ImportFailed(W365Error):
    def __init__(self, errors: list[RowError]):
        self.errors = errors
        listing = "\n".join(f"  {e}" for e in errors[:MAX_LISTED])
        if len(errors) > MAX_LISTED:
            listing += f"\n  ... and {len(errors) - MAX_LISTED} more"
        super().__init__(f"import refused, nothing was written; {len(errors)} problem(s):\n{listing}")


@dataclass
class _Ctx:
    file: str = ""
    row: int = 0
    errors: list[RowError] = field(default_factory=list)

    def fail(self, reason: str) -> None:
        self.errors.append(RowError(self.file, self.row, reason))


class _Bad(Exception):
    pass


def _req(rec: dict[str, str], col: str) -> str:
    value = (rec.get(col) or "").strip()
    if not value:
        raise _Bad(f"{col} is empty")
    return value


def _opt(rec: dict[str, str], col: str) -> str | None:
    value = (rec.get(col) or "").strip()
    return value or None


def _bounded(check: Callable[[Any, str], Any], value: str | None, col: str) -> Any:
    """``value`` checked by a ``w365.limits`` function (None stays None), as a row problem."""
    if value is None:
        return None
    try:
        return check(value, col)
    except limits.BadValue as exc:
        raise _Bad(str(exc)) from None


def _date(value: str | None, col: str) -> date | None:
    return _bounded(limits.day, value, col)  # type: ignore[no-any-return]


def _price(value: str | None, col: str) -> Decimal | None:
    return _bounded(limits.price, value, col)  # type: ignore[no-any-return]


def _bool(value: str | None, col: str, default: bool) -> bool:
    if value is None:
        return default
    v = value.lower()
    if v in ("true", "yes", "1", "y"):
        return True
    if v in ("false", "no", "0", "n"):
        return False
    raise _Bad(f"{col} {value!r} is not true/false")


def _enum(value: str | None, col: str, enum_cls: Any, default: Any) -> Any:
    if value is None:
        return default
    try:
        return enum_cls(value.lower())
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise _Bad(f"{col} {value!r} is not one of {allowed}") from None


def _currency(value: str, col: str = "currency") -> str:
    try:
        return check_currency(value.upper())
    except MoneyError as exc:
        raise _Bad(str(exc)) from None


@contextmanager
def _csv_field_limit(limit: int) -> Iterator[None]:
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
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as fh, _csv_field_limit(FIELD_LIMIT):
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


def read_folder(folder: Path) -> dict[str, list[tuple[int, dict[str, str]]]]:
    """Read every known CSV in ``folder``; unknown files are an error (a typo loses data)."""
    if not folder.is_dir():
        raise UsageError(f"argument FOLDER: {folder} is not a folder")
    found: dict[str, list[tuple[int, dict[str, str]]]] = {}
    errors: list[RowError] = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() != ".csv":
            continue
        if path.name not in FILES:
            errors.append(RowError(repr(path.name)[1:-1], 0, f"unknown file; expected one of {', '.join(FILES)}"))
            continue
        required, optional = FILES[path.name]
        rows = read_csv(path, required, optional, TEXT_LENGTHS.get(path.name, {}), errors)
        if rows is not None:
            found[path.name] = rows
    if errors:
        raise ImportFailed(errors)
    if not found:
        raise UsageError(f"argument FOLDER: {folder} has none of {', '.join(FILES)}")
    return found


def import_folder(session: Session, folder: Path, *, now: datetime) -> dict[str, int]:
    """Validate everything, then write everything, in the caller's transaction."""
    data = read_folder(folder)
    ctx = _Ctx()
    counts: dict[str, int] = {}
    units = {u.code: u.months for u in session.scalars(select(UnitMapping))}
    providers = {p.name: p for p in session.scalars(select(Provider))}
    customers = {c.name: c for c in session.scalars(select(Customer))}
    products = {p.sku: p for p in session.scalars(select(Product))}
    contracts = {c.number: c for c in session.scalars(select(BillingContract))}

    # Rows refused in this load, by file and key: a later row that refers to one is told so,
    # rather than that the key is unknown.
    refused: dict[str, dict[str, int]] = {}
    keys = {"providers.csv": "name", "customers.csv": "name", "products.csv": "sku", "contracts.csv": "number"}

    def each(name: str, fn: Callable[[dict[str, str]], None]) -> None:
        rows = data.get(name, [])
        ctx.file = name
        for line, rec in rows:
            ctx.row = line
            before = len(ctx.errors)
            try:
                with session.begin_nested():
                    fn(rec)
            except _Bad as exc:
                ctx.fail(str(exc))
            except (W365Error, MoneyError) as exc:
                ctx.fail(str(exc))
            except (IntegrityError, DataError) as exc:
                ctx.fail(f"refused by the database: {str(exc.orig).splitlines()[0]}")
            if len(ctx.errors) > before and name in keys:
                key = (rec.get(keys[name]) or "").strip()
                if key:
                    refused.setdefault(name, {}).setdefault(key, line)
        counts[name.removesuffix(".csv")] = len(rows)

    def unknown(what: str, file: str, key: str) -> _Bad:
        row = refused.get(file, {}).get(key)
        if row is not None:
            return _Bad(f"{what} {key!r} is refused itself ({file}, row {row})")
        return _Bad(f"unknown {what} {key!r}")

    def provider_row(rec: dict[str, str]) -> None:
        name = _req(rec, "name")
        if name in providers:
            raise _Bad(f"provider {name!r} exists already")
        p = Provider(name=name, kind=_enum(_req(rec, "kind"), "kind", ProviderKind, None), connection_id=_opt(rec, "connection_id"), alert_email=_opt(rec, "alert_email"))
        session.add(p)
        session.flush()
        providers[name] = p

    def customer_row(rec: dict[str, str]) -> None:
        name = _req(rec, "name")
        if name in customers:
            raise _Bad(f"customer {name!r} exists already")
        c = Customer(name=name, email=_opt(rec, "email"), salesperson=_opt(rec, "salesperson"), provider_tenant_id=_opt(rec, "provider_tenant_id"), created_at=now)
        session.add(c)
        session.flush()
        customers[name] = c

    def product_row(rec: dict[str, str]) -> None:
        sku = _req(rec, "sku")
        if sku in products:
            raise _Bad(f"product {sku!r} exists already")
        prov_name = _opt(rec, "provider")
        if prov_name is not None and prov_name not in providers:
            raise unknown("provider", "providers.csv", prov_name)
        p = Product(
            sku=sku, name=_req(rec, "name"), kind=_enum(_req(rec, "kind"), "kind", ProductKind, None),
            provider_id=providers[prov_name].id if prov_name else None, offer_id=_opt(rec, "offer_id"),
            default_qrb=_enum(_opt(rec, "qrb"), "qrb", QRB, QRB.WINDOW), default_qrw_days=_bounded(limits.qrw_days, _opt(rec, "qrw_days"), "qrw_days") if _opt(rec, "qrw_days") else 7,
        )
        session.add(p)
        session.flush()
        products[sku] = p

    def price_row(rec: dict[str, str]) -> None:
        sku = _req(rec, "sku")
        if sku not in products:
            raise unknown("product", "products.csv", sku)
        unit = _req(rec, "sales_unit").upper()
        if unit not in units:
            raise _Bad(f"unknown sales unit {unit!r}")
        session.add(ProductPrice(
            product_id=products[sku].id, price_list=_opt(rec, "price_list") or "default", sales_unit=unit,
            currency=_currency(_req(rec, "currency")), cost_price=_price(_req(rec, "cost_price"), "cost_price"),
            selling_price=_price(_req(rec, "selling_price"), "selling_price"),
            effective_from=_date(_req(rec, "effective_from"), "effective_from"), created_at=now,
        ))
        session.flush()

    def contract_row(rec: dict[str, str]) -> None:
        number = _req(rec, "number")
        if number in contracts:
            raise _Bad(f"contract {number!r} exists already")
        cust = _req(rec, "customer")
        if cust not in customers:
            raise unknown("customer", "customers.csv", cust)
        freq = _req(rec, "frequency").upper()
        if units.get(freq) is None:
            raise _Bad(f"frequency {freq!r} is not a recurring unit in the unit mapping")
        start = _date(_req(rec, "start_date"), "start_date")
        end = _date(_opt(rec, "end_date"), "end_date")
        if end is not None and start is not None and end < start:
            raise _Bad(f"end_date {end} is before start_date {start}")
        nid = _date(_opt(rec, "next_invoice_date"), "next_invoice_date") or start
        assert start is not None and nid is not None
        bid = BillingIntervalDetail(start, units[freq])  # type: ignore[arg-type]
        if bid.boundary(bid.index_of(nid)) != nid:
            raise _Bad(f"next_invoice_date {nid} is not a period boundary of a {freq.lower()} contract starting {start}")
        c = BillingContract(
            number=number, customer_id=customers[cust].id, frequency=freq, currency=_currency(_req(rec, "currency")),
            start_date=start, end_date=end, term_months=_bounded(limits.term_months, _opt(rec, "term_months"), "term_months"),
            next_invoice_date=nid, auto_renew=_bool(_opt(rec, "auto_renew"), "auto_renew", True),
            refunds_allowed=_bool(_opt(rec, "refunds_allowed"), "refunds_allowed", False),
            change_billing=_enum(_opt(rec, "change_billing"), "change_billing", ChangeBilling, ChangeBilling.IMMEDIATE),
            price_list=_opt(rec, "price_list") or "default", salesperson=_opt(rec, "salesperson") or customers[cust].salesperson,
            created_at=now,
        )
        session.add(c)
        session.flush()
        contracts[number] = c

    def subscription_row(rec: dict[str, str]) -> None:
        number = _req(rec, "contract")
        if number not in contracts:
            raise unknown("contract", "contracts.csv", number)
        sku = _req(rec, "product")
        if sku not in products:
            raise unknown("product", "products.csv", sku)
        prov = _req(rec, "provider")
        if prov not in providers:
            raise unknown("provider", "providers.csv", prov)
        unit = _req(rec, "sales_unit").upper()
        if unit not in units:
            raise _Bad(f"unknown sales unit {unit!r}")
        qty = _bounded(limits.quantity, _req(rec, "quantity"), "quantity")
        selling = _price(_req(rec, "selling_price"), "selling_price")
        cost = _price(_req(rec, "cost_price"), "cost_price")
        try:
            limits.subscription_value(qty, selling, cost, "quantity x price")  # type: ignore[arg-type]
        except limits.BadValue as exc:
            raise _Bad(str(exc)) from None
        start = _date(_req(rec, "start_date"), "start_date")
        contract = contracts[number]
        problem = start_problem(contract, start, "start_date") if start is not None else None
        if problem:
            raise _Bad(problem)
        qrw = _opt(rec, "qrw_days")
        create_subscription(
            session, contract=contract, product=products[sku], provider=providers[prov], name=_req(rec, "name"),
            quantity=qty or 0, selling_price=selling, cost_price=cost, sales_unit=unit,  # type: ignore[arg-type]
            currency=_currency(_req(rec, "currency")), start_date=start, now=now,  # type: ignore[arg-type]
            qrb=_enum(_opt(rec, "qrb"), "qrb", QRB, None), qrw_days=_bounded(limits.qrw_days, qrw, "qrw_days"),
            provider_subscription_id=_opt(rec, "provider_subscription_id"),
            provisioned_on=_date(_opt(rec, "provisioned_on"), "provisioned_on"),
            usage_threshold=_bounded(limits.threshold, _opt(rec, "usage_threshold"), "usage_threshold"),
            markup_pct=_bounded(limits.markup_pct, _opt(rec, "markup_pct"), "markup_pct"), source=ChangeSource.IMPORT, created_by="import",
        )

    def rate_row(rec: dict[str, str]) -> None:
        # The rules of `w365 rate add` (w365.reference), each problem named by its column.
        from w365.reference import rate_conflict

        def code(col: str) -> str:
            try:
                return check_currency(_req(rec, col).upper())
            except MoneyError as exc:
                raise _Bad(f"{col}: {exc}") from None

        source, target = code("from_currency"), code("to_currency")
        if source == target:
            raise _Bad(f"to_currency {target!r} is from_currency too; a rate needs two different currencies")
        rate = _bounded(limits.exchange_rate, _req(rec, "rate"), "rate")
        day = _date(_req(rec, "effective_from"), "effective_from")
        assert day is not None
        same = session.scalar(select(ExchangeRate.rate).where(
            ExchangeRate.from_currency == source, ExchangeRate.to_currency == target, ExchangeRate.effective_from == day))
        if same is not None:
            raise _Bad(f"effective_from {day}: a {source}->{target} rate effective that day exists already ({Decimal(same).normalize():f}); "
                       "rates are never edited")
        conflict = rate_conflict(session, source, target, rate, day)
        if conflict is not None:
            raise _Bad(f"effective_from {day}: {conflict.reason(source, target, rate, day)}")
        session.add(ExchangeRate(from_currency=source, to_currency=target, rate=rate, effective_from=day))
        session.flush()

    def latest_first(row: tuple[int, dict[str, str]]) -> tuple[int, int]:
        """Rates of a pair are checked from the latest effective date back, so a later rate of the
        same file already bounds the periods an earlier one governs (w365.reference)."""
        try:
            return (-date.fromisoformat((row[1].get("effective_from") or "").strip()).toordinal(), row[0])
        except ValueError:
            return (0, row[0])

    each("providers.csv", provider_row)
    each("customers.csv", customer_row)
    each("products.csv", product_row)
    each("prices.csv", price_row)
    if "exchange_rates.csv" in data:
        data["exchange_rates.csv"] = sorted(data["exchange_rates.csv"], key=latest_first)
    first = len(ctx.errors)
    each("exchange_rates.csv", rate_row)
    ctx.errors[first:] = sorted(ctx.errors[first:], key=lambda e: e.row)  # listed in the file's order
    each("contracts.csv", contract_row)
    each("subscriptions.csv", subscription_row)
    if ctx.errors:
        raise ImportFailed(ctx.errors)
    log.info("import of %s: %s", folder, counts)
    return counts


# --------------------------------------------------------------------------------------------
# One subscription typed by hand: `w365 subscription add` (issue 13), with the checks of a
# subscriptions.csv row and w365.subscriptions.create_subscription (bounds, currency, unit,
# the activation LCL).


def start_problem(contract: BillingContract, start: date, what: str = "start_date") -> str | None:
    """Why a new subscription cannot start on ``start`` under ``contract``, or None: the
    contract must be active, and the day inside it (not before its start; not after its end
    when it does not auto-renew, since nothing would ever be billed)."""
    status = getattr(contract.status, "value", contract.status)
    if status != "active":
        return f"contract {contract.number} is {status}: a subscription can only be added to an active contract"
    if start < contract.start_date:
        return f"{what} {start} is before contract {contract.number} starts ({contract.start_date})"
    if contract.end_date is not None and start > contract.end_date and not contract.auto_renew:
        return f"{what} {start} is after contract {contract.number} ends ({contract.end_date}) and it does not auto-renew"
    return None


def add_subscription(
    session: Session,
    *,
    contract: str,
    product: str,
    quantity: int,
    start_date: date,
    now: datetime,
    provider: str | None = None,
    name: str | None = None,
    selling_price: Decimal | None = None,
    cost_price: Decimal | None = None,
    sales_unit: str | None = None,
    currency: str | None = None,
    qrb: QRB | None = None,
    qrw_days: int | None = None,
    provider_subscription_id: str | None = None,
    created_by: str | None = None,
) -> Subscription:
    """Add one active subscription on a contract, in the caller's transaction.

    ``contract`` is its number, ``product`` a SKU, ``provider`` a provider's name (or id; default
    the product's provider). Defaults: the contract's currency; sales unit MONTHLY (ONE_TIME for
    a one-time product); prices from the price list (the contract's, for that unit and currency,
    effective on ``start_date``); name "product - customer". A name that finds nothing raises
    NotFound; a rule (dates, bounds, currency) ValidationError. Nothing is written on an error
    (the caller's transaction rolls back)."""
    from w365.errors import NotFound, ValidationError

    c = session.scalar(select(BillingContract).where(BillingContract.number == contract))
    if c is None:
        raise NotFound(f"argument --contract: no billing contract {limits.show(contract)}")
    prod = session.scalar(select(Product).where(Product.sku == product))
    if prod is None:
        raise NotFound(f"argument --product: no product with SKU {limits.show(product)}")
    if provider is None:
        prov = session.get(Provider, prod.provider_id) if prod.provider_id is not None else None
        if prov is None:
            raise ValidationError(f"product {prod.sku}", "has no provider: give --provider")
    else:
        prov = session.scalar(select(Provider).where(Provider.name == provider))
        if prov is None and provider.strip().isdigit():
            prov = session.get(Provider, int(provider))
        if prov is None:
            raise NotFound(f"argument --provider: no provider {limits.show(provider)} (a name or an id)")
    kind = getattr(prod.kind, "value", prod.kind)
    unit = (sales_unit or ("ONE_TIME" if kind == ProductKind.ONE_TIME.value else "MONTHLY")).upper()
    if session.get(UnitMapping, unit) is None:
        raise NotFound(f"argument --sales-unit: unknown sales unit {limits.show(unit)} (`w365 unit list`)")
    cur = (currency or c.currency).upper()
    label = f"subscription on contract {c.number}"
    try:
        check_currency(cur)
    except MoneyError as exc:
        raise ValidationError(label, str(exc)) from None
    problem = start_problem(c, start_date, "start date")
    if problem:
        raise ValidationError(label, problem)
    if cur != c.currency:
        # SPEC S1: converted at the rate effective on the first day of the period it starts in;
        # without one the contract would be skipped at invoicing, every run.
        months = session.scalar(select(UnitMapping.months).where(UnitMapping.code == c.frequency))
        first = BillingIntervalDetail(c.start_date, months).period_containing(start_date).start if months else start_date
        if session.scalar(select(ExchangeRate.id).where(ExchangeRate.from_currency == cur, ExchangeRate.to_currency == c.currency,
                                                        ExchangeRate.effective_from <= first).limit(1)) is None:
            raise ValidationError(label, f"no {cur}->{c.currency} exchange rate is effective on {first} (the first day of the "
                                  f"period {start_date} is in), so the contract could not be invoiced; add one first "
                                  f"(w365 rate add {cur} {c.currency} RATE --from DATE)", "SPEC S1")
    if selling_price is None or cost_price is None:
        pp = session.scalar(
            select(ProductPrice).where(
                ProductPrice.product_id == prod.id, ProductPrice.price_list == c.price_list, ProductPrice.sales_unit == unit,
                ProductPrice.currency == cur, ProductPrice.effective_from <= start_date,
            ).order_by(ProductPrice.effective_from.desc()).limit(1)
        )
        if pp is None:
            raise ValidationError(label, f"price list {c.price_list!r} has no {unit} {cur} price for {prod.sku} effective "
                                  f"{start_date}: give --selling-price and --cost-price")
        selling_price = pp.selling_price if selling_price is None else selling_price
        cost_price = pp.cost_price if cost_price is None else cost_price
    if name is None:
        customer = session.get(Customer, c.customer_id)
        name = f"{prod.name} - {customer.name if customer else c.number}"[: limits.column_length(Subscription.name)]
    return create_subscription(
        session, contract=c, product=prod, provider=prov, name=name, quantity=quantity, selling_price=selling_price,
        cost_price=cost_price, sales_unit=unit, currency=cur, start_date=start_date, now=now, qrb=qrb, qrw_days=qrw_days,
        provider_subscription_id=provider_subscription_id, source=ChangeSource.USER, created_by=created_by,
    )
