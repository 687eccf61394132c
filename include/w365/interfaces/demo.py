"""A realistic demo tenant, sized by flags so it also feeds the benchmarks (``w365 demo load``).

Customers of a CSP with Microsoft 365 licences, Azure plans and one-time set-up fees, on billing
contracts of every frequency (monthly, quarterly, semi-annual via unit mapping, annual,
triennial) in several currencies, with a history of license change logs and some pending
scheduled changes. Generated deterministically from a seed and written in bulk (Core inserts,
explicit ids), so 100,000 subscriptions load in seconds. The history obeys the ledger: every
subscription equals the fold of its LCLs (``w365 verify ledger`` proves it).

Contracts are "migrated": periods before the one containing ``as_of`` count as billed by the
previous system, so each contract's next invoice date is the start of its current period (or its
start date, if that is later). ``--fresh`` instead starts every contract on or after ``as_of``
with nothing billed, which is what time-travel tests want.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from w365.core import tenant_time
from w365.core.calendar import BillingIntervalDetail, add_months
from w365.store.models import (
    BillingContract,
    Customer,
    ExchangeRate,
    LicenseChangeLog,
    Product,
    ProductPrice,
    Provider,
    ScheduledLicenseChangeLog,
    Subscription,
    Tenant,
    UnitMapping,
)
from w365.core.money import round_half_up, round_money
from w365.billing.change_rules import change_type_of, direction_of, kind_of
from w365.core.ledger import State
from w365.core.tenant_time import Direction

log = logging.getLogger(__name__)


@dataclass
class DemoSpec:
    customers: int = 6
    contracts_per_customer: int = 2
    subscriptions_per_contract: int = 4
    changes_per_subscription: int = 2  # LCLs after the activation one
    slcl_percent: int = 20  # share of licence subscriptions with a pending scheduled change
    as_of: date = date(2026, 1, 1)
    seed: int = 365
    timezone: str | None = None  # None keeps the tenant's zone
    tenant_name: str = "Contoso Cloud Partners (demo)"
    fresh: bool = False
    frequencies: tuple[str, ...] = ("MONTHLY", "MONTHLY", "QUARTERLY", "ANNUAL", "ANNUAL", "SEMIANNUAL", "TRIENNIAL")


# (sku, name, kind, monthly USD selling price, cost share) — list prices of the usual CSP catalogue
PRODUCTS = [
    ("CFQ7TTC0LH18", "Microsoft 365 Business Basic", "license", "6.00", "0.85"),
    ("CFQ7TTC0LDPB", "Microsoft 365 Business Standard", "license", "12.50", "0.85"),
    ("CFQ7TTC0LCHC", "Microsoft 365 Business Premium", "license", "22.00", "0.85"),
    ("CFQ7TTC0LFLZ", "Microsoft 365 E3", "license", "36.00", "0.88"),
    ("CFQ7TTC0LFK5", "Microsoft 365 E5", "license", "57.00", "0.88"),
    ("CFQ7TTC0LH16", "Exchange Online (Plan 1)", "license", "4.00", "0.85"),
    ("CFQ7TTC0LGZW", "Dynamics 365 Business Central Essentials", "license", "70.00", "0.80"),
    ("DZH318Z0BPS6", "Azure plan", "usage", "0", "1"),
    ("W365-SETUP", "Tenant onboarding (one-time)", "one_time", "450.00", "0.40"),
]
# Demo exchange rates to USD-denominated list prices (rate: 1 USD = x CUR).
RATES = {"USD": Decimal("1"), "EUR": Decimal("0.92"), "GBP": Decimal("0.79"), "JPY": Decimal("151"), "KWD": Decimal("0.307")}
CURRENCY_MIX = ("USD", "USD", "USD", "EUR", "GBP", "USD", "JPY", "KWD")
# A bill-to address per contract currency (issue 16): street (numbered by customer), city,
# postal code, region, country.
ADDRESSES = {
    "USD": ("{n} Pine Street", "Seattle", "98101", "WA", "US"), "EUR": ("Hauptstraße {n}", "Berlin", "10115", None, "DE"),
    "GBP": ("{n} Chancery Lane", "London", "WC2A 1AA", None, "GB"), "JPY": ("1-{n} Marunouchi", "Tokyo", "100-0005", None, "JP"),
    "KWD": ("Block {n}, Gulf Road", "Kuwait City", "15000", None, "KW"),
}
# The demo tenant's seller block on its invoices (set only for a tenant still named "default").
DEMO_SELLER = {"legal_name": "Contoso Cloud Partners LLC", "address_line1": "1 Contoso Way", "city": "Redmond", "region": "WA",
               "postal_code": "98052", "country": "US", "tax_id": "US-91-1234567"}
COMPANIES = (
    "Fabrikam", "Northwind Traders", "Tailspin Toys", "Adventure Works", "Wide World Importers",
    "Litware", "Proseware", "Woodgrove Bank", "Coho Winery", "Alpine Ski House", "Blue Yonder Airlines",
    "Contoso Pharmaceuticals", "Fourth Coffee", "Graphic Design Institute", "Humongous Insurance",
    "Lamna Healthcare", "Margie's Travel", "Relecloud", "Trey Research", "VanArsdel",
)
SALES = ("Avery Diaz", "Jordan Lee", "Sam Patel", "Riley Chen")


class _BulkWriter:
    """Collects rows per table and writes them in chunks with explicit ids."""

    def __init__(self, session: Session, chunk: int = 5000):
        self.session = session
        self.chunk = chunk
        self.rows: dict[Any, list[dict[str, Any]]] = {}
        self.next_ids: dict[Any, int] = {}
        self.counts: dict[str, int] = {}

    def new_id(self, model: Any) -> int:
        if model not in self.next_ids:
            self.next_ids[model] = (self.session.scalar(select(func.max(model.id))) or 0) + 1
        i = self.next_ids[model]
        self.next_ids[model] = i + 1
        return i

    def add(self, model: Any, row: dict[str, Any]) -> None:
        self.rows.setdefault(model, []).append(row)
        if len(self.rows[model]) >= self.chunk:
            self.flush(model)

    def flush(self, model: Any | None = None) -> None:
        # Parents before children: the insertion order of ORDER keeps foreign keys satisfied.
        for m in ORDER if model is None else [m for m in ORDER if m is model or ORDER.index(m) < ORDER.index(model)]:
            rows = self.rows.get(m)
            if rows:
                self.session.execute(insert(m), rows)
                self.counts[m.__tablename__] = self.counts.get(m.__tablename__, 0) + len(rows)
                self.rows[m] = []

    def fix_sequences(self) -> None:
        if self.session.get_bind().dialect.name != "postgresql":
            return
        for m in self.next_ids:
            t = m.__tablename__
            self.session.execute(text(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), COALESCE((SELECT MAX(id) FROM {t}), 1))"))


ORDER = [Customer, BillingContract, Subscription, ScheduledLicenseChangeLog, LicenseChangeLog]


def _money(value: Decimal, currency: str) -> Decimal:
    return round_money(value, currency)


def _reference_data(session: Session, now: datetime) -> dict[str, Any]:
    if session.get(UnitMapping, "SEMIANNUAL") is None:
        session.add(UnitMapping(code="SEMIANNUAL", name="Semi-Annual", months=6))
    providers = {p.name: p for p in session.scalars(select(Provider))}
    for name, kind, conn in (
        ("Microsoft Partner Center", "partner_center", "partner_center"),
        ("Manual Distributor", "manual", None),
        ("Distributor File Drop", "file", "distributor_files"),
    ):
        if name not in providers:
            p = Provider(name=name, kind=kind, connection_id=conn, alert_email="provisioning@example.com")
            session.add(p)
            providers[name] = p
    session.flush()
    products = {p.sku: p for p in session.scalars(select(Product))}
    pc = providers["Microsoft Partner Center"]
    existing = {(pp.product_id, pp.sales_unit, pp.currency) for pp in session.scalars(select(ProductPrice))}
    for sku, name, kind, monthly, cost_share in PRODUCTS:
        prod = products.get(sku)
        if prod is None:
            prod = Product(sku=sku, name=name, kind=kind, provider_id=pc.id, offer_id=sku if kind != "one_time" else None)
            session.add(prod)
            session.flush()
            products[sku] = prod
        for cur, rate in RATES.items():  # the demo's list prices, where the catalogue has none
            sell = _money(Decimal(monthly) * rate, cur)
            cost = _money(sell * Decimal(cost_share), cur)
            units = [("ONE_TIME" if kind == "one_time" else "MONTHLY", 1)] + ([("ANNUAL", 12)] if kind == "license" else [])
            for unit, unit_months in units:
                if (prod.id, unit, cur) not in existing:
                    session.add(ProductPrice(product_id=prod.id, sales_unit=unit, currency=cur, selling_price=_money(sell * unit_months, cur),
                                             cost_price=_money(cost * unit_months, cur), effective_from=date(2020, 1, 1), created_at=now))
    for cur, rate in RATES.items():
        if cur != "USD" and session.scalar(select(func.count()).select_from(ExchangeRate).where(ExchangeRate.from_currency == "USD", ExchangeRate.to_currency == cur)) == 0:
            session.add(ExchangeRate(from_currency="USD", to_currency=cur, rate=rate, effective_from=date(2020, 1, 1)))
            session.add(ExchangeRate(from_currency=cur, to_currency="USD", rate=round_half_up(1 / Fraction(rate), 8), effective_from=date(2020, 1, 1)))
    session.flush()
    months = {u.code: u.months for u in session.scalars(select(UnitMapping))}
    return {"providers": providers, "products": products, "months": months}


def load_demo(session: Session, spec: DemoSpec, *, now: datetime | None = None) -> dict[str, int]:
    """Load a demo tenant into the store in the caller's transaction; returns row counts."""
    now = now or datetime.combine(spec.as_of, datetime.min.time(), tzinfo=timezone.utc)
    rng = random.Random(spec.seed)
    tenant = session.get(Tenant, 1)
    assert tenant is not None, "run `w365 db upgrade` first"
    if spec.timezone:
        tenant_time.zone(spec.timezone)
        tenant.time_zone = spec.timezone
    if tenant.name == "default":
        tenant.name = spec.tenant_name
        for column, value in DEMO_SELLER.items():
            setattr(tenant, column, getattr(tenant, column) or value)
    tz = tenant.time_zone
    ref = _reference_data(session, now)
    products, providers, months = ref["products"], ref["providers"], ref["months"]
    licence_skus = [p[0] for p in PRODUCTS if p[2] == "license"]
    prices = {(pp.product_id, pp.sales_unit, pp.currency): pp for pp in session.scalars(select(ProductPrice))}
    w = _BulkWriter(session)
    stats = {"customers": 0, "contracts": 0, "subscriptions": 0, "lcls": 0, "slcls": 0}

    for c in range(spec.customers):
        cid = w.new_id(Customer)
        company = COMPANIES[(cid - 1) % len(COMPANIES)] + ("" if cid <= len(COMPANIES) else f" {cid}")
        salesperson = SALES[cid % len(SALES)]
        currency = CURRENCY_MIX[c % len(CURRENCY_MIX)]
        street, city, postal, region, country = ADDRESSES[currency]
        w.add(Customer, {
            "id": cid, "name": company, "provider_tenant_id": f"{rng.getrandbits(128):032x}",
            "email": f"billing@{company.split()[0].lower()}{cid}.example", "salesperson": salesperson, "created_at": now,
            "billing_address_line1": street.format(n=cid), "billing_city": city, "billing_postal_code": postal,
            "billing_region": region, "billing_country": country,
        })
        stats["customers"] += 1
        for k in range(spec.contracts_per_customer):
            freq = spec.frequencies[(c * spec.contracts_per_customer + k) % len(spec.frequencies)]
            fmonths = months[freq]
            term = 36 if freq == "TRIENNIAL" else 12
            if spec.fresh:
                start = spec.as_of + timedelta(days=rng.randrange(0, 28))
            else:
                start = spec.as_of - timedelta(days=rng.randrange(0, 30 * (term if term <= 12 else 30)))
            renewals = 0
            while add_months(start, term * (renewals + 1)) <= spec.as_of:
                renewals += 1
            end = add_months(start, term * (renewals + 1)) - timedelta(days=1)
            bid = BillingIntervalDetail(start, fmonths)
            nid = start if spec.fresh or start >= spec.as_of else bid.period_containing(spec.as_of).start
            contract_id = w.new_id(BillingContract)
            w.add(BillingContract, {
                "id": contract_id, "number": f"BC-{contract_id:06d}", "customer_id": cid, "frequency": freq,
                "currency": currency, "start_date": start, "end_date": end, "term_months": term,
                "next_invoice_date": nid, "auto_renew": rng.random() < 0.85, "refunds_allowed": rng.random() < 0.5,
                "change_billing": "next_cycle" if rng.random() < 0.25 else "immediate", "status": "active",
                "price_list": "default", "last_renewed_on": add_months(start, term * renewals) if renewals else None,
                "payment_terms_days": 30, "salesperson": salesperson, "created_at": now,
            })
            stats["contracts"] += 1
            for s in range(spec.subscriptions_per_contract):
                if s == 0 and k == 0 and c % 3 == 0:
                    sku = "W365-SETUP"
                elif s == 1 and c % 2 == 0:
                    sku = "DZH318Z0BPS6"
                else:
                    sku = licence_skus[rng.randrange(len(licence_skus))]
                prod = products[sku]
                kind = prod.kind.value if hasattr(prod.kind, "value") else prod.kind
                sub_currency = currency
                if kind == "license" and currency == "USD" and rng.random() < 0.05:
                    sub_currency = "EUR"  # priced in another currency than its contract (SPEC S1)
                unit = "ONE_TIME" if kind == "one_time" else ("ANNUAL" if kind == "license" and fmonths >= 12 and rng.random() < 0.5 else "MONTHLY")
                pp = prices[(prod.id, unit, sub_currency)]
                qty = 1 if kind != "license" else rng.choice((1, 3, 5, 10, 10, 15, 25, 50, 120))
                sub_start = start if rng.random() < 0.7 or spec.fresh else min(spec.as_of, start + timedelta(days=rng.randrange(0, 90)))
                sid = w.new_id(Subscription)
                state = State(qty, pp.selling_price, pp.cost_price, unit, "active")
                sub_row = {
                    "id": sid, "name": f"{prod.name} - {company}", "product_id": prod.id,
                    "provider_id": providers["Manual Distributor" if rng.random() < 0.1 else "Microsoft Partner Center"].id,
                    "customer_id": cid, "contract_id": contract_id, "currency": sub_currency, "price_list": "default",
                    "qrb": "window", "qrw_days": 7, "provider_subscription_id": f"{rng.getrandbits(128):032x}" if kind != "one_time" else None,
                    "start_date": sub_start, "provisioned_on": sub_start, "created_at": now, "updated_at": now,
                    "usage_threshold": _money(Decimal(rng.choice((500, 1000, 2500))) * RATES[sub_currency], sub_currency) if kind == "usage" else None,
                    "markup_pct": Decimal(rng.choice(("10", "12.5", "15"))) if kind == "usage" else Decimal("0"),
                }
                lcl_rows = [_lcl_row(w.new_id(LicenseChangeLog), sid, State(0, state.selling_price, state.cost_price, unit, "pending"), state, sub_start, tz, now, "import")]
                day = sub_start
                if kind == "license":
                    for _ in range(spec.changes_per_subscription):
                        horizon = (spec.as_of - day).days
                        if horizon < 2:
                            break
                        day = day + timedelta(days=rng.randrange(1, max(2, min(horizon, 120))))
                        if rng.random() < 0.75:
                            new_qty = max(1, state.quantity + rng.choice((-2, -1, 1, 2, 5)))
                            new = State(new_qty, state.selling_price, state.cost_price, state.sales_unit, "active")
                        else:
                            bump = round_money(state.selling_price * Decimal("1.05"), sub_currency)
                            new = State(state.quantity, bump, state.cost_price, state.sales_unit, "active")
                        if new == state:
                            continue
                        lcl_rows.append(_lcl_row(w.new_id(LicenseChangeLog), sid, state, new, day, tz, now, "user"))
                        state = new
                sub_row.update(quantity=state.quantity, selling_price=state.selling_price, cost_price=state.cost_price, sales_unit=state.sales_unit, status="active")
                w.add(Subscription, sub_row)
                for row in lcl_rows:
                    w.add(LicenseChangeLog, row)
                stats["subscriptions"] += 1
                stats["lcls"] += len(lcl_rows)
                if kind == "license" and rng.randrange(100) < spec.slcl_percent:
                    eff = spec.as_of + timedelta(days=rng.randrange(1, 60))
                    new = State(state.quantity + rng.choice((1, 2, 5)), state.selling_price, state.cost_price, state.sales_unit, "active")
                    w.add(ScheduledLicenseChangeLog, {
                        "id": w.new_id(ScheduledLicenseChangeLog), "subscription_id": sid, "status": "pending", "action": "change",
                        "change_effective": "custom", "quantity": new.quantity, "currency": sub_currency, "price_list": "default",
                        "apply_refund": False, "direction": "positive", "effective_date": eff, "provision_on": eff,
                        "scheduled_for": tenant_time.scheduled_instant(eff, Direction.POSITIVE, tz), "bill_from": eff,
                        "source": "user", "requested_by": "demo", "attempts": 0, "created_at": now, "updated_at": now,
                    })
                    stats["slcls"] += 1
        if c % 500 == 499:
            log.info("demo: %d of %d customers generated", c + 1, spec.customers)
    w.flush()
    w.fix_sequences()
    log.info("demo tenant loaded: %s", stats)
    return stats


def _lcl_row(lcl_id: int, sid: int, before: State, after: State, day: date, tz: str, now: datetime, source: str) -> dict[str, Any]:
    direction = direction_of(before, after)
    return {
        "id": lcl_id, "subscription_id": sid, "kind": kind_of(before, after).value,
        "change_type": change_type_of(before, after).value, "direction": direction.value,
        "quantity_before": before.quantity, "quantity_after": after.quantity,
        "selling_price_before": before.selling_price, "selling_price_after": after.selling_price,
        "cost_price_before": before.cost_price, "cost_price_after": after.cost_price,
        "sales_unit_before": before.sales_unit, "sales_unit_after": after.sales_unit,
        "status_before": before.status, "status_after": after.status, "effective_date": day,
        "effective_at": tenant_time.scheduled_instant(day, direction, tz),
        "bill_from": tenant_time.bill_from(day, direction), "apply_refund": True, "source": source,
        "slcl_id": None, "provisioning_status": "provisioned",
        "provisioned_at": tenant_time.scheduled_instant(day, direction, tz), "created_at": now,
    }


DEMO_MARKER = ".w365-demo"
USAGE_METERS = (("9b5b0b7a-0001", "Virtual Machines D2s v5", "1 Hour", "0.096"), ("9b5b0b7a-0002", "Blob Storage LRS", "1 GB/Month", "0.0184"))


def write_provider_files(session: Session, folder: Path, as_of: date, days: int = 35, seed: int = 365) -> dict[str, int]:
    """Export files for the demo's API providers, in Partner Center's shapes (file-drop format,
    docs/integrations.md): one folder per provider connection, with ``subscriptions.json`` that
    matches the store (so a sync finds nothing to change) and ``usage/{interim,final}/DAY.csv``
    for the Azure plans over the ``days`` before ``as_of``. Lets the embedded default run every
    sync job end to end without a provider account."""
    import csv as _csv
    import json as _json

    rng = random.Random(seed)
    subs = session.execute(
        select(Subscription, Customer.provider_tenant_id, Product.offer_id, Product.name, Product.kind, Provider.connection_id,
               BillingContract.frequency)
        .join(Customer, Customer.id == Subscription.customer_id)
        .join(Product, Product.id == Subscription.product_id)
        .join(Provider, Provider.id == Subscription.provider_id)
        .join(BillingContract, BillingContract.id == Subscription.contract_id)
        .where(Provider.connection_id.is_not(None), Subscription.provider_subscription_id.is_not(None))
        .order_by(Subscription.id)
    ).all()
    status = {"active": "active", "suspended": "suspended", "deactivated": "deleted", "pending": "pending"}
    # Every API provider gets its folder, with or without subscriptions.
    by_conn: dict[str, list] = {c: [] for c in session.scalars(select(Provider.connection_id).where(Provider.connection_id.is_not(None)))
                                if c is not None}
    usage: dict[str, list] = {}
    for sub, tenant_id, offer_id, product_name, kind, conn_id, frequency in subs:
        assert conn_id is not None  # the query keeps providers with a connection
        by_conn.setdefault(conn_id, []).append({
            "id": sub.provider_subscription_id, "customerId": tenant_id, "offerId": offer_id, "offerName": product_name,
            "friendlyName": sub.name, "quantity": sub.quantity, "unitType": "Licenses" if kind.value == "license" else "Usage-based",
            "status": status[sub.status.value], "autoRenewEnabled": True,
            "billingCycle": "annual" if frequency in ("ANNUAL", "TRIENNIAL", "SEMIANNUAL") else "monthly",
            "effectiveStartDate": f"{sub.start_date.isoformat()}T00:00:00Z", "creationDate": f"{sub.start_date.isoformat()}T00:00:00Z",
        })
        if kind.value == "usage" and sub.status.value == "active":
            usage.setdefault(conn_id, []).append((sub, tenant_id))
    counts = {"subscriptions": 0, "usage_files": 0}
    for conn_id, records in by_conn.items():
        root = folder / conn_id
        root.mkdir(parents=True, exist_ok=True)
        (root / "subscriptions.json").write_text(_json.dumps({"items": records}, indent=1))
        counts["subscriptions"] += len(records)
        for n in range(1, days + 1):
            day = as_of - timedelta(days=n)
            rows = []
            for sub, tenant_id in usage.get(conn_id, []):
                if day < sub.start_date:
                    continue
                for meter_id, meter_name, unit, price in USAGE_METERS:
                    qty = Decimal(rng.randrange(5, 400)) / 4
                    rows.append([tenant_id, sub.provider_subscription_id, meter_id, meter_name, unit, day.isoformat(), qty,
                                 price, round_half_up(qty * Decimal(price), 2), sub.currency])
            for stage in ("interim", "final"):
                path = root / "usage" / stage / f"{day.isoformat()}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("w", newline="") as fh:
                    w = _csv.writer(fh)
                    w.writerow(["customerId", "subscriptionId", "meterId", "meterName", "unitOfMeasure", "usageDate", "quantity",
                                "unitPrice", "preTaxTotal", "currency"])
                    w.writerows(rows)
                counts["usage_files"] += 1
    (folder / DEMO_MARKER).write_text(f"demo provider files for {as_of}\n")
    return counts
