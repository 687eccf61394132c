"""Sync Subscriptions From Provider to Tenant (SPEC P1, S3, S6).

For every provider with an API or a file drop, each customer's subscription records are read and
applied, one transaction per customer, one savepoint per record (one bad record never stops the
rest):

* **Known subscription** (matched by ``provider_subscription_id``): if the provider's quantity or
  status differs from ours, the difference becomes a License Change Log with source ``provider``
  (``w365.billing.subscriptions.write_lcl``), never a silent overwrite. The provider's change is a fact,
  not a request: it is recorded without the quantity-reduction checks (SPEC C2 governs what *we*
  ask the provider to do). It is dated on the run's date D (when w365 observed it; the resource
  carries no change time): direction by ``direction_of`` and SPEC S6, so an increase or
  (re)activation bills from D (effective 00:05 on D) and a decrease, suspension or cancellation
  bills the old values through D and the new ones from D + 1 (effective 23:30 on D). Provider
  status: active -> active; suspended/disabled -> suspended; deleted/expired/cancelled ->
  deactivated; pending -> nothing yet. Suspended (or deactivated) on both sides: no LCL for a
  seat-count difference alone.
* **New subscription** with a known customer (``customer.provider_tenant_id``) and product
  (``product.offer_id`` equal to the offerId, or to its part before the first ':'): created with
  its activation LCL (source provider) on the customer's active billing contract whose frequency
  matches the subscription's billingCycle (monthly -> MONTHLY, annual -> ANNUAL, ...); several:
  the earliest-starting one. Priced from the price list (the contract's price list, sales unit
  of the billing cycle, else MONTHLY, in the contract's currency, effective on D); a usage
  product without a list price is created at zero price and zero markup (set the markup after).
  Billed from its effectiveStartDate (tenant-local date), not before the contract's start and
  not after D. A new record that is not active at the provider is ignored.
* **Quarantine**: unknown customer, unknown product, no matching contract or price, a record
  that belongs to another provider or customer, a malformed record: the record is skipped and
  reported with the reason (``job_exception``, entity ``provider_subscription``, and the job's
  report). A customer whose subscriptions could not be read is reported the same way
  (``provider_customer``); its subscriptions are left as they are.

Subscriptions the provider no longer lists are not deactivated: Partner Center lists deleted
subscriptions with status ``deleted``, which is what deactivates them here.

Rerun safety: a subscription that already matches produces nothing; a created subscription is
found by its provider id the next time.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime
from typing import Any, Callable

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from w365.core import tenant_time
from w365.store.models import (
    BillingContract,
    ChangeSource,
    ContractStatus,
    Customer,
    Product,
    ProductKind,
    ProductPrice,
    Provider,
    ProviderKind,
    Subscription,
)
from w365.store.retry import run_retrying, transient_reason
from w365.store.session import get_engine, is_postgres, lock_contracts, session_scope
from w365.errors import W365Error
from w365.store.job_report import record_exceptions
from w365.core.ledger import state_of
from w365.core.money import MoneyError
from w365.integrations.providers.base import (
    BILLING_CYCLE_UNITS,
    BadRecord,
    ProviderSubscription,
    ProviderUnavailable,
    SubscriptionBatch,
    parse_subscription,
)
from w365.billing.subscriptions import create_subscription, get_tenant, write_lcl
from w365.billing.change_rules import direction_of

log = logging.getLogger(__name__)

JOB = "sync_subscriptions_from_provider"
KEY_LENGTH = 64  # a record's key in the report and job_exception: its id, when it is a valid one


class Quarantine(Exception):
    """The record cannot be applied; the message is the reason reported."""


@dataclass
class SyncResult:
    provider: str
    records: int = 0
    unchanged: int = 0
    ignored: int = 0
    changed: list[dict[str, Any]] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    customers_failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add(self, other: "SyncResult") -> None:
        self.records += other.records
        self.unchanged += other.unchanged
        self.ignored += other.ignored
        self.changed += other.changed
        self.created += other.created


@dataclass
class _Context:
    provider: Provider
    as_of: date
    now: datetime
    tz: str
    customers: dict[str, Customer]
    products: dict[str, int]  # offer id -> product id
    subs: dict[str, Subscription]


def product_for(products: dict[str, int], offer_id: str) -> int | None:
    """By offer id, exactly or by the product part of a new-commerce offer id (``SKU:0001:...``)."""
    return products.get(offer_id) or products.get(offer_id.split(":", 1)[0])


def offer_products(session: Session) -> dict[str, int]:
    products: dict[str, int] = {}
    for offer, pid in session.execute(select(Product.offer_id, Product.id).where(Product.offer_id.is_not(None)).order_by(Product.id)):
        if offer is not None:
            products.setdefault(offer, pid)
    return products


def contract_for(session: Session, customer_id: int, unit: str) -> BillingContract | None:
    return session.scalars(
        select(BillingContract)
        .where(BillingContract.customer_id == customer_id, BillingContract.status == ContractStatus.ACTIVE, BillingContract.frequency == unit)
        .order_by(BillingContract.start_date, BillingContract.id)
    ).first()


def list_price(session: Session, product_id: int, price_list: str, unit: str, currency: str, on: date) -> ProductPrice | None:
    return session.scalars(
        select(ProductPrice)
        .where(
            ProductPrice.product_id == product_id, ProductPrice.price_list == price_list, ProductPrice.sales_unit == unit,
            ProductPrice.currency == currency, ProductPrice.effective_from <= on,
        )
        .order_by(ProductPrice.effective_from.desc())
    ).first()


def _load_context(session: Session, provider: Provider, batch: SubscriptionBatch, as_of: date, now: datetime,
                  products: dict[str, int] | None) -> _Context:
    ids = [str(r.get("id")) for r in batch.records if isinstance(r, dict) and r.get("id")]
    tenants = {str(r.get("customerId")) for r in batch.records if isinstance(r, dict) and r.get("customerId")}
    if batch.customer_tenant_id:
        tenants.add(batch.customer_tenant_id)
    customers = {c.provider_tenant_id: c for c in session.scalars(select(Customer).where(Customer.provider_tenant_id.in_(tenants)))} if tenants else {}
    if ids:  # their contracts' locks first, in the order every billing writer takes them (issue 11)
        lock_contracts(session, session.scalars(select(Subscription.contract_id).where(Subscription.provider_subscription_id.in_(ids))))
    subs = {s.provider_subscription_id: s for s in session.scalars(select(Subscription).where(Subscription.provider_subscription_id.in_(ids)))} if ids else {}
    return _Context(provider, as_of, now, get_tenant(session).time_zone, customers,  # type: ignore[arg-type]
                    products if products is not None else offer_products(session), subs)  # type: ignore[arg-type]


def _start_day(ps: ProviderSubscription, contract: BillingContract, ctx: _Context) -> date:
    when = ps.effective_start_date or ps.creation_date
    day = tenant_time.local_date(when, ctx.tz) if when else ctx.as_of
    return min(max(day, contract.start_date), ctx.as_of)


def _update(session: Session, ctx: _Context, sub: Subscription, ps: ProviderSubscription, customer: Customer) -> dict[str, Any] | None:
    if sub.provider_id != ctx.provider.id:
        raise Quarantine(f"is subscription #{sub.id} here, which belongs to another provider (#{sub.provider_id})")
    if sub.customer_id != customer.id:
        raise Quarantine(f"is subscription #{sub.id} of customer #{sub.customer_id} here, but of tenant {ps.customer_tenant_id} at the provider")
    status = ps.w365_status
    if status is None:
        return None
    if is_postgres(session):
        session.execute(select(Subscription.id).where(Subscription.id == sub.id).with_for_update(key_share=True))
        session.refresh(sub)
    before = state_of(sub)
    if status != "active" and before.status == status:
        return None  # suspended or deactivated on both sides: its seat count bills nothing
    after = replace(before, quantity=ps.quantity, status=status)
    if after == before:
        return None
    direction = direction_of(before, after)
    lcl = write_lcl(
        session, sub, before, after, day=ctx.as_of,
        effective_at=tenant_time.scheduled_instant(ctx.as_of, direction, ctx.tz), source=ChangeSource.PROVIDER,
        provider_kind=ProviderKind(ctx.provider.kind), now=ctx.now, created_by=JOB,
        note=f"{ctx.provider.name} reports quantity {ps.quantity}, status {ps.status}",
    )
    return {
        "provider_subscription_id": ps.id, "subscription_id": sub.id, "lcl_id": lcl.id, "change": lcl.change_type.value,
        "quantity": f"{before.quantity} -> {after.quantity}", "status": f"{before.status} -> {after.status}",
        "bill_from": lcl.bill_from.isoformat(),
    }


def _create(session: Session, ctx: _Context, ps: ProviderSubscription, customer: Customer) -> dict[str, Any] | None:
    if ps.w365_status != "active":
        return None
    pid = product_for(ctx.products, ps.offer_id)
    product = session.get(Product, pid) if pid is not None else None
    if product is None:
        raise Quarantine(f"unknown product: no product has offer id {ps.offer_id!r} ({ps.offer_name or 'no offer name'})")
    unit = BILLING_CYCLE_UNITS.get(ps.billing_cycle or "monthly")
    if unit is None:
        raise Quarantine(f"billing cycle {ps.billing_cycle!r} has no w365 frequency")
    contract = contract_for(session, customer.id, unit)
    if contract is None:
        raise Quarantine(f"customer {customer.name} has no active {unit} billing contract for this {ps.billing_cycle or 'monthly'} subscription")
    price = list_price(session, product.id, contract.price_list, unit, contract.currency, ctx.as_of)
    if price is None and unit != "MONTHLY":
        price = list_price(session, product.id, contract.price_list, "MONTHLY", contract.currency, ctx.as_of)
    is_usage = product.kind == ProductKind.USAGE.value
    if price is None and not is_usage:
        raise Quarantine(
            f"no {contract.currency} price for product {product.sku} in price list {contract.price_list!r} effective {ctx.as_of}"
        )
    start = _start_day(ps, contract, ctx)
    sub = create_subscription(
        session, contract=contract, product=product, provider=ctx.provider, name=ps.name[:200], quantity=ps.quantity,
        selling_price=price.selling_price if price else 0, cost_price=price.cost_price if price else 0,  # type: ignore[arg-type]
        sales_unit=price.sales_unit if price else "MONTHLY", currency=contract.currency, start_date=start, now=ctx.now,
        provider_subscription_id=ps.id, provisioned_on=start, source=ChangeSource.PROVIDER, created_by=JOB,
    )
    ctx.subs[ps.id] = sub
    return {"provider_subscription_id": ps.id, "subscription_id": sub.id, "contract": contract.number, "start_date": start.isoformat()}


def apply_batch(
    session: Session, provider: Provider, batch: SubscriptionBatch, *, as_of: date, now: datetime, result: SyncResult,
    products: dict[str, int] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Apply one customer's records in the caller's transaction. Returns (problems, ok keys).
    ``products``: offer id -> product id, loaded once per run by the caller (else here)."""
    problems: dict[str, str] = {}
    ok: list[str] = []
    ctx = _load_context(session, provider, batch, as_of, now, products)
    for n, raw in enumerate(batch.records, start=1):
        result.records += 1
        key = str(raw["id"]) if isinstance(raw, dict) and raw.get("id") else ""
        if not key or len(key) > KEY_LENGTH or not key.isprintable():  # a hostile id is reported by position
            key = f"{batch.customer_tenant_id or '?'}#{n}"
        try:
            with session.begin_nested():
                ps = parse_subscription(raw, batch.customer_tenant_id)
                customer = ctx.customers.get(ps.customer_tenant_id or "")
                if customer is None:
                    raise Quarantine(f"unknown customer: no customer has provider tenant id {ps.customer_tenant_id}")
                sub = ctx.subs.get(ps.id)
                if sub is not None:
                    change = _update(session, ctx, sub, ps, customer)
                    if change:
                        result.changed.append(change)
                    else:
                        result.unchanged += 1
                else:
                    made = _create(session, ctx, ps, customer)
                    if made:
                        result.created.append(made)
                    else:
                        result.ignored += 1
        except (Quarantine, BadRecord, MoneyError, W365Error) as exc:
            problems[key] = str(exc)
        except DBAPIError as exc:
            if transient_reason(exc) is not None:
                raise  # not the record's fault: the whole batch is redone
            problems[key] = f"refused by the database: {str(exc.orig).splitlines()[0]}"
        else:
            ok.append(key)
    return problems, ok


def sync_subscriptions(
    as_of: date, *, now: datetime, client_factory: Callable[[Any], Any] | None = None, engine: Engine | None = None
) -> dict[str, Any]:
    """Run the sync for every provider with an API or a file drop (see the module docstring)."""
    from w365.integrations.providers import client_for

    engine = engine or get_engine()
    factory = client_factory or client_for
    report: dict[str, Any] = {"job": JOB, "as_of": as_of.isoformat(), "providers": [], "problems": {}, "failed_providers": {}}
    with session_scope(engine) as s:
        providers = [p.id for p in s.scalars(select(Provider).where(Provider.kind != ProviderKind.MANUAL).order_by(Provider.id))]
    for pid in providers:
        with session_scope(engine) as s:
            provider = s.get(Provider, pid)
            assert provider is not None
            name = provider.name
            products = offer_products(s)
        result = SyncResult(name)
        try:
            with factory(provider) as client:
                for batch in client.subscription_batches():
                    if batch.error:
                        key = batch.customer_tenant_id or "(no id)"
                        result.customers_failed[key] = batch.error
                        with session_scope(engine) as s:
                            record_exceptions(s, JOB, as_of, "provider_customer", {key: batch.error})
                        continue

                    def one(batch: SubscriptionBatch = batch, name: str = name, pid: int = pid,
                            products: dict[str, int] = products) -> tuple[SyncResult, dict[str, str]]:
                        part = SyncResult(name)  # counted only once the batch commits
                        with session_scope(engine) as s:
                            prov = s.get(Provider, pid)
                            problems, ok = apply_batch(s, prov, batch, as_of=as_of, now=now, result=part, products=products)  # type: ignore[arg-type]
                            record_exceptions(s, JOB, as_of, "provider_subscription", problems, cleared=ok)
                            if batch.customer_tenant_id:
                                record_exceptions(s, JOB, as_of, "provider_customer", {}, cleared=[batch.customer_tenant_id])
                        return part, problems

                    part, problems = run_retrying(one, f"{JOB}: {name} customer {batch.customer_tenant_id or '?'}")
                    result.add(part)
                    result.quarantined.update(problems)
                    for key, reason in problems.items():
                        log.warning("%s: %s record %s quarantined: %s", JOB, name, key, reason)
        except (ProviderUnavailable, W365Error) as exc:
            log.error("%s: provider %s: %s", JOB, name, exc)
            report["failed_providers"][name] = str(exc)
            with session_scope(engine) as s:
                record_exceptions(s, JOB, as_of, "provider", {name: str(exc)})
        else:
            with session_scope(engine) as s:
                record_exceptions(s, JOB, as_of, "provider", {}, cleared=[name])
        log.info("%s: %s: %d record(s), %d changed, %d created, %d unchanged, %d quarantined", JOB, name, result.records,
                 len(result.changed), len(result.created), result.unchanged, len(result.quarantined))
        report["providers"].append(result.to_dict())
        report["problems"].update({f"{name}:{k}": v for k, v in {**result.quarantined, **result.customers_failed}.items()})
    return report
