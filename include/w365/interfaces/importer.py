"""Initial data load from a folder of CSV files (``w365 import DIR``); format in docs/import-format.md.

All or nothing: every row of every file is checked first and every problem is reported with its
file, row and reason; only a clean load is written, in one transaction. Subscriptions get their
activation License Change Log (source = import), so the ledger holds from the first day.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Callable

from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from w365.billing.subscriptions import create_subscription
from w365.core import limits
from w365.core.calendar import BillingIntervalDetail
from w365.core.money import MoneyError, check_currency
from w365.errors import UsageError, W365Error
from w365.store.import_rows import (
    ContractRow,
    CustomerRow,
    PriceRow,
    ProductRow,
    ProviderRow,
    RateRow,
    SubscriptionRow,
    TaxCodeRow,
    parse,
)
from w365.store.csv_rows import (
    BILLING_ADDRESS,
    FILES,
    TEXT_LENGTHS,
    BadField,
    RowError,
    read_csv,
)
from w365.store.models import (
    QRB,
    BillingContract,
    ChangeSource,
    Customer,
    ExchangeRate,
    Product,
    ProductKind,
    ProductPrice,
    Provider,
    Subscription,
    TaxCode,
    UnitMapping,
)

log = logging.getLogger(__name__)

MAX_LISTED = 200  # problems listed in the message; all are in ImportFailed.errors


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
    tax_codes = set(session.scalars(select(TaxCode.code)))

    # Rows refused in this load, by file and key: a later row that refers to one is told so,
    # rather than that the key is unknown.
    refused: dict[str, dict[str, int]] = {}
    keys = {"tax_codes.csv": "code", "providers.csv": "name", "customers.csv": "name", "products.csv": "sku", "contracts.csv": "number"}

    def each(name: str, fn: Callable[[dict[str, str]], None]) -> None:
        rows = data.get(name, [])
        ctx.file = name
        for line, rec in rows:
            ctx.row = line
            before = len(ctx.errors)
            try:
                with session.begin_nested():
                    fn(rec)
            except BadField as exc:
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

    def unknown(what: str, file: str, key: str) -> BadField:
        row = refused.get(file, {}).get(key)
        if row is not None:
            return BadField(f"{what} {key!r} is refused itself ({file}, row {row})")
        return BadField(f"unknown {what} {key!r}")

    def provider_row(rec: dict[str, str]) -> None:
        row = parse(ProviderRow, rec)
        if row.name in providers:
            raise BadField(f"provider {row.name!r} exists already")
        p = Provider(name=row.name, kind=row.kind, connection_id=row.connection_id, alert_email=row.alert_email)
        session.add(p)
        session.flush()
        providers[row.name] = p

    def tax_row(rec: dict[str, str]) -> None:
        # The rules of `w365 tax add` (w365.billing.tax_codes), each problem named by its column.
        from w365.billing.tax_codes import add_tax_rate

        row = parse(TaxCodeRow, rec)
        add_tax_rate(session, row.code, row.rate, row.effective_from, row.name)
        tax_codes.add(row.code)

    def known_tax_code(code: str | None) -> str | None:
        if code is not None and code not in tax_codes:
            raise unknown("tax_code", "tax_codes.csv", code)
        return code

    def customer_row(rec: dict[str, str]) -> None:
        row = parse(CustomerRow, rec)
        if row.name in customers:
            raise BadField(f"customer {row.name!r} exists already")
        c = Customer(name=row.name, email=row.email, billing_email=row.billing_email, salesperson=row.salesperson, provider_tenant_id=row.provider_tenant_id,
                     tax_code=known_tax_code(row.tax_code), tax_exempt_reference=row.tax_exempt_reference, created_at=now,
                     **{col: getattr(row, col) for col in BILLING_ADDRESS})
        session.add(c)
        session.flush()
        customers[row.name] = c

    def product_row(rec: dict[str, str]) -> None:
        row = parse(ProductRow, rec)
        if row.sku in products:
            raise BadField(f"product {row.sku!r} exists already")
        if row.provider is not None and row.provider not in providers:
            raise unknown("provider", "providers.csv", row.provider)
        p = Product(
            sku=row.sku, name=row.name, kind=row.kind, provider_id=providers[row.provider].id if row.provider else None,
            offer_id=row.offer_id, default_qrb=row.qrb, default_qrw_days=row.qrw_days if row.qrw_days is not None else 7,
            tax_code=known_tax_code(row.tax_code),
        )
        session.add(p)
        session.flush()
        products[row.sku] = p

    def price_row(rec: dict[str, str]) -> None:
        row = parse(PriceRow, rec)
        if row.sku not in products:
            raise unknown("product", "products.csv", row.sku)
        if row.sales_unit not in units:
            raise BadField(f"unknown sales unit {row.sales_unit!r}")
        session.add(ProductPrice(
            product_id=products[row.sku].id, price_list=row.price_list or "default", sales_unit=row.sales_unit, currency=row.currency,
            cost_price=row.cost_price, selling_price=row.selling_price, effective_from=row.effective_from, created_at=now,
        ))
        session.flush()

    def contract_row(rec: dict[str, str]) -> None:
        row = parse(ContractRow, rec)
        if row.number in contracts:
            raise BadField(f"contract {row.number!r} exists already")
        if row.customer not in customers:
            raise unknown("customer", "customers.csv", row.customer)
        freq, start, end = row.frequency, row.start_date, row.end_date
        months = units.get(freq)
        if months is None:
            raise BadField(f"frequency {freq!r} is not a recurring unit in the unit mapping")
        if end is not None and end < start:
            raise BadField(f"end_date {end} is before start_date {start}")
        nid = row.next_invoice_date or start
        bid = BillingIntervalDetail(start, months)
        if bid.boundary(bid.index_of(nid)) != nid:
            raise BadField(f"next_invoice_date {nid} is not a period boundary of a {freq.lower()} contract starting {start}")
        c = BillingContract(
            number=row.number, customer_id=customers[row.customer].id, frequency=freq, currency=row.currency,
            start_date=start, end_date=end, term_months=row.term_months, next_invoice_date=nid, auto_renew=row.auto_renew,
            refunds_allowed=row.refunds_allowed, change_billing=row.change_billing, price_list=row.price_list or "default",
            salesperson=row.salesperson or customers[row.customer].salesperson, created_at=now,
        )
        session.add(c)
        session.flush()
        contracts[row.number] = c

    def subscription_row(rec: dict[str, str]) -> None:
        row = parse(SubscriptionRow, rec)
        if row.contract not in contracts:
            raise unknown("contract", "contracts.csv", row.contract)
        if row.product not in products:
            raise unknown("product", "products.csv", row.product)
        if row.provider not in providers:
            raise unknown("provider", "providers.csv", row.provider)
        if row.sales_unit not in units:
            raise BadField(f"unknown sales unit {row.sales_unit!r}")
        try:
            limits.subscription_value(row.quantity, row.selling_price, row.cost_price, "quantity x price")
        except limits.BadValue as exc:
            raise BadField(str(exc)) from None
        contract = contracts[row.contract]
        problem = start_problem(contract, row.start_date, "start_date")
        if problem:
            raise BadField(problem)
        create_subscription(
            session, contract=contract, product=products[row.product], provider=providers[row.provider], name=row.name,
            quantity=row.quantity, selling_price=row.selling_price, cost_price=row.cost_price, sales_unit=row.sales_unit,
            currency=row.currency, start_date=row.start_date, now=now, qrb=row.qrb, qrw_days=row.qrw_days,
            provider_subscription_id=row.provider_subscription_id, provisioned_on=row.provisioned_on,
            usage_threshold=row.usage_threshold, markup_pct=row.markup_pct, source=ChangeSource.IMPORT, created_by="import",
        )

    def rate_row(rec: dict[str, str]) -> None:
        # The rules of `w365 rate add` (w365.billing.reference), each problem named by its column.
        from w365.billing.reference import rate_conflict

        row = parse(RateRow, rec)
        source, target, rate, day = row.from_currency, row.to_currency, row.rate, row.effective_from
        if source == target:
            raise BadField(f"to_currency {target!r} is from_currency too; a rate needs two different currencies")
        same = session.scalar(select(ExchangeRate.rate).where(
            ExchangeRate.from_currency == source, ExchangeRate.to_currency == target, ExchangeRate.effective_from == day))
        if same is not None:
            raise BadField(f"effective_from {day}: a {source}->{target} rate effective that day exists already ({Decimal(same).normalize():f}); "
                       "rates are never edited")
        conflict = rate_conflict(session, source, target, rate, day)
        if conflict is not None:
            raise BadField(f"effective_from {day}: {conflict.reason(source, target, rate, day)}")
        session.add(ExchangeRate(from_currency=source, to_currency=target, rate=rate, effective_from=day))
        session.flush()

    def latest_first(row: tuple[int, dict[str, str]]) -> tuple[int, int]:
        """Rates of a pair are checked from the latest effective date back, so a later rate of the
        same file already bounds the periods an earlier one governs (w365.billing.reference)."""
        try:
            return (-date.fromisoformat((row[1].get("effective_from") or "").strip()).toordinal(), row[0])
        except ValueError:
            return (0, row[0])

    each("tax_codes.csv", tax_row)
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
# subscriptions.csv row and w365.billing.subscriptions.create_subscription (bounds, currency, unit,
# the activation LCL).


def start_problem(contract: BillingContract, start: date, what: str = "start_date") -> str | None:
    """Why a new subscription cannot start on ``start`` under ``contract``, or None: the
    contract must be active, and the day inside it (not before its start; not after its end
    when it does not auto-renew, since nothing would ever be billed)."""
    status = contract.status
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
    kind = prod.kind
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
