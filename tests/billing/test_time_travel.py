"""Time travel (issue 4): a demo tenant run day by day for 400 days.

Every day: ops change subscriptions (now, on a date, cancellations, suspensions), the Scheduled
Update merges at 00:05 and 23:30, the full-cycle jobs run (annual with advance 0, then 30 days
ahead from day 200), the weekly change-log jobs run on Mondays (monthly's stays off, as the
catalogue says). At checkpoints and at the end the books are proven with the independent
audit (``w365.operations.audit``, issue 11): each subscription billed exactly once for every day of every
billed period, at the quantity and price its LCLs (and the scheduled changes billed ahead, SPEC
C12) say, every line, total, number and link as the rules say. At checkpoints no error (only
changes a coming run is due to bill); at the end only what next-cycle contracts' next full-cycle
invoice is due to bill (B4).
"""

import random
from datetime import date, time, timedelta
from decimal import Decimal

from sqlalchemy import select

from w365.store.models import QRB, ChangeEffective, Subscription, SubscriptionStatus
from w365.interfaces.demo import DemoSpec, load_demo
from w365.errors import ValidationError
from w365.billing.invoicing.dispatcher import generate_change_log_invoices, generate_full_cycle_invoices
from w365.billing.scheduled_changes import merge_due_slcls
from w365.billing.changes import ChangeRequest, change_subscription
from w365.core.tenant_time import local_instant
from w365.operations.audit import audit_billing
from w365.operations.ledger_check import verify_ledger

TZ = "America/Los_Angeles"
DAYS = 400
START = date(2025, 1, 6)


def _random_change(session, rng, day):
    subs = session.scalars(
        select(Subscription).where(Subscription.status.in_((SubscriptionStatus.ACTIVE, SubscriptionStatus.SUSPENDED))).order_by(Subscription.id)
    ).all()
    subs = [s for s in subs if s.product.kind.value == "license"]
    if not subs:
        return
    sub = rng.choice(subs)
    now = local_instant(day, time(rng.randrange(1, 22), 15), TZ)
    roll = rng.random()
    if sub.status == SubscriptionStatus.SUSPENDED:
        req = ChangeRequest(action="reactivate")
    elif roll < 0.35:
        req = ChangeRequest(quantity=sub.quantity + rng.randrange(1, 6))
    elif roll < 0.55:
        req = ChangeRequest(quantity=max(0, sub.quantity - rng.randrange(1, 4)))
    elif roll < 0.68:
        req = ChangeRequest(selling_price=(sub.selling_price * Decimal("1.1")).quantize(Decimal("0.01")))
    elif roll < 0.88:
        req = ChangeRequest(quantity=sub.quantity + rng.choice((-2, 1, 3)), effective=ChangeEffective.CUSTOM,
                            effective_date=day + timedelta(days=rng.randrange(1, 45)))
    elif roll < 0.95:
        req = ChangeRequest(action="deactivate", apply_refund=sub.contract.refunds_allowed and rng.random() < 0.5,
                            effective=ChangeEffective.CUSTOM, effective_date=day + timedelta(days=rng.randrange(0, 20)))
    else:
        req = ChangeRequest(action="suspend")
    try:
        change_subscription(session, sub.id, req, now=now)
        session.commit()
    except ValidationError:
        session.rollback()  # refused by a rule (window, pending SLCL, ...): nothing written


def _assert_books(session, settled: bool):
    session.commit()
    report = audit_billing(session)
    assert report.days_checked > 0
    assert report.errors == [], [str(d) for d in report.errors[:5]]
    if settled:
        unsettled = [d for d in report.differences if not (d.settled_by or "").startswith("next full-cycle invoice on ")]
        assert unsettled == [], [str(d) for d in unsettled[:5]]
    session.commit()  # end the read: the jobs write next
    return report.days_checked, report.differences


def test_400_days_of_billing_bill_every_active_day_exactly_once(store, session):
    load_demo(session, DemoSpec(customers=5, contracts_per_customer=2, subscriptions_per_contract=3, as_of=START, fresh=True,
                                timezone=TZ, slcl_percent=30, seed=7))
    # Some subscriptions may reduce any time; the rest keep the 7-day window (SPEC C2).
    for sub in session.scalars(select(Subscription)).all()[::2]:
        sub.qrb = QRB.ALLOWED
    session.commit()
    rng = random.Random(2025)
    invoices = 0
    for n in range(DAYS):
        day = START + timedelta(days=n)
        merge_due_slcls(local_instant(day, time(0, 5), TZ), engine=store.engine)
        for group in ("monthly", "quarterly", "annual"):
            advance = 30 if group == "annual" and n >= 200 else 0
            invoices += len(generate_full_cycle_invoices(group, day, advance, engine=store.engine).invoices)
        for _ in range(2):
            if rng.random() < 0.6:
                _random_change(session, rng, day)
        if day.weekday() == 0:
            for group in ("quarterly", "annual"):
                invoices += len(generate_change_log_invoices(group, day, engine=store.engine).invoices)
        merge_due_slcls(local_instant(day, time(23, 30), TZ), engine=store.engine)
        if n in (100, 250):
            _assert_books(session, settled=False)
    end = START + timedelta(days=DAYS)
    for group in ("monthly", "quarterly", "annual"):
        invoices += len(generate_change_log_invoices(group, end, engine=store.engine).invoices)
    days, diffs = _assert_books(session, settled=True)
    assert invoices > 100 and days > 5000
    assert verify_ledger(session)[1] == []
