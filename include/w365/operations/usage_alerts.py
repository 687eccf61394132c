"""Azure Threshold Violation Alert: usage against each subscription's monthly threshold.

Threshold alerts: month-to-date billable usage (cost x (1 + markup %), final usage where a day
has it, else interim) of each usage subscription with a threshold, at 80 % and 100 %, once each
per subscription and month.

Each alert is sent once (``w365.notify``).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from w365.store.models import (
    Customer,
    Product,
    ProductKind,
    Subscription,
    UsageKind,
)
from w365.store.session import get_engine, session_scope
from w365.store.job_report import record_exceptions
from w365.core.fx import NoRate, rate_on
from w365.billing.invoicing.loader import load_rates
from w365.billing.usage import effective_sums, markup_factor, month_start, usage_sums
from w365.core.money import round_half_up, round_money

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

JOB_THRESHOLD = "azure_threshold_violation_alert"
ALERT_KIND = "usage_threshold"
LEVELS = (80, 100)


# Threshold alerts


def threshold_alerts(session: Session, as_of: date) -> tuple[list[Any], dict[str, str], dict[str, Any]]:
    """Alerts due for ``as_of``: month-to-date through the day before (the last complete day)."""
    from w365.notify import Alert, recipients

    last = as_of - timedelta(days=1)
    first = month_start(last)
    subs = session.execute(
        select(Subscription.id, Subscription.name, Subscription.currency, Subscription.usage_threshold, Subscription.markup_pct, Customer.name)
        .join(Product, Product.id == Subscription.product_id)
        .join(Customer, Customer.id == Subscription.customer_id)
        .where(Product.kind == ProductKind.USAGE, Subscription.usage_threshold.is_not(None))
        .order_by(Subscription.id)
    ).all()
    subs = [r for r in subs if r[3] is not None and r[3] > 0]
    sums = effective_sums(usage_sums(session, first, last, [UsageKind.INTERIM.value, UsageKind.FINAL.value], [r[0] for r in subs]))
    rates = load_rates(session)
    to = recipients()
    alerts: list[Alert] = []
    problems: dict[str, str] = {}
    checked: dict[str, Any] = {}
    for sid, name, currency, threshold, markup, customer in subs:
        if threshold is None:  # filtered out above; says so to the type checker
            continue
        exact = Fraction(0)
        try:
            for (tsid, cur), cost in sums.items():
                if tsid != sid:
                    continue
                found = rate_on(rates, cur, currency, first)
                rate = 1 if found is None else found
                exact += Fraction(cost) * Fraction(rate) * markup_factor(markup or Decimal(0))
        except NoRate as exc:
            problems[f"subscription #{sid}"] = str(exc)
            continue
        amount = round_money(exact, currency)
        pct = round_half_up(exact / Fraction(threshold) * 100, 1)
        checked[str(sid)] = {"amount": format(amount, "f"), "threshold": format(threshold, "f"), "percent": format(pct, "f")}
        for level in LEVELS:
            if exact * 100 >= Fraction(threshold) * level:
                month = first.strftime("%Y-%m")
                alerts.append(Alert(
                    kind=ALERT_KIND, dedup_key=f"{sid}:{month}:{level}", to=to,
                    subject=f"Azure usage of {name} ({customer}) reached {level}% of its threshold for {month}",
                    body=(f"Subscription #{sid} {name} of {customer}: month-to-date usage {first} to {last} is "
                          f"{amount} {currency} ({pct}% of the {threshold} {currency} threshold), including the "
                          f"{format((markup or Decimal(0)).normalize(), 'f')}% markup."),
                    data={"subscription_id": sid, "level": level, "amount": format(amount, "f"), "month": month},
                ))
    return alerts, problems, checked


def alert_thresholds(as_of: date, *, notifier: Any, now: datetime, engine: Engine | None = None) -> dict[str, Any]:
    """The threshold job: compute, then send each due alert once (``w365.notify``)."""
    from w365.notify import deliver

    engine = engine or get_engine()
    with session_scope(engine) as s:
        alerts, problems, checked = threshold_alerts(s, as_of)
    result = deliver(alerts, notifier=notifier, now=now, session_scope=lambda: session_scope(engine))
    with session_scope(engine) as s:
        record_exceptions(s, JOB_THRESHOLD, as_of, "subscription", problems)
        record_exceptions(s, JOB_THRESHOLD, as_of, "alert", result["failed"], cleared=result["sent"])
    return {"job": JOB_THRESHOLD, "as_of": as_of.isoformat(), "subscriptions_checked": len(checked), "over_80": len(
        {a.data["subscription_id"] for a in alerts}), **result, "problems": {**problems, **result["failed"]}}
