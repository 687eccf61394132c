"""Which invoices a contract gets on a run date (pure): full-cycle and change-log plans.

Full cycle (SPEC J4, J5, B2): while the next invoice date is on or before run date + advance days,
bill the period starting there (licences in advance), together with any difference still owed for
periods billed before (changes of next-cycle contracts, SPEC B4), then advance the next invoice
date by the frequency, from the anchor. Change log (SPEC B4): the differences for periods already
billed, for contracts that bill changes immediately or whose term is over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Sequence

from w365.billing.invoicing.generator import (
    BadContractData,
    BilledLine,
    ContractTerms,
    Pricer,
    ProposedLine,
    SubscriptionInput,
    propose_lines,
)
from w365.core.calendar import Period
from w365.core.money import plain, plain_price, sum_amounts


@dataclass
class PlannedInvoice:
    kind: str  # full_cycle | change_log
    period_from: date
    period_to: date  # inclusive
    lines: list[ProposedLine]


@dataclass
class Plan:
    invoices: list[PlannedInvoice] = field(default_factory=list)
    next_invoice_date: date | None = None
    billed_from: date | None = None


def as_billed(lines: Sequence[ProposedLine]) -> list[BilledLine]:
    """Planned lines as billed lines, for planning the next invoice of the same run."""
    return [
        BilledLine(l.subscription_id, l.kind, l.period.start, l.start, l.end, l.quantity, l.unit_price, frozenset(l.lcl_ids),
                   frozenset(l.slcl_ids), sales_unit=l.sales_unit, fx_rate=l.fx_rate)
        for l in lines
    ]


def billed_periods(terms: ContractTerms, billed_from: date | None, next_invoice_date: date | None) -> list[Period]:
    """Periods from the first one w365 billed up to (not including) the next invoice date."""
    if billed_from is None or next_invoice_date is None:
        return []
    cal = terms.calendar
    out: list[Period] = []
    n = cal.index_of(billed_from)
    while True:
        p = cal.period(n)
        if p.start >= next_invoice_date:
            return out
        out.append(p)
        n += 1


def plan_full_cycle(
    terms: ContractTerms,
    subs: Sequence[SubscriptionInput],
    billed: Sequence[BilledLine],
    *,
    next_invoice_date: date,
    billed_from: date | None,
    horizon: date,
    pricer: Pricer,
    existing_full_cycle: frozenset[date] = frozenset(),
) -> Plan:
    cal = terms.calendar
    nid = next_invoice_date
    if cal.boundary(cal.index_of(nid)) != nid:
        raise BadContractData(f"next invoice date {nid} is not a period boundary of the contract (anchor {terms.anchor})")
    plan = Plan(next_invoice_date=nid, billed_from=billed_from)
    done = billed_periods(terms, billed_from, nid)
    so_far = list(billed)
    while nid <= horizon and (terms.service_end is None or nid < terms.service_end):
        period = cal.period(cal.index_of(nid))
        if plan.billed_from is None:
            plan.billed_from = period.start
        if period.start not in existing_full_cycle:  # pre-check: never the same period twice
            lines = propose_lines(terms, subs, so_far, done + [period], pricer)
            if lines:
                plan.invoices.append(PlannedInvoice("full_cycle", period.start, period.last_day, lines))
                so_far += as_billed(lines)
        done.append(period)
        nid = cal.boundary(period.index + 1)
        plan.next_invoice_date = nid
    return plan


def plan_change_log(
    terms: ContractTerms,
    subs: Sequence[SubscriptionInput],
    billed: Sequence[BilledLine],
    *,
    next_invoice_date: date | None,
    billed_from: date | None,
    pricer: Pricer,
) -> Plan:
    plan = Plan(next_invoice_date=next_invoice_date, billed_from=billed_from)
    periods = billed_periods(terms, billed_from, next_invoice_date)
    lines = propose_lines(terms, subs, billed, periods, pricer)
    if lines:
        start = min(l.start for l in lines)
        end = max(l.end for l in lines)
        plan.invoices.append(PlannedInvoice("change_log", start, end - timedelta(days=1), lines))
    return plan


def draft_dict(contract_number: str, currency: str, inv: PlannedInvoice) -> dict[str, Any]:
    return {
        "contract": contract_number,
        "kind": inv.kind,
        "currency": currency,
        "period_from": inv.period_from.isoformat(),
        "period_to": inv.period_to.isoformat(),
        "total": format(sum_amounts((l.amount for l in inv.lines), currency), "f"),
        "lines": [
            {
                "subscription_id": l.subscription_id, "kind": l.kind, "description": l.description,
                "period_from": l.start.isoformat(), "period_to": (l.end - timedelta(days=1)).isoformat(),
                "quantity": format(plain(l.quantity), "f"), "unit_price": format(plain_price(l.unit_price), "f"), "days": l.days,
                "period_days": l.period_days, "amount": format(l.amount, "f"), "lcl_ids": list(l.lcl_ids), "slcl_ids": list(l.slcl_ids),
            }
            for l in inv.lines
        ],
    }
