"""Add Incentive Plan: sales commission per salesperson and period, from invoiced revenue.

Decisions:

* **Period**: the calendar month containing the day before the run date, through that day (the
  last complete day). A daily run keeps the month's plan up to date; the run on the 1st closes
  the previous month with every invoice issued in it. A rerun for the same date recomputes the
  same figures (idempotent per period: one plan per salesperson, period and currency, updated in
  place; a plan whose salesperson no longer has revenue in the period is removed).
* **Salesperson**: the billing contract's, else the customer's. Invoices with neither are reported
  (``job_exception``) and not counted.
* **Revenue**: the totals of the invoices issued in the period (all kinds: full-cycle,
  change-log credits and charges, usage), per invoice currency; currencies are never mixed.
* **Cost** (an approximation, documented): per invoice line, what the same days cost at the
  subscription's *current* cost price: licence lines quantity x cost price per sales unit
  converted to the contract's billing period (unit mapping) x days / period days x the line's
  exchange rate; one-time lines quantity x cost price x rate; usage lines their pre-tax cost (the
  line's quantity) x rate. Exact when the cost price did not change since the line was billed.
* **Margin** = revenue - cost; **commission** = margin x rate, rate from the job param
  ``commission_rate`` or ``[w365] commission_rate`` (default 0.05). Amounts are computed exactly
  and rounded once, half up (SPEC M2).
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from w365.store.models import BillingContract, Customer, IncentivePlan, Invoice, InvoiceLine, Subscription, UnitMapping
from w365.errors import W365Error
from w365.store.job_report import capped, replace_exceptions
from w365.core.money import D, MoneyError, check_places, round_money

log = logging.getLogger(__name__)

JOB = "add_incentive_plan"
DEFAULT_RATE = Decimal("0.05")


def commission_rate(value: Any = None) -> Decimal:
    from w365.config import setting

    raw = value if value not in (None, "") else setting("commission_rate", str(DEFAULT_RATE))
    try:
        rate = check_places(D(str(raw)), 6, "commission rate")
    except MoneyError as exc:
        raise W365Error(str(exc)) from None
    if not 0 <= rate <= 1:
        raise W365Error(f"commission rate {rate} must be between 0 and 1 (0.05 = 5%)")
    return rate


def period_for(as_of: date) -> tuple[date, date]:
    last = as_of - timedelta(days=1)
    return last.replace(day=1), last


def line_cost(kind: str, quantity: Decimal, days: int, period_days: int, fx: Decimal | None, cost_price: Decimal | None,
              unit_months: int | None, period_months: int | None) -> Fraction:
    rate = Fraction(fx) if fx is not None else Fraction(1)
    if kind == "usage":
        return Fraction(quantity) * rate
    if cost_price is None:
        return Fraction(0)
    if kind == "one_time" or not unit_months or not period_months:
        return Fraction(quantity) * Fraction(cost_price) * rate
    per_period = Fraction(cost_price) * Fraction(period_months, unit_months)
    return Fraction(quantity) * per_period * Fraction(days, period_days) * rate


def compute_plans(session: Session, first: date, last: date) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, str]]:
    """(salesperson, currency) -> revenue, cost (exact), invoice count; unassigned invoices."""
    months = {code: m for code, m in session.execute(select(UnitMapping.code, UnitMapping.months))}
    inv, c, cu = Invoice, BillingContract, Customer
    invoices = session.execute(
        select(inv.id, inv.number, inv.currency, inv.total, inv.tax_total, c.salesperson, cu.salesperson, c.frequency)
        .join(c, c.id == inv.contract_id)
        .join(cu, cu.id == inv.customer_id)
        .where(inv.issue_date >= first, inv.issue_date <= last)
        .order_by(inv.id)
    ).all()
    plans: dict[tuple[str, str], dict[str, Any]] = {}
    unassigned: dict[str, str] = {}
    owner: dict[int, tuple[str, str, int | None]] = {}
    for iid, number, currency, total, tax_total, c_sp, cu_sp, freq in invoices:
        person = (c_sp or cu_sp or "").strip()
        if not person:
            unassigned[number] = "no salesperson on its billing contract or customer: not counted in any incentive plan"
            continue
        plan = plans.setdefault((person, currency), {"revenue": Decimal(0), "cost": Fraction(0), "invoices": 0})
        plan["revenue"] += total - tax_total  # revenue is before tax (SPEC I4): the tax is not the CSP's
        plan["invoices"] += 1
        owner[iid] = (person, currency, months.get(freq))
    ids = list(owner)
    il, s = InvoiceLine, Subscription
    for i in range(0, len(ids), 1000):
        for r in session.execute(
            select(il.invoice_id, il.kind, il.quantity, il.days, il.period_days, il.fx_rate, s.cost_price, s.sales_unit)
            .outerjoin(s, s.id == il.subscription_id)
            .where(il.invoice_id.in_(ids[i : i + 1000]))
        ):
            person, currency, period_months = owner[r.invoice_id]
            cost = line_cost(r.kind, r.quantity, r.days, r.period_days, r.fx_rate, r.cost_price,
                             months.get(r.sales_unit) if r.sales_unit else None, period_months)
            plans[(person, currency)]["cost"] += cost
    return plans, unassigned


def add_incentive_plans(session: Session, as_of: date, *, rate: Decimal, now: Any) -> dict[str, Any]:
    """Upsert the period's plans in the caller's transaction."""
    first, last = period_for(as_of)
    plans, unassigned = compute_plans(session, first, last)
    existing = {(p.salesperson, p.currency): p for p in session.scalars(select(IncentivePlan).where(IncentivePlan.period_from == first))}
    written = []
    new_rows = []
    for (person, currency), p in sorted(plans.items()):
        cost = round_money(p["cost"], currency)
        revenue = p["revenue"]
        margin = revenue - cost
        commission = round_money(Fraction(margin) * Fraction(rate), currency)
        values = {"period_to": last, "revenue": revenue, "cost": cost, "margin": margin, "commission_rate": rate,
                  "commission": commission, "invoice_count": p["invoices"]}
        row = existing.pop((person, currency), None)
        if row is None:
            new_rows.append({"salesperson": person, "period_from": first, "currency": currency, "created_at": now, **values})
        else:
            session.execute(update(IncentivePlan).where(IncentivePlan.id == row.id).values(**values))
        written.append({"salesperson": person, "currency": currency, **{k: format(v, "f") if isinstance(v, Decimal) else v for k, v in values.items() if k != "period_to"}})
    if new_rows:
        session.execute(insert(IncentivePlan), new_rows)
    if existing:
        session.execute(delete(IncentivePlan).where(IncentivePlan.id.in_([p.id for p in existing.values()])))
    replace_exceptions(session, JOB, as_of, "invoice", unassigned)
    log.info("%s: period %s to %s: %d plan(s), %d unassigned invoice(s)", JOB, first, last, len(written), len(unassigned))
    return {
        "job": JOB, "as_of": as_of.isoformat(), "period_from": first.isoformat(), "period_to": last.isoformat(),
        "commission_rate": format(rate, "f"), "plans": written, "removed": len(existing),
        "unassigned_count": len(unassigned), "unassigned": capped(unassigned),
    }
