"""Checks that prove the books (``w365 verify ledger`` and ``w365 verify billing``).

* Ledger (SPEC S3): every subscription equals the fold of its LCLs, and each LCL's "before"
  equals the previous one's "after".
* Billing (SPEC B3-B5, C4, C12, M2): for every day of every period w365 has billed, the invoice
  lines of each subscription add up, per unit price, to exactly the quantity its change log
  says for that day: billed once, at the right quantity and price. Computed day by day, in a
  deliberately naive way, independent of the generator's change-point arithmetic.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from w365.db.models import BillingContract, LicenseChangeLog, Subscription
from w365.invoicing.generator import BadContractData, Pricer
from w365.invoicing.loader import load_bundles, load_rates, load_units, terms_for
from w365.invoicing.planner import billed_periods
from w365.ledger import FIELDS, Change, Drift, State, change_of, check_chain, state_of


def verify_ledger(session: Session, subscription_ids: Iterable[int] | None = None) -> tuple[int, list[Drift]]:
    q = select(Subscription).execution_options(populate_existing=True)  # read the rows, not a cache
    if subscription_ids is not None:
        q = q.where(Subscription.id.in_(list(subscription_ids)))
    subs = {s.id: state_of(s) for s in session.scalars(q)}
    changes: dict[int, list[Change]] = defaultdict(list)
    lq = select(LicenseChangeLog)
    if subscription_ids is not None:
        lq = lq.where(LicenseChangeLog.subscription_id.in_(list(subs)))
    for lcl in session.scalars(lq):
        changes[lcl.subscription_id].append(change_of(lcl))
    drifts: list[Drift] = []
    for sid, current in subs.items():
        drifts += check_chain(sid, current, changes.get(sid, []))
    return len(subs), drifts


def _state_on(changes: list[Change], day: date) -> tuple[State | None, Change | None]:
    """Naive fold: apply, in (bill-from, write order), every change billed from ``day`` or before."""
    first = min(changes, key=lambda c: c.order) if changes else None
    values: dict[str, object] = {}
    status_setter: Change | None = None
    for ch in sorted(changes, key=lambda c: (c.bill_from, c.order)):
        if ch.bill_from > day:
            break
        if ch is first or not values:
            base = ch.after if ch is first else ch.before
            values = {f: getattr(base, f) for f in FIELDS}
            status_setter = ch
        for f in FIELDS:
            if getattr(ch.before, f) != getattr(ch.after, f):
                values[f] = getattr(ch.after, f)
                if f == "status":
                    status_setter = ch
    return (State(**values) if values else None), status_setter  # type: ignore[arg-type]


def _qty(q: Decimal) -> str:
    return str(int(q)) if q == q.to_integral_value() else format(q.normalize(), "f")


@dataclass
class BillingDifference:
    contract: str
    subscription_id: int
    first_day: str
    last_day: str
    expected: dict[str, str]  # unit price -> quantity
    billed: dict[str, str]
    settles_by: str  # "change-log invoice", "next full-cycle invoice", or "none: error"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_billing(session: Session, contract_numbers: Iterable[str] | None = None) -> tuple[int, list[BillingDifference]]:
    q = select(BillingContract.id).where(BillingContract.billed_from.is_not(None))
    if contract_numbers:
        q = q.where(BillingContract.number.in_(list(contract_numbers)))
    ids = list(session.scalars(q))
    units, rates = load_units(session), load_rates(session)
    diffs: list[BillingDifference] = []
    days_checked = 0
    for start in range(0, len(ids), 200):
        for cid, b in load_bundles(session, ids[start : start + 200]).items():
            c = b.contract
            try:
                terms = terms_for(c, units)
            except BadContractData:
                continue
            pricer = Pricer(terms, units, rates)
            periods = billed_periods(terms, c.billed_from, c.next_invoice_date)
            last = periods[-1].start if periods else None
            billed_by_sub: dict[int, list] = defaultdict(list)  # type: ignore[type-arg]
            for line in b.billed:
                billed_by_sub[line.subscription_id].append(line)
            for sub in b.subs:
                if sub.kind != "license":
                    continue
                changes = list(sub.changes)
                for period in periods:
                    run: BillingDifference | None = None
                    day = period.start
                    while day < period.end:
                        days_checked += 1
                        expected: dict[Decimal, Decimal] = {}
                        in_service = day >= terms.anchor and (terms.service_end is None or day < terms.service_end)
                        state, setter = _state_on(changes, day) if in_service else (None, None)
                        if state is not None and state.billable_quantity:
                            price, _ = pricer.per_period(state.selling_price, state.sales_unit, sub.currency, period)
                            expected[price] = Decimal(state.billable_quantity)
                        have: dict[Decimal, Decimal] = defaultdict(Decimal)
                        for line in billed_by_sub.get(sub.id, ()):
                            if line.billing_period_from == period.start and line.start <= day < line.end and line.kind != "one_time":
                                have[line.unit_price] += line.quantity
                        have = {p: q for p, q in have.items() if q}
                        no_refund = setter is not None and not setter.apply_refund and state is not None and state.status != "active"
                        ok = expected == have or (no_refund and have)
                        if ok:
                            if run:
                                diffs.append(run)
                                run = None
                        else:
                            exp = {format(p, "f"): _qty(q) for p, q in sorted(expected.items())}
                            got = {format(p, "f"): _qty(q) for p, q in sorted(have.items())}
                            if run and run.expected == exp and run.billed == got:
                                run.last_day = day.isoformat()
                            else:
                                if run:
                                    diffs.append(run)
                                if c.change_billing == "next_cycle" and c.status == "active":
                                    settle = "next full-cycle invoice" if period.start == last else "none: error"
                                else:
                                    settle = "change-log invoice"
                                run = BillingDifference(c.number, sub.id, day.isoformat(), day.isoformat(), exp, got, settle)
                        day += timedelta(days=1)
                    if run:
                        diffs.append(run)
    return days_checked, diffs
