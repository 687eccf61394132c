"""A customer's bill does not depend on when a change was typed (issue 11; SPEC M2, B4, C12).

The property, first on the pure generator with random timelines (hypothesis), then end to end
on the store with random changes entered ahead, on the day, or after their period was billed:
once the runs have settled, every period comes to the same total, to the minor unit, as when
every change was known before the period was first billed.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from sqlalchemy import select

import factories as f
from w365.core.calendar import BillingIntervalDetail
from w365.store.models import QRB, BillingContract, ChangeBilling, ChangeEffective, Invoice, InvoiceLine
from w365.billing.invoicing.dispatcher import generate_change_log_invoices, generate_full_cycle_invoices
from w365.billing.invoicing.generator import ContractTerms, Pricer, SubscriptionInput, propose_lines
from w365.billing.invoicing.planner import as_billed
from w365.core.ledger import Change, State
from w365.billing.scheduled_changes import merge_due_slcls
from w365.billing.changes import ChangeRequest, change_subscription
from w365.core.tenant_time import local_instant

UNITS = {"MONTHLY": 1, "QUARTERLY": 3, "ANNUAL": 12}
PRICES = [Decimal("10.00"), Decimal("13.37"), Decimal("7.77"), Decimal("99.99")]
ANCHOR = date(2026, 1, 31)  # month-end anchor: periods of 28, 31, 30 days...


def _state(qty: int, price: Decimal, status: str) -> State:
    return State(qty, price, Decimal("1.00"), "MONTHLY", status)


change_strategy = hs.tuples(
    hs.integers(0, 180),  # bill-from day, as days after the anchor
    hs.integers(0, 25),  # new quantity
    hs.sampled_from(PRICES),
    hs.sampled_from(["active", "active", "active", "suspended", "deactivated"]),  # refunded cancellations only
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    months=hs.sampled_from([1, 3]),
    currency=hs.sampled_from(["USD", "JPY", "KWD"]),
    start_qty=hs.integers(1, 20),
    raw=hs.lists(change_strategy, max_size=7),
    entries=hs.lists(hs.integers(0, 6), min_size=7, max_size=7),
)
def test_m2_period_totals_equal_changes_known_ahead_pure(months, currency, start_qty, raw, entries):
    """Issue 11 property (pure): changes entered at random billing runs (ahead, between runs,
    after their period was billed) end, after a final reconciliation, with every period's total
    equal to the one billed when all changes were known at first billing."""
    cal = BillingIntervalDetail(ANCHOR, months)
    periods = [cal.period(i) for i in range(6 // months)]
    terms = ContractTerms(1, "BC-1", currency, ANCHOR, months)
    pricer = Pricer(terms, UNITS, {})
    first = _state(start_qty, PRICES[0], "active")
    changes = [Change(1, ANCHOR, _state(0, PRICES[0], "pending"), first, order=1)]
    prev = first
    for i, (offset, qty, price, status) in enumerate(raw):
        after = _state(qty, price, status)
        changes.append(Change(i + 2, ANCHOR + timedelta(days=offset), prev, after, order=i + 2))
        prev = after
    # Write order is entry order: a change is entered no earlier than the ones before it.
    entered = [0] + sorted(entries[: len(raw)])

    def sub(known_at: int) -> SubscriptionInput:
        return SubscriptionInput(7, "Basic", "license", currency, tuple(c for c, e in zip(changes, entered) if e <= known_at))

    def bill(known_at) -> list:  # type: ignore[no-untyped-def]
        """A full-cycle run at each period start (reconciling the periods before it, as for a
        next-cycle contract), then a change-log run once every change is in."""
        lines: list = []
        for run in range(len(periods)):
            lines += propose_lines(terms, [sub(known_at(run))], as_billed(lines), periods[: run + 1], pricer)
        lines += propose_lines(terms, [sub(99)], as_billed(lines), periods, pricer)
        assert propose_lines(terms, [sub(99)], as_billed(lines), periods, pricer) == []  # settled: a rerun bills nothing
        return lines

    def totals(lines) -> dict[date, Decimal]:  # type: ignore[no-untyped-def]
        out: dict[date, Decimal] = defaultdict(Decimal)
        for l in lines:
            out[l.period.start] += l.amount
        return {k: v for k, v in out.items() if v}

    late = bill(lambda run: run)
    ahead = bill(lambda run: 99)
    assert totals(late) == totals(ahead)
    # Each period now comes to its ideal lines: what one first billing with everything known says.
    assert totals(ahead) == totals(propose_lines(terms, [sub(99)], [], periods, pricer))


# --------------------------------------------------------------------------------------------
# End to end on the store

START = date(2026, 1, 1)
DAYS = 100
UTC = timezone.utc


def _build(session, seed: int):  # type: ignore[no-untyped-def]
    """Three customers (monthly USD next-cycle, monthly JPY immediate, annual KWD billed 30 days
    ahead, immediate), two subscriptions each, and one change per subscription: (subscription,
    day, quantity or price)."""
    rng = random.Random(seed)
    shapes = [("MONTHLY", "USD", ChangeBilling.NEXT_CYCLE), ("MONTHLY", "JPY", ChangeBilling.IMMEDIATE),
              ("ANNUAL", "KWD", ChangeBilling.IMMEDIATE)]
    plan = []
    for n, (freq, cur, billing) in enumerate(shapes):
        c = f.contract(session, f.customer(session, f"Customer {n}"), start=START, frequency=freq, currency=cur,
                       number=f"BC-{n}", change_billing=billing, end=date(2026, 12, 31))
        for k in range(2):
            s = f.subscription(session, c, name=f"S{n}{k}", quantity=rng.randrange(3, 12), price=str(rng.choice(PRICES)),
                               qrb=QRB.ALLOWED, now=datetime(2025, 12, 1, tzinfo=UTC))
            day = START + timedelta(days=rng.randrange(2, 70))
            if rng.random() < 0.7:
                plan.append((s.id, day, ChangeRequest(quantity=rng.randrange(0, 15))))
            else:
                plan.append((s.id, day, ChangeRequest(selling_price=rng.choice(PRICES) + Decimal("0.01"))))
    session.commit()
    return plan


def _operate(store, session, plan, ahead: set[int]) -> tuple[dict[tuple[str, date], Decimal], int]:  # type: ignore[no-untyped-def]
    """Run the tenant day by day. Changes of subscriptions in ``ahead`` are scheduled before
    anything is billed; the others are typed on their day (after their period was billed: the
    annual contract is billed 30 days ahead, the monthly ones on the 1st). Returns the total
    billed per (contract, billing period), and how many credit-and-re-bill lines there were."""
    for sid, day, req in plan:
        if sid in ahead:
            req = ChangeRequest(quantity=req.quantity, selling_price=req.selling_price, effective=ChangeEffective.CUSTOM, effective_date=day)
            change_subscription(session, sid, req, now=datetime(2025, 12, 15, tzinfo=UTC))
    session.commit()
    for n in range(DAYS):
        day = START + timedelta(days=n)
        merge_due_slcls(local_instant(day, time(0, 5), "UTC"), engine=store.engine)
        generate_full_cycle_invoices("monthly", day, engine=store.engine)
        generate_full_cycle_invoices("annual", day, advance_days=30, engine=store.engine)
        for sid, when, req in plan:
            if sid not in ahead and when == day:
                change_subscription(session, sid, req, now=local_instant(day, time(9, 0), "UTC"))
                session.commit()
        merge_due_slcls(local_instant(day, time(23, 30), "UTC"), engine=store.engine)
        if day.weekday() == 0:
            generate_change_log_invoices("monthly", day, engine=store.engine)
            generate_change_log_invoices("annual", day, engine=store.engine)
    f.fresh(session)
    out: dict[tuple[str, date], Decimal] = defaultdict(Decimal)
    adjustments = 0
    for number, period, amount, kind in session.execute(
        select(BillingContract.number, InvoiceLine.billing_period_from, InvoiceLine.amount, InvoiceLine.kind)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id).join(BillingContract, BillingContract.id == Invoice.contract_id)
    ):
        out[(number, period)] += amount
        adjustments += kind.value == "adjustment"
    session.commit()
    return dict(out), adjustments


def test_m2_period_totals_do_not_depend_on_when_changes_were_entered(store, session):
    """Issue 11 property (end to end, SPEC M2, B4, C12, S6): the same changes, each entered
    ahead (a scheduled change billed with its period, C12) or on its day after its period was
    billed (credited and re-billed), give every contract the same total for every period."""
    from conftest import reset_store

    for seed in (11, 12):
        plan = _build(session, seed)
        everything_ahead, _ = _operate(store, session, plan, ahead={sid for sid, _, _ in plan})
        rng = random.Random(seed)
        mixed = {sid for sid, _, _ in plan if rng.random() < 0.5}
        session.close()
        reset_store(store)
        plan = _build(session, seed)
        totals, corrections = _operate(store, session, plan, ahead=mixed)
        assert corrections > 0  # some changes really came after their period was billed
        assert totals == everything_ahead, f"seed {seed}"
        session.close()
        reset_store(store)
