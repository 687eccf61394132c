"""Usage invoices (SPEC B3: usage in arrears, monthly even on annual contracts).

Usage invoices (SPEC B3: usage in arrears, monthly even on annual contracts): on the first day of
a month the final-usage job bills the month before, one invoice per contract with final usage,
one line per usage subscription and currency: quantity = the month's pre-tax cost, unit price =
1 + markup % (times the exchange rate when the usage currency is not the contract's), amount =
quantity x unit price rounded once, half up (SPEC M2). Invoice numbers come from the invoicing
engine's ``write_plans`` (gapless); the unique index on (contract, period_from) for usage
invoices makes a rerun a no-op.

Sums are exact on both backends; money never becomes float (SPEC M1).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable, Iterable

from sqlalchemy import Engine, func, select, type_coerce
from sqlalchemy.orm import Session

from w365.billing.invoicing.dispatcher import InvoiceSummary, write_plans
from w365.billing.invoicing.generator import (
    BadContractData,
    ContractTerms,
    Pricer,
    ProposedLine,
)
from w365.billing.invoicing.loader import ContractBundle, ContractRow, contract_rows, load_rates
from w365.billing.invoicing.planner import Plan, PlannedInvoice
from w365.core.calendar import Period, add_months
from w365.core.money import (
    PRICE_PLACES,
    UnknownCurrency,
    line_amount,
    minor_units,
    round_half_up,
)
from w365.store.job_report import record_exceptions
from w365.store.models import (
    Invoice,
    InvoiceKind,
    Product,
    ProductKind,
    Subscription,
    UsageKind,
    UsageRecord,
)
from w365.store.retry import batch_or_each
from w365.store.session import get_engine, is_postgres, lock_contracts, session_scope
from w365.store.types import ExactDecimal

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

JOB_INTERIM = "sync_daily_usage_data"
JOB_FINAL = "sync_usage_data"


def job_for(kind: str) -> str:
    return JOB_FINAL if kind == UsageKind.FINAL.value else JOB_INTERIM


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_period(first: date) -> Period:
    return Period(0, first, add_months(first, 1))


# --------------------------------------------------------------------------------------------
# Reading sums (exact on both backends)


def usage_sums(session: Session, start: date, end: date, kinds: Iterable[str], subscription_ids: Iterable[int] | None = None) -> dict[tuple[int, date, str, str], Decimal]:
    """(subscription, usage date, kind, currency) -> sum of pre-tax totals for days in [start, end].

    PostgreSQL sums NUMERIC in SQL; SQLite keeps money as text, so it is summed in Python."""
    u = UsageRecord
    cond = [u.usage_date >= start, u.usage_date <= end, u.kind.in_([UsageKind(k) for k in kinds])]
    ids = list(subscription_ids) if subscription_ids is not None else None
    if ids is not None:
        if not ids:
            return {}
        cond.append(u.subscription_id.in_(ids))
    out: dict[tuple[int, date, str, str], Decimal] = defaultdict(Decimal)
    if is_postgres(session):
        q = (
            select(u.subscription_id, u.usage_date, u.kind, u.currency, type_coerce(func.sum(u.pre_tax_total), ExactDecimal(18, 4)))
            .where(*cond).group_by(u.subscription_id, u.usage_date, u.kind, u.currency)
        )
        for sid, d, k, cur, total in session.execute(q):
            out[(sid, d, k, cur)] = total
    else:
        q = select(u.subscription_id, u.usage_date, u.kind, u.currency, u.pre_tax_total).where(*cond)
        for sid, d, k, cur, total in session.execute(q.execution_options(yield_per=20000)):
            out[(sid, d, k, cur)] += total
    return dict(out)


def effective_sums(sums: dict[tuple[int, date, str, str], Decimal]) -> dict[tuple[int, str], Decimal]:
    """Per (subscription, currency): final usage where a day has it, else interim."""
    final_days = {(sid, d) for (sid, d, k, _c) in sums if k == UsageKind.FINAL.value}
    out: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for (sid, d, k, cur), total in sums.items():
        if k == UsageKind.FINAL.value or (sid, d) not in final_days:
            out[(sid, cur)] += total
    return dict(out)


def markup_factor(markup_pct: Decimal) -> Fraction:
    return 1 + Fraction(markup_pct) / 100


# --------------------------------------------------------------------------------------------
# Monthly usage invoices (SPEC B3)


def plan_usage_invoice(
    contract: ContractRow, period: Period, subs: list[tuple[int, str, Decimal]], totals: dict[tuple[int, str], Decimal], pricer: Pricer
) -> PlannedInvoice | None:
    """One usage invoice for ``period``: a line per usage subscription and usage currency.
    ``subs``: (id, name, markup %). Raises BadContractData (e.g. no exchange rate)."""
    lines: list[ProposedLine] = []
    days = period.days
    for sid, name, markup in subs:
        for (tsid, cur), cost in sorted(totals.items()):
            if tsid != sid or cost == 0:
                continue
            rate = pricer.rate(cur, period.start)
            factor = markup_factor(markup)
            unit_price = round_half_up(factor * (Fraction(rate) if rate is not None else 1), PRICE_PLACES)
            amount = line_amount(cost, unit_price, days, days, contract.currency)
            conv = f" x rate {rate}" if rate is not None else ""
            lines.append(ProposedLine(
                subscription_id=sid, kind="usage", period=period, start=period.start, end=period.end,
                quantity=cost, unit_price=unit_price, amount=amount, days=days, period_days=days, sales_unit=None,
                source_currency=cur if cur != contract.currency else None, fx_rate=rate,
                description=f"Usage {name}, {period.start.isoformat()} to {period.last_day.isoformat()}: "
                f"pre-tax cost {cost} {cur} x (1 + {format(markup.normalize(), 'f')}% markup){conv}",
            ))
    if not lines:
        return None
    return PlannedInvoice("usage", period.start, period.last_day, lines)


def bill_usage_month(first: date, *, as_of: date, engine: Engine | None = None, batch: int = 200) -> dict[str, Any]:
    """Usage invoices for the calendar month starting ``first``, one per contract (idempotent)."""
    from w365.billing.invoicing.loader import load_units

    engine = engine or get_engine()
    period = month_period(first)
    report: dict[str, Any] = {"month": first.strftime("%Y-%m"), "invoices": [], "skipped": {}, "already_invoiced": 0}
    with session_scope(engine) as s:
        sub_rows = s.execute(
            select(Subscription.id, Subscription.contract_id)
            .join(Product, Product.id == Subscription.product_id)
            .where(Product.kind == ProductKind.USAGE)
        ).all()
        contract_of = {sid: cid for sid, cid in sub_rows}
        sums = usage_sums(s, period.start, period.last_day, [UsageKind.FINAL.value], list(contract_of))
        contracts = sorted({contract_of[sid] for (sid, _d, _k, _c), v in sums.items() if v != 0})
        done = set(s.scalars(select(Invoice.contract_id).where(Invoice.kind == InvoiceKind.USAGE, Invoice.period_from == period.start)))
    report["already_invoiced"] = len([c for c in contracts if c in done])
    todo = [c for c in contracts if c not in done]
    log.info("usage invoices for %s: %d contract(s) with final usage, %d already invoiced", report["month"], len(contracts), report["already_invoiced"])
    totals_all: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for (sid, _d, _k, cur), v in sums.items():
        totals_all[(sid, cur)] += v
    month = report["month"]
    for i in range(0, len(todo), batch):
        batch_or_each(
            todo[i : i + batch],
            lambda ids: _bill_batch(engine, ids, period, totals_all, as_of=as_of, report=report, units_loader=load_units),
            lambda ids: f"{JOB_FINAL}: usage invoices for {month}, {len(ids)} contract(s) from #{ids[0]}",
        )
    return report


def _bill_batch(engine: Engine, ids: list[int], period: Period, totals: dict[tuple[int, str], Decimal], *, as_of: date, report: dict[str, Any], units_loader: Callable[[Session], dict[str, int | None]]) -> None:
    with session_scope(engine) as s:
        lock_contracts(s, ids)
        done = set(s.scalars(select(Invoice.contract_id).where(Invoice.contract_id.in_(ids), Invoice.kind == InvoiceKind.USAGE, Invoice.period_from == period.start)))
        units, rates = units_loader(s), load_rates(s)
        subs_by_contract: dict[int, list[tuple[int, str, Decimal]]] = defaultdict(list)
        for sid, cid, name, markup in s.execute(
            select(Subscription.id, Subscription.contract_id, Subscription.name, Subscription.markup_pct)
            .join(Product, Product.id == Subscription.product_id)
            .where(Subscription.contract_id.in_(ids), Product.kind == ProductKind.USAGE)
            .order_by(Subscription.id)
        ):
            subs_by_contract[cid].append((sid, name, markup or Decimal(0)))
        bundles: dict[int, ContractBundle] = {}
        plans: dict[int, Plan] = {}
        problems: dict[str, str] = {}
        ok: list[str] = []
        rows = contract_rows(s, ids)
        for cid in sorted(rows):
            if cid in done:
                continue
            row = rows[cid]
            try:
                minor_units(row.currency)  # an unknown contract currency skips the contract
                # Only the exchange rates matter here: usage periods are calendar months.
                terms = ContractTerms(row.id, row.number, row.currency, row.start_date, 1)
                inv = plan_usage_invoice(row, period, subs_by_contract[cid], totals, Pricer(terms, units, rates))
            except (BadContractData, UnknownCurrency) as exc:
                problems[row.number] = str(exc)
                continue
            ok.append(row.number)
            if inv is None:
                continue
            bundles[cid] = ContractBundle(row)
            plans[cid] = Plan([inv], next_invoice_date=row.next_invoice_date, billed_from=row.billed_from)
        summaries: list[InvoiceSummary] = write_plans(s, bundles, plans, as_of=as_of, job=JOB_FINAL, problems=problems)
        record_exceptions(s, JOB_FINAL, as_of, "billing_contract", problems, cleared=ok)
    for key, reason in problems.items():
        log.warning("%s: contract %s: usage not invoiced: %s", JOB_FINAL, key, reason)
    report["skipped"].update(problems)
    report["invoices"] += [asdict(x) for x in summaries]
