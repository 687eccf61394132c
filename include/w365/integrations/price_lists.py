"""Update Pricing on Product Price (SPEC P3): load the price list into ``product_price``.

The price list is a CSV file with a header row, the columns of ``w365 import``'s prices.csv:
``sku, sales_unit, currency, cost_price, selling_price, effective_from`` and optionally
``price_list`` (default ``default``). Where: the job param ``path``, else the Connection
``w365_price_list`` (``extra.path`` or its host: a file, or a folder holding ``price_list.csv``).

History is never rewritten: a price change is a new row with its own effective date. For each
row, keyed by (product, price list, sales unit, currency, effective from):

* not in the store -> inserted;
* in the store with the same prices -> nothing (a rerun loads nothing);
* in the store with other prices -> a *conflict*, reported and not loaded (a published price
  for a date is not silently changed; publish a new effective date instead);
* a row that cannot be read (unknown SKU, sales unit or currency, a bad number or date, two rows
  of the file with the same key and different prices) -> reported, the other rows load.

Unlike the initial import (all or nothing), a daily feed loads what is good and reports the rest.

Subscriptions priced from the list (decision): nothing changes them automatically. A
subscription's price changes only through a License Change Log (SPEC S3), i.e. a change or a
scheduled change that someone (or the portal) makes, so the customer's agreed price, proration
and audit trail stay intact. The job reports every active licence subscription whose selling or
cost price differs from the list price effective on the run date for its product, price list,
sales unit and currency (``price_drift`` in the report and ``job_exception`` rows with entity
``subscription_price``), so operations can schedule the change (e.g. On Renewal).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from w365.connections import PRICE_LIST, ConnectionNotFound, get_connection
from w365.errors import W365Error
from w365.store.job_report import replace_exceptions
from w365.store.models import Product, ProductKind, ProductPrice, Subscription, SubscriptionStatus, UnitMapping

log = logging.getLogger(__name__)

JOB = "update_pricing_on_product_price"
REQUIRED = ("sku", "sales_unit", "currency", "cost_price", "selling_price", "effective_from")
OPTIONAL = ("price_list",)
DRIFT_LIMIT = 200  # price-drift entries listed in the report (all are in job_exception)


class BadRow(ValueError):
    pass


@dataclass
class PricingResult:
    file: str
    rows: int = 0
    inserted: int = 0
    unchanged: int = 0
    conflicts: dict[str, str] = field(default_factory=dict)
    bad_rows: dict[str, str] = field(default_factory=dict)
    price_drift_count: int = 0
    price_drift: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def price_list_path(path: str | None = None) -> Path | None:
    """The file to load: ``path``, else the Connection ``w365_price_list``; None if neither."""
    if not path:
        try:
            path = get_connection(PRICE_LIST).path()
        except ConnectionNotFound:
            return None
        if not path:
            raise W365Error(f"connection {PRICE_LIST!r} names no file: set extra.path")
    p = Path(path)
    return p / "price_list.csv" if p.is_dir() else p


def read_rows(path: Path, bad_rows: dict[str, str] | None = None) -> list[tuple[int, dict[str, str]]]:
    """The file's rows, read as the initial import reads its files (``w365.store.csv_rows.read_csv``,
    issue 12): a header naming a column twice, missing or unknown columns, or a file that is not
    CSV refuse the whole file; a row with more or fewer values than the header, bytes that are not
    UTF-8 or a value longer than its column is a bad row (in ``bad_rows``), the others load."""
    from w365.store.csv_rows import TEXT_LENGTHS, read_csv

    if not path.is_file():
        raise W365Error(f"price list {path} does not exist")
    errors: list[Any] = []
    rows = read_csv(path, REQUIRED, OPTIONAL, TEXT_LENGTHS["prices.csv"], errors)
    if rows is None:
        raise W365Error(f"price list {path.name}: " + "; ".join(f"row {e.row}: {e.reason}" for e in errors))
    bad_lines = {e.row for e in errors}
    for e in errors:
        if bad_rows is not None:
            bad_rows.setdefault(f"{path.name} line {e.row}", e.reason)
    return [(n, {k: v.strip() for k, v in rec.items()}) for n, rec in rows if n not in bad_lines]


def parse_row(rec: dict[str, str], products: dict[str, int], units: set[str]) -> dict[str, Any]:
    """One price-list row: the import's prices.csv model (``w365.store.import_rows.PriceRow``),
    then what needs the store (a known sku, a unit of the unit mapping)."""
    from w365.store.csv_rows import BadField
    from w365.store.import_rows import PriceRow, parse

    try:
        row = parse(PriceRow, rec)
    except BadField as exc:
        raise BadRow(str(exc)) from None
    pid = products.get(row.sku)
    if pid is None:
        raise BadRow(f"unknown sku {row.sku!r}")
    if rec["sales_unit"] not in units:
        raise BadRow(f"sales unit {rec['sales_unit']!r} is not in the unit mapping")
    return {
        "product_id": pid, "price_list": row.price_list or "default", "sales_unit": rec["sales_unit"], "currency": row.currency,
        "cost_price": row.cost_price, "selling_price": row.selling_price, "effective_from": row.effective_from,
    }


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["product_id"], r["price_list"], r["sales_unit"], r["currency"], r["effective_from"])


def _label(r: dict[str, Any], skus: dict[int, str]) -> str:
    return f"{skus[r['product_id']]}/{r['price_list']}/{r['sales_unit']}/{r['currency']}/{r['effective_from']}"


def load_price_list(session: Session, rows: list[tuple[int, dict[str, str]]], *, file: str, now: Any) -> PricingResult:
    """Insert new prices in the caller's transaction (see the module docstring)."""
    result = PricingResult(file, rows=len(rows))
    products = {sku: pid for sku, pid in session.execute(select(Product.sku, Product.id))}
    skus = {pid: sku for sku, pid in products.items()}
    units = set(session.scalars(select(UnitMapping.code)))
    parsed: dict[tuple[Any, ...], tuple[int, dict[str, Any]]] = {}
    clashing: set[tuple[Any, ...]] = set()
    for line, rec in rows:
        try:
            r = parse_row(rec, products, units)
        except BadRow as exc:
            result.bad_rows[f"{file} line {line}"] = str(exc)
            continue
        k = _key(r)
        if k in parsed and (parsed[k][1]["cost_price"], parsed[k][1]["selling_price"]) != (r["cost_price"], r["selling_price"]):
            clashing.add(k)
            result.bad_rows[f"{file} line {line}"] = f"{_label(r, skus)} appears on line {parsed[k][0]} with other prices"
            continue
        parsed.setdefault(k, (line, r))
    for k in clashing:
        line, r = parsed.pop(k)
        result.bad_rows[f"{file} line {line}"] = f"{_label(r, skus)} appears again later in the file with other prices"
    existing: dict[tuple[Any, ...], tuple[Decimal, Decimal]] = {}
    pids = sorted({k[0] for k in parsed})
    for i in range(0, len(pids), 1000):
        for pp in session.scalars(select(ProductPrice).where(ProductPrice.product_id.in_(pids[i : i + 1000]))):
            existing[(pp.product_id, pp.price_list, pp.sales_unit, pp.currency, pp.effective_from)] = (pp.cost_price, pp.selling_price)
    new_rows = []
    for k, (line, r) in sorted(parsed.items(), key=lambda kv: kv[1][0]):
        have = existing.get(k)
        if have is None:
            new_rows.append({**r, "created_at": now})
        elif have == (r["cost_price"], r["selling_price"]):
            result.unchanged += 1
        else:
            result.conflicts[_label(r, skus)] = (
                f"line {line}: the store has cost {price_text(have[0])} / selling {price_text(have[1])} for this key; the list "
                f"says cost {price_text(r['cost_price'])} / selling {price_text(r['selling_price'])}. Not overwritten: publish the new price with a new effective date"
            )
    if new_rows:
        session.execute(insert(ProductPrice), new_rows)
    result.inserted = len(new_rows)
    return result


def price_text(value: Decimal) -> str:
    """A price for people, the same on every backend: trailing zeros dropped, at least 2 places."""
    q = value.normalize()
    exponent = q.as_tuple().exponent
    return format(q.quantize(Decimal("0.01")) if isinstance(exponent, int) and exponent > -2 else q, "f")


def price_drift(session: Session, as_of: date) -> list[dict[str, str]]:
    """Active licence subscriptions whose prices differ from the list price effective on as_of."""
    current: dict[tuple[Any, ...], ProductPrice] = {}
    for price in session.scalars(select(ProductPrice).where(ProductPrice.effective_from <= as_of).order_by(ProductPrice.effective_from)):
        current[(price.product_id, price.price_list, price.sales_unit, price.currency)] = price  # the latest wins
    out = []
    for sub in session.scalars(
        select(Subscription).join(Product, Product.id == Subscription.product_id)
        .where(Subscription.status == SubscriptionStatus.ACTIVE, Product.kind == ProductKind.LICENSE)
        .order_by(Subscription.id)
    ):
        pp = current.get((sub.product_id, sub.price_list, sub.sales_unit, sub.currency))
        if pp is None or (pp.selling_price, pp.cost_price) == (sub.selling_price, sub.cost_price):
            continue
        out.append({
            "subscription_id": str(sub.id), "subscription": sub.name, "currency": sub.currency, "sales_unit": sub.sales_unit,
            "selling_price": price_text(sub.selling_price), "list_selling_price": price_text(pp.selling_price),
            "cost_price": price_text(sub.cost_price), "list_cost_price": price_text(pp.cost_price),
            "list_effective_from": pp.effective_from.isoformat(),
        })
    return out


def update_pricing(session: Session, path: Path, as_of: date, *, now: Any) -> PricingResult:
    unreadable: dict[str, str] = {}
    rows = read_rows(path, unreadable)
    result = load_price_list(session, rows, file=path.name, now=now)
    result.rows += len(unreadable)
    result.bad_rows = {**unreadable, **result.bad_rows}
    drift = price_drift(session, as_of)
    result.price_drift_count = len(drift)
    result.price_drift = drift[:DRIFT_LIMIT]
    replace_exceptions(session, JOB, as_of, "price_row", {**result.bad_rows, **result.conflicts})
    replace_exceptions(
        session, JOB, as_of, "subscription_price",
        {d["subscription_id"]: (f"{d['subscription']}: selling {d['selling_price']} / cost {d['cost_price']} {d['currency']} per "
                                f"{d['sales_unit']}; the list says {d['list_selling_price']} / {d['list_cost_price']} from "
                                f"{d['list_effective_from']}. Change it with a (scheduled) change if it should follow the list")
         for d in drift},
    )
    log.info("%s: %s: %d row(s), %d inserted, %d unchanged, %d conflict(s), %d bad row(s); %d subscription(s) off the list",
             JOB, path, result.rows, result.inserted, result.unchanged, len(result.conflicts), len(result.bad_rows), len(drift))
    return result
