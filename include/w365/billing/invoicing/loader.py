"""Set-based loading of what the generator needs for a batch of contracts (a few queries a batch,
never one per contract or subscription)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from w365 import hooks
from w365.billing.invoicing.generator import (
    BadContractData,
    BilledLine,
    ContractTerms,
    Pricer,
    SubscriptionInput,
)
from w365.core.calendar import frequency_group
from w365.core.ledger import Change, State, scheduled_state
from w365.errors import W365Error
from w365.store.models import (
    BillingContract,
    ChangeBilling,
    ContractStatus,
    ExchangeRate,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceLineLCL,
    InvoiceLineSLCL,
    LicenseChangeLog,
    Product,
    ScheduledLicenseChangeLog,
    SLCLAction,
    SLCLStatus,
    Subscription,
    UnitMapping,
)

SLCL_ORDER_BASE = 10**12  # not-yet-merged changes sort after every written LCL


@dataclass
class ContractRow:
    id: int
    number: str
    customer_id: int
    currency: str
    frequency: str
    start_date: date
    end_date: date | None
    auto_renew: bool
    status: str
    next_invoice_date: date | None
    billed_from: date | None
    payment_terms_days: int
    change_billing: str


@dataclass
class ContractBundle:
    contract: ContractRow
    subs: list[SubscriptionInput] = field(default_factory=list)
    billed: list[BilledLine] = field(default_factory=list)
    full_cycle_periods: set[date] = field(default_factory=set)



def load_units(session: Session) -> dict[str, int | None]:
    return {code: months for code, months in session.execute(select(UnitMapping.code, UnitMapping.months))}


def load_rates(session: Session) -> dict[tuple[str, str], list[tuple[date, Decimal]]]:
    rates: dict[tuple[str, str], list[tuple[date, Decimal]]] = defaultdict(list)
    for f, t, eff, rate in session.execute(
        select(ExchangeRate.from_currency, ExchangeRate.to_currency, ExchangeRate.effective_from, ExchangeRate.rate).order_by(
            ExchangeRate.effective_from
        )
    ):
        rates[(f, t)].append((eff, rate))
    return dict(rates)


def service_end(c: ContractRow) -> date | None:
    """First day not billed: after the term's last day, unless the contract will renew."""
    if c.end_date is None:
        return None
    if c.status == ContractStatus.ACTIVE.value and c.auto_renew:
        return None
    return c.end_date + timedelta(days=1)


def terms_for(c: ContractRow, units: dict[str, int | None]) -> ContractTerms:
    months = units.get(c.frequency)
    if months is None:
        raise BadContractData(f"frequency {c.frequency!r} has no period length in the unit mapping")
    return ContractTerms(c.id, c.number, c.currency, c.start_date, months, service_end(c))


def pricer_for(terms: ContractTerms, units: dict[str, int | None], rates: dict) -> Pricer:  # type: ignore[type-arg]
    return Pricer(terms, units, rates)


def contract_rows(session: Session, ids: Sequence[int]) -> dict[int, ContractRow]:
    """The generator's view of these contracts (one query; every billing path loads contracts here)."""
    c = BillingContract
    rows = session.connection().execute(
        select(
            c.id, c.number, c.customer_id, c.currency, c.frequency, c.start_date, c.end_date, c.auto_renew, c.status,
            c.next_invoice_date, c.billed_from, c.payment_terms_days, c.change_billing,
        ).where(c.id.in_(ids))
    )
    out = {}
    for r in rows:
        out[r.id] = ContractRow(
            r.id, r.number, r.customer_id, r.currency, r.frequency, r.start_date, r.end_date, r.auto_renew, r.status,  # type: ignore[arg-type]
            r.next_invoice_date, r.billed_from, r.payment_terms_days, r.change_billing,  # type: ignore[arg-type]
        )
    return out


def load_bundles(session: Session, contract_ids: Iterable[int]) -> dict[int, ContractBundle]:
    ids = sorted(set(contract_ids))
    if not ids:
        return {}
    bundles = {cid: ContractBundle(row) for cid, row in contract_rows(session, ids).items()}
    conn = session.connection()  # Core rows: no ORM loading machinery for plain columns

    s, p = Subscription, Product
    subs: dict[int, dict] = {}  # type: ignore[type-arg]
    for r in conn.execute(
        select(s.id, s.name, s.currency, s.contract_id, p.kind, s.quantity, s.selling_price, s.cost_price, s.sales_unit, s.status)
        .join(p, p.id == s.product_id)
        .where(s.contract_id.in_(ids))
    ).all():
        subs[r.id] = {
            "row": r,
            "current": State(r.quantity, r.selling_price, r.cost_price, r.sales_unit, r.status),  # type: ignore[arg-type]
            "changes": [],
        }

    lcl = LicenseChangeLog
    states: dict[tuple, State] = {}  # type: ignore[type-arg]  # most changes share states: build each once
    for (
        lcl_id, sub_id, bill_from, slcl_id, refund, q0, sp0, cp0, su0, st0, q1, sp1, cp1, su1, st1,
    ) in conn.execute(
        select(
            lcl.id, lcl.subscription_id, lcl.bill_from, lcl.slcl_id, lcl.apply_refund,
            lcl.quantity_before, lcl.selling_price_before, lcl.cost_price_before, lcl.sales_unit_before, lcl.status_before,
            lcl.quantity_after, lcl.selling_price_after, lcl.cost_price_after, lcl.sales_unit_after, lcl.status_after,
        )
        .join(s, s.id == lcl.subscription_id)
        .where(s.contract_id.in_(ids))
    ).all():
        key0 = (q0, sp0, cp0, su0, st0)
        before = states.get(key0) or states.setdefault(key0, State(q0, sp0, cp0, su0, st0))  # type: ignore[arg-type]
        key1 = (q1, sp1, cp1, su1, st1)
        after = states.get(key1) or states.setdefault(key1, State(q1, sp1, cp1, su1, st1))  # type: ignore[arg-type]
        subs[sub_id]["changes"].append(Change(lcl_id, bill_from, before, after, slcl_id, refund, lcl_id))

    hooks.at("invoice.read_change_logs")  # tests pause here, between two reads, while another job commits

    sl = ScheduledLicenseChangeLog
    for sr in conn.execute(
        select(sl.id, sl.subscription_id, sl.bill_from, sl.action, sl.quantity, sl.selling_price, sl.cost_price, sl.sales_unit, sl.apply_refund)
        .join(s, s.id == sl.subscription_id)
        .where(s.contract_id.in_(ids), sl.status.in_((SLCLStatus.PENDING, SLCLStatus.AWAITING_MERGE)))
    ):
        info = subs[sr.subscription_id]
        info["changes"].append(slcl_change(info["current"], sr))

    for sid, info in subs.items():
        row = info["row"]
        bundles[row.contract_id].subs.append(SubscriptionInput(sid, row.name, row.kind, row.currency, tuple(info["changes"])))  # type: ignore[arg-type]

    il, inv = InvoiceLine, Invoice

    def links_of(link: type[InvoiceLineLCL] | type[InvoiceLineSLCL], target: Any) -> dict[int, set[int]]:
        """Line id -> the LCL (or SLCL) ids it links, for the batch's lines (M3)."""
        out: dict[int, set[int]] = defaultdict(set)
        for line_id, target_id in conn.execute(
            select(link.invoice_line_id, target).join(il, il.id == link.invoice_line_id).join(inv, inv.id == il.invoice_id)
            .where(inv.contract_id.in_(ids))
        ).all():
            out[line_id].add(target_id)
        return out

    links, slcl_links = links_of(InvoiceLineLCL, InvoiceLineLCL.lcl_id), links_of(InvoiceLineSLCL, InvoiceLineSLCL.slcl_id)
    for lr in conn.execute(
        select(il.id, inv.contract_id, inv.number, il.line_no, il.subscription_id, il.kind, il.billing_period_from, il.period_from,
               il.period_to, il.quantity, il.unit_price, il.sales_unit, il.fx_rate)
        .join(inv, inv.id == il.invoice_id)
        .where(inv.contract_id.in_(ids), il.subscription_id.is_not(None))
        .order_by(il.id)
    ).all():
        bundles[lr.contract_id].billed.append(
            BilledLine(
                lr.subscription_id, lr.kind, lr.billing_period_from, lr.period_from, lr.period_to + timedelta(days=1),  # type: ignore[arg-type]
                lr.quantity, lr.unit_price, frozenset(links.get(lr.id, ())), frozenset(slcl_links.get(lr.id, ())),
                f"{lr.number} line {lr.line_no}", lr.sales_unit, lr.fx_rate, lr.id,
            )
        )
    for cid, pf in conn.execute(
        select(inv.contract_id, inv.period_from).where(inv.contract_id.in_(ids), inv.kind == InvoiceKind.FULL_CYCLE)
    ):
        bundles[cid].full_cycle_periods.add(pf)
    return bundles


def slcl_change(current: State, r) -> Change:  # type: ignore[no-untyped-def]
    """A pending scheduled change as the timeline sees it: the subscription's current values
    with the SLCL's new ones laid over, from the SLCL's bill-from day (SPEC C12)."""
    action = r.action
    after = scheduled_state(current, action, r.quantity, r.selling_price, r.cost_price, r.sales_unit)
    refund = bool(r.apply_refund) if action == SLCLAction.DEACTIVATE.value else True
    return Change(None, r.bill_from, current, after, slcl_id=r.id, apply_refund=refund, order=SLCL_ORDER_BASE + r.id)


# --------------------------------------------------------------------------------------------
# Which contracts a run bills

GROUPS = ("monthly", "quarterly", "annual")


def group_units(session: Session, group: str) -> list[str]:
    if group not in GROUPS:
        raise W365Error(f"unknown frequency {group!r}; one of {', '.join(GROUPS)}")
    return [code for code, months in session.execute(select(UnitMapping.code, UnitMapping.months)) if months and frequency_group(months) == group]


def due_contract_ids(session: Session, group: str, horizon: date, numbers: Sequence[str] | None = None) -> list[int]:
    """Active contracts of the group whose next invoice date is on or before ``horizon``."""
    q = select(BillingContract.id).where(
        BillingContract.status == ContractStatus.ACTIVE,
        BillingContract.frequency.in_(group_units(session, group)),
        BillingContract.next_invoice_date <= horizon,
    )
    if numbers:
        q = q.where(BillingContract.number.in_(list(numbers)))
    return list(session.scalars(q.order_by(BillingContract.id)))


def change_log_contract_ids(session: Session, group: str, numbers: Sequence[str] | None = None) -> list[int]:
    """Contracts with billed periods that bill changes now: immediate ones, and any whose term
    is over (no next cycle will come to carry the difference)."""
    q = select(BillingContract.id).where(
        BillingContract.frequency.in_(group_units(session, group)),
        BillingContract.billed_from.is_not(None),
        (BillingContract.change_billing == ChangeBilling.IMMEDIATE) | (BillingContract.status != ContractStatus.ACTIVE),
    )
    if numbers:
        q = q.where(BillingContract.number.in_(list(numbers)))
    return list(session.scalars(q.order_by(BillingContract.id)))
