"""Reference data ops type by hand (issue 13): billing/sales units and exchange rates.

* **Units** (the unit mapping, SPEC B1, B5): a code with its length in months (a custom cadence
  such as ``SEMIANNUAL`` = 6, billed by the Annual jobs, J1) or none (one-time, non-recurring).
  A unit is only ever added: changing the months of a unit that contracts and subscriptions use
  would reprice every invoiced period, and removing it would orphan them.
* **Exchange rates** (SPEC S1): ``1 FROM = rate TO`` from a date on. A subscription priced in
  another currency than its contract is converted at the rate effective on each billing
  period's first day. Rates are only ever added, never edited or removed.

**Decision (rates over invoiced periods).** A new rate is refused when it would change the
conversion of a period already invoiced at another rate: for the pair FROM -> TO, it governs the
periods whose first day falls from its effective date up to the next rate's effective date of
the same pair; if an issued invoice line converted FROM -> TO for such a period at a different
rate, the new rate would reprice history (the next change-log or full-cycle run would credit the
period and re-bill it at the new rate, and ``w365 verify billing`` would report every day of it).
The refusal names the invoice, the period and the rate it used, and the earliest effective date
that would be accepted. A rate equal to the one already used, or one that only governs periods
not invoiced yet, is accepted. The same rule holds for ``w365 rate add`` and for
``exchange_rates.csv`` in ``w365 import``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from w365.core import limits
from w365.core.calendar import frequency_group
from w365.core.money import MoneyError, check_currency
from w365.errors import ValidationError
from w365.store.models import (
    BillingContract,
    ExchangeRate,
    Invoice,
    InvoiceLine,
    Subscription,
    UnitMapping,
)

# --------------------------------------------------------------------------------------------
# Units


def add_unit(session: Session, code: str, months: int | None, name: str | None = None) -> UnitMapping:
    """Add a unit to the unit mapping in the caller's transaction; ``months`` None = one-time."""
    record = f"unit {limits.show(code)}"
    try:
        code = limits.unit_code(code, "code", limits.column_length(UnitMapping.code))
        if months is not None:
            months = limits.unit_months(months)
        name = limits.text(name.strip(), "name", limits.column_length(UnitMapping.name)) if name else code.replace("_", " ").title()
    except limits.BadValue as exc:
        raise ValidationError(record, str(exc)) from None
    existing = session.get(UnitMapping, code)
    if existing is not None:
        length = "one-time" if existing.months is None else f"{existing.months} month{'s' if existing.months != 1 else ''}"
        raise ValidationError(f"unit {code}", f"exists already ({existing.name}, {length}); a unit is never changed: "
                              "contracts and subscriptions that use it would be repriced")
    unit = UnitMapping(code=code, name=name, months=months)
    session.add(unit)
    session.flush()
    return unit


def list_units(session: Session) -> list[dict[str, Any]]:
    """Every unit with its length, which full-cycle job bills it as a contract frequency, and how
    many contracts and subscriptions use it."""
    contracts = dict(session.execute(select(BillingContract.frequency, func.count()).group_by(BillingContract.frequency)).tuples().all())
    subs = dict(session.execute(select(Subscription.sales_unit, func.count()).group_by(Subscription.sales_unit)).tuples().all())
    out = []
    for u in session.scalars(select(UnitMapping).order_by(func.coalesce(UnitMapping.months, 0), UnitMapping.code)):
        out.append({
            "code": u.code, "name": u.name, "months": u.months, "kind": "one-time" if u.months is None else "recurring",
            "billed_by": f"generate_full_cycle_invoice_{frequency_group(u.months)}" if u.months else None,
            "contracts": contracts.get(u.code, 0), "subscriptions": subs.get(u.code, 0),
        })
    return out


# --------------------------------------------------------------------------------------------
# Exchange rates


@dataclass(frozen=True)
class RateConflict:
    """An issued line whose period's conversion a new rate would change."""

    invoice: str
    contract: str
    period_from: date
    period_to: date
    rate: Decimal
    latest_period_from: date  # the latest such period's first day: the new rate may start the day after

    def reason(self, source: str, target: str, rate: Decimal, effective_from: date) -> str:
        return (f"{source}->{target} {rate} from {effective_from} would reprice history: the period "
                f"{self.period_from}..{self.period_to} of contract {self.contract} was invoiced on {self.invoice} at "
                f"{self.rate.normalize():f}; invoiced periods keep their rate (docs/billing.md, \"Currency\"). Give an "
                f"effective date after {self.latest_period_from} (the first day of the last invoiced period it would "
                f"govern), i.e. {self.latest_period_from + timedelta(days=1)} or later")


def rate_conflict(session: Session, source: str, target: str, rate: Decimal, effective_from: date) -> RateConflict | None:
    """The first issued line a new ``source -> target`` rate from ``effective_from`` would
    reprice (module docstring), or None."""
    later = session.scalar(select(func.min(ExchangeRate.effective_from)).where(
        ExchangeRate.from_currency == source, ExchangeRate.to_currency == target, ExchangeRate.effective_from > effective_from))
    il, inv, c = InvoiceLine, Invoice, BillingContract
    q = (
        select(inv.number, c.number, il.billing_period_from, il.billing_period_to, il.fx_rate)
        .join(inv, inv.id == il.invoice_id).join(c, c.id == inv.contract_id)
        .where(il.source_currency == source, inv.currency == target, il.fx_rate.is_not(None), il.billing_period_from >= effective_from)
    )
    if later is not None:
        q = q.where(il.billing_period_from < later)
    rows = [r for r in session.execute(q.order_by(il.billing_period_from, inv.id, il.line_no)).all() if r[4] is not None and r[4] != rate]
    if not rows:
        return None
    number, contract, first, last, used = rows[0]
    return RateConflict(number, contract, first, last, cast(Decimal, used), max(r[2] for r in rows))


def check_rate(session: Session, source: str, target: str, rate: Any, effective_from: Any) -> tuple[str, str, Decimal, date]:
    """Every rule a new exchange rate must pass (bounds, currencies, duplicates, history);
    returns its values. Raises ValidationError naming the rate."""
    record = f"exchange rate {limits.show(source)}->{limits.show(target)}"
    try:
        source, target = check_currency(str(source).strip().upper()), check_currency(str(target).strip().upper())
    except MoneyError as exc:
        raise ValidationError(record, str(exc)) from None
    record = f"exchange rate {source}->{target}"
    try:
        rate = limits.exchange_rate(rate)
        effective_from = limits.day(effective_from, "effective from")
    except limits.BadValue as exc:
        raise ValidationError(record, str(exc)) from None
    if source == target:
        raise ValidationError(record, "converts a currency into itself; a rate needs two different currencies")
    same_day = session.scalar(select(ExchangeRate.rate).where(
        ExchangeRate.from_currency == source, ExchangeRate.to_currency == target, ExchangeRate.effective_from == effective_from))
    if same_day is not None:
        raise ValidationError(record, f"a rate effective {effective_from} exists already ({Decimal(same_day).normalize():f}); "
                              "rates are never edited: add one with a later effective date")
    conflict = rate_conflict(session, source, target, rate, effective_from)
    if conflict is not None:
        raise ValidationError(record, conflict.reason(source, target, rate, effective_from), "SPEC S1, M3")
    return source, target, rate, effective_from


def add_rate(session: Session, source: str, target: str, rate: Any, effective_from: Any) -> ExchangeRate:
    """Add an exchange rate in the caller's transaction (module docstring for the rules)."""
    source, target, rate, effective_from = check_rate(session, source, target, rate, effective_from)
    row = ExchangeRate(from_currency=source, to_currency=target, rate=rate, effective_from=effective_from)
    session.add(row)
    session.flush()
    return row


def list_rates(session: Session, source: str | None = None, target: str | None = None, on: date | None = None) -> list[dict[str, Any]]:
    """Rates by pair and date; with ``on``, the one in force on that date per pair."""
    r = ExchangeRate
    q = select(r).order_by(r.from_currency, r.to_currency, r.effective_from)
    if source:
        q = q.where(r.from_currency == source.upper())
    if target:
        q = q.where(r.to_currency == target.upper())
    rows = list(session.scalars(q))
    nxt: dict[int, date | None] = {}
    for a, b in zip(rows, [*rows[1:], None]):
        nxt[a.id] = b.effective_from if b is not None and (b.from_currency, b.to_currency) == (a.from_currency, a.to_currency) else None
    if on is not None:  # the rate in force on that day, per pair
        rows = [x for x in rows if x.effective_from <= on and (nxt[x.id] is None or nxt[x.id] > on)]  # type: ignore[operator]
    return [{"from": x.from_currency, "to": x.to_currency, "rate": x.rate, "effective_from": x.effective_from,
             "effective_to": end - timedelta(days=1) if (end := nxt[x.id]) else None} for x in rows]
