"""Auto Renew Billing Contract: renew or expire contracts whose term has ended (SPEC B2, C2).

A contract's ``end_date`` is the last day of its current term (inclusive). On a run date D, every
active contract with ``end_date < D``:

* **auto-renew**: its term is extended to the end of the term that contains D, computed from the
  anchor (``start_date + k x term`` minus one day, ``w365.core.calendar.add_months``, never chained; the
  term is ``term_months``, else the frequency's months), so a run that was missed for months, or
  a backfill, lands on the same date as daily runs. ``last_renewed_on`` becomes the first day of
  the new term (the day after the old end; the start of the term containing D when several terms
  passed), which reopens the quantity-reduction window (SPEC C2: ``reduction_window_start`` uses
  it). A contract whose end date is not on a term boundary renews up to the next boundary.
* **no auto-renew**: it becomes ``expired``; each of its subscriptions not yet deactivated gets a
  deactivation License Change Log effective on the end date (source ``renewal``; a negative
  change at 23:30, so the old quantity is billed through the end date and nothing after, SPEC
  S6), and its open scheduled changes effective after the end date are cancelled with the
  reason. Changes at a manual provider then await provisioning like any other.

Rerun safety: a renewed contract ends on or after D and an expired one is no longer active, so a
second run for D finds nothing to do. One transaction per batch, one savepoint per contract: a
contract that fails is reported (``job_exception``) and the others go on.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from w365.core import tenant_time
from w365.core.calendar import BillingIntervalDetail
from w365.store.models import (
    OPEN_SLCL_STATUSES,
    BillingContract,
    ChangeSource,
    ContractStatus,
    Provider,
    ProviderKind,
    ScheduledLicenseChangeLog,
    SLCLStatus,
    Subscription,
    SubscriptionStatus,
    UnitMapping,
)
from w365.store.retry import run_retrying, transient_reason
from w365.store.session import get_engine, lock_contracts, session_scope
from w365.errors import W365Error
from w365.store.job_report import record_exceptions
from w365.core.ledger import state_of
from w365.billing.change_rules import direction_of
from w365.billing.subscriptions import get_tenant, write_lcl

log = logging.getLogger(__name__)

JOB = "auto_renew_billing_contract"
BATCH = 200


def renewal(start: date, term_months: int, old_end: date, as_of: date) -> tuple[date, date]:
    """(new end date, renewed on) for a term that ended on ``old_end``, renewed on ``as_of``."""
    terms = BillingIntervalDetail(start, term_months)
    first = terms.index_of(old_end + timedelta(days=1))  # the term after the old end
    current = terms.index_of(as_of)
    index = max(first, current)
    new_end = terms.boundary(index + 1) - timedelta(days=1)
    renewed_on = old_end + timedelta(days=1) if index == first else terms.boundary(index)
    return new_end, renewed_on


def _term(session: Session, c: BillingContract) -> int:
    if c.term_months:
        return c.term_months
    unit = session.get(UnitMapping, c.frequency)
    if unit is None or not unit.months:
        raise W365Error(f"contract {c.number}: no term_months and frequency {c.frequency} has no length in the unit mapping")
    return unit.months


def expire(session: Session, c: BillingContract, *, now: datetime, tz: str) -> dict[str, Any]:
    """Expire a contract: deactivation LCLs on its end date, later scheduled changes cancelled."""
    assert c.end_date is not None
    end = c.end_date
    lcls: list[int] = []
    subs = session.scalars(
        select(Subscription).where(Subscription.contract_id == c.id, Subscription.status != SubscriptionStatus.DEACTIVATED).order_by(Subscription.id)
    )
    kinds = {p.id: p.kind for p in session.scalars(select(Provider))}
    for sub in subs:
        before = state_of(sub)
        after = replace(before, status=SubscriptionStatus.DEACTIVATED.value)
        direction = direction_of(before, after)
        lcl = write_lcl(
            session, sub, before, after, day=end, effective_at=tenant_time.scheduled_instant(end, direction, tz),
            source=ChangeSource.RENEWAL, provider_kind=ProviderKind(kinds[sub.provider_id]),
            now=now, created_by=JOB, note=f"contract {c.number} expired on {end} (no auto-renew)",
        )
        lcls.append(lcl.id)
    cancelled = []
    for sl in session.scalars(
        select(ScheduledLicenseChangeLog)
        .join(Subscription, Subscription.id == ScheduledLicenseChangeLog.subscription_id)
        .where(Subscription.contract_id == c.id, ScheduledLicenseChangeLog.status.in_(OPEN_SLCL_STATUSES),
               ScheduledLicenseChangeLog.effective_date > end)
    ):
        sl.status = SLCLStatus.CANCELLED
        sl.reason = f"contract {c.number} expired on {end} (no auto-renew)"
        sl.updated_at = now
        cancelled.append(sl.id)
    c.status = ContractStatus.EXPIRED
    session.flush()
    return {"contract": c.number, "ended": end.isoformat(), "deactivation_lcls": lcls, "cancelled_slcls": cancelled}


def renew_or_expire(session: Session, ids: list[int], as_of: date, *, now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """Process contracts ``ids`` in the caller's transaction: (renewed, expired, problems)."""
    tz = get_tenant(session).time_zone
    q = select(BillingContract).where(
        BillingContract.id.in_(ids), BillingContract.status == ContractStatus.ACTIVE, BillingContract.end_date < as_of
    ).order_by(BillingContract.id)
    lock_contracts(session, ids)
    renewed: list[dict[str, Any]] = []
    expired: list[dict[str, Any]] = []
    problems: dict[str, str] = {}
    for c in session.scalars(q):
        try:
            with session.begin_nested():
                if c.auto_renew:
                    assert c.end_date is not None
                    new_end, renewed_on = renewal(c.start_date, _term(session, c), c.end_date, as_of)
                    renewed.append({"contract": c.number, "old_end": c.end_date.isoformat(), "new_end": new_end.isoformat(),
                                    "renewed_on": renewed_on.isoformat()})
                    c.end_date, c.last_renewed_on = new_end, renewed_on
                    session.flush()
                else:
                    expired.append(expire(session, c, now=now, tz=tz))
        except (W365Error, DBAPIError) as exc:
            if transient_reason(exc) is not None:
                raise  # a deadlock or a lost connection is not the contract's fault: the batch is redone
            reason = str(exc.orig).splitlines()[0] if isinstance(exc, DBAPIError) else str(exc)
            problems[c.number] = reason
            log.warning("%s: contract %s: %s", JOB, c.number, reason)
    return renewed, expired, problems


def auto_renew(as_of: date, *, now: datetime, engine: Engine | None = None) -> dict[str, Any]:
    engine = engine or get_engine()
    with session_scope(engine) as s:
        ids = list(s.scalars(
            select(BillingContract.id)
            .where(BillingContract.status == ContractStatus.ACTIVE, BillingContract.end_date < as_of)
            .order_by(BillingContract.id)
        ))
    report: dict[str, Any] = {"job": JOB, "as_of": as_of.isoformat(), "due": len(ids), "renewed": [], "expired": [], "problems": {}}
    for i in range(0, len(ids), BATCH):
        chunk = ids[i : i + BATCH]
        def batch(chunk: list[int] = chunk) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
            with session_scope(engine) as s:
                renewed, expired, problems = renew_or_expire(s, chunk, as_of, now=now)
                done = [r["contract"] for r in renewed + expired]
                record_exceptions(s, JOB, as_of, "billing_contract", problems, cleared=done)
            return renewed, expired, problems

        renewed, expired, problems = run_retrying(batch, f"{JOB}: batch of {len(chunk)} contract(s) from #{chunk[0]}")
        report["renewed"] += renewed
        report["expired"] += expired
        report["problems"].update(problems)
        log.info("%s: %d/%d contract(s): %d renewed, %d expired so far", JOB, min(i + BATCH, len(ids)), len(ids),
                 len(report["renewed"]), len(report["expired"]))
    return report
