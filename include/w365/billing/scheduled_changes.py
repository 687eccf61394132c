"""Scheduled License Change Logs: the Scheduled Update merge and the operators' verbs (SPEC C6-C12).

``merge_due_slcls(as_of)`` takes SLCLs due at ``as_of`` (scheduled for then or earlier, Pending or
Awaiting Merge), re-checks each (SPEC C10), and applies it: the subscription is updated, one LCL
is written (``slcl_id`` is unique on the LCL, so the database refuses a second application) and
the SLCL is archived. A check that fails marks that SLCL Merge Failed with the reason; the rest
of the batch goes on.

Work is taken in batches, one transaction each, that lock their SLCLs' contracts first: the same
per-contract lock, in the same order, as the invoice runs, so a merge and an invoice run that
overlap act as if one ran after the other, and any number of workers can merge at once without
applying one SLCL twice (SQLite serialises writers). A transient database error (deadlock,
serialization failure, lost connection) redoes the batch; a batch the database refuses
otherwise (a constraint) is redone one SLCL per transaction, so one bad row never holds back the
others.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, exists, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from w365 import hooks
from w365.billing.changes import ChangeRequest, validate_change
from w365.billing.subscriptions import (
    get_tenant,
    label,
    lcl_values,
    state_values,
    unit_months,
)
from w365.core import tenant_time
from w365.core.ledger import State, scheduled_state, state_of
from w365.errors import NotFound, ValidationError, W365Error
from w365.store.bulk import insert_rows, update_rows
from w365.store.models import (
    BillingContract,
    ChangeSource,
    InvoiceLineSLCL,
    LicenseChangeLog,
    Provider,
    ScheduledLicenseChangeLog,
    SLCLAction,
    SLCLStatus,
    Subscription,
)
from w365.store.retry import run_retrying, transient_reason
from w365.store.session import get_engine, is_postgres, lock_contracts, session_scope

log = logging.getLogger(__name__)

DUE_STATUSES = (SLCLStatus.PENDING, SLCLStatus.AWAITING_MERGE)
BATCH = 2000


@dataclass
class MergeReport:
    as_of: str
    merged: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["failed"] = {str(k): v for k, v in self.failed.items()}
        return d

    def summary(self) -> str:
        return f"scheduled update as of {self.as_of}: {len(self.merged)} merged, {len(self.failed)} merge failed"


def target_state(slcl: ScheduledLicenseChangeLog, current: State) -> State:
    """What the merge writes: the scheduled change laid over the current values (core.ledger)."""
    return scheduled_state(current, SLCLAction(slcl.action).value, slcl.quantity, slcl.selling_price, slcl.cost_price, slcl.sales_unit)


def _request_of(slcl: ScheduledLicenseChangeLog) -> ChangeRequest:
    action = {SLCLAction.ACTIVATE: "activate", SLCLAction.DEACTIVATE: "deactivate", SLCLAction.SUSPEND: "suspend"}.get(slcl.action, "change")
    return ChangeRequest(action=action, apply_refund=slcl.apply_refund, currency=slcl.currency, price_list=slcl.price_list)


def check_merge(session: Session, slcl: Any, sub: Any, contract: Any, as_of: datetime) -> State:
    """SPEC C10: re-check what the seeds' troubleshooting list names; returns the new state."""
    if slcl.scheduled_for > as_of:
        raise ValidationError(f"scheduled change #{slcl.id}", f"is not due until {slcl.scheduled_for.isoformat()}", "SPEC C10")
    current = state_of(sub)
    if slcl.action == SLCLAction.CHANGE and current.status != "active":
        raise ValidationError(label(sub), f"is {current.status}, not active", "SPEC C10")
    if slcl.action == SLCLAction.ACTIVATE and current.status == "active":
        raise ValidationError(label(sub), "is already active", "SPEC C10")
    if slcl.action == SLCLAction.DEACTIVATE and current.status == "deactivated":
        raise ValidationError(label(sub), "is already deactivated", "SPEC C10")
    if slcl.action == SLCLAction.SUSPEND and current.status != "active":
        raise ValidationError(label(sub), f"is {current.status}: only an active subscription can be suspended", "SPEC C10")
    if slcl.sales_unit is not None:
        unit_months(session, slcl.sales_unit)
    after = target_state(slcl, current)
    validate_change(session, sub, contract, _request_of(slcl), current, after, slcl.effective_date)
    return after


def _due_ids(session: Session, as_of: datetime, limit: int, exclude: set[int]) -> list[int]:
    """The next batch of due SLCLs (not locked yet: their contracts are locked first)."""
    q = (
        select(ScheduledLicenseChangeLog.id)
        .where(ScheduledLicenseChangeLog.status.in_(DUE_STATUSES), ScheduledLicenseChangeLog.scheduled_for <= as_of)
        .order_by(ScheduledLicenseChangeLog.scheduled_for, ScheduledLicenseChangeLog.id)
        .limit(limit)
    )
    if exclude:  # rows this run already tried and could not settle (rare: a refused batch)
        q = q.where(ScheduledLicenseChangeLog.id.not_in(exclude))
    return list(session.scalars(q))


def _lock_due(session: Session, ids: list[int], as_of: datetime) -> list[int]:
    """Lock the contracts of ``ids`` (the per-contract lock the invoice runs take, in the same
    order), then the SLCLs themselves; returns those still due once the locks are held (another
    worker, or a cancellation, may have settled some while this one waited).

    Contracts another transaction holds are skipped (another merge worker, an invoice run):
    their SLCLs come up again in the next batch. Only when every one is held does this wait."""
    sl, sb = ScheduledLicenseChangeLog, Subscription
    rows = session.execute(select(sl.id, sb.contract_id).join(sb, sb.id == sl.subscription_id).where(sl.id.in_(ids))).all()
    contracts = {c for _, c in rows}
    got = set(lock_contracts(session, contracts, skip_locked=True)) or set(lock_contracts(session, contracts))
    mine = [i for i, c in rows if c in got]
    q = select(sl.id).where(sl.id.in_(mine), sl.status.in_(DUE_STATUSES), sl.scheduled_for <= as_of).order_by(sl.id)
    return list(session.scalars(q.with_for_update(key_share=True) if is_postgres(session) else q))


def _merge_rows(session: Session, ids: list[int], as_of: datetime, now: datetime) -> tuple[list[int], dict[int, str]]:
    """Merge the given SLCLs in the caller's transaction (their contracts already locked);
    returns (merged, failed with reason).

    Rows are read as plain rows (no ORM instances: the checks only read attributes) and written
    set-based: one COPY for the LCLs, one UPDATE for the subscriptions, one for the SLCLs.
    """
    sl, sb, bc = ScheduledLicenseChangeLog.__table__, Subscription.__table__, BillingContract.__table__
    slcls = session.execute(select(*sl.c).where(sl.c.id.in_(ids)).order_by(sl.c.id)).all()
    sq = select(*sb.c).where(sb.c.id.in_(sorted({x.subscription_id for x in slcls}))).order_by(sb.c.id)
    # FOR NO KEY UPDATE: an invoice line being written for the subscription (a foreign key's
    # KEY SHARE lock) neither blocks this nor is blocked by it.
    subs = {x.id: x for x in session.execute(sq.with_for_update(key_share=True) if is_postgres(session) else sq)}
    contracts = {c.id: c for c in session.execute(select(*bc.c).where(bc.c.id.in_({x.contract_id for x in subs.values()})))}
    providers = {p.id: p.kind for p in session.scalars(select(Provider))}
    lcl_rows: list[dict[str, Any]] = []
    sub_rows: list[dict[str, Any]] = []
    merged: list[int] = []
    already: list[int] = []
    failed: dict[int, str] = {}
    for slcl in slcls:
        if slcl.status not in DUE_STATUSES:
            continue  # merged or cancelled meanwhile
        sub = subs[slcl.subscription_id]
        try:
            after = check_merge(session, slcl, sub, contracts[sub.contract_id], as_of)
        except W365Error as exc:
            failed[slcl.id] = str(exc)
            continue
        before = state_of(sub)
        if after == before:
            already.append(slcl.id)
            continue
        lcl_rows.append(lcl_values(
            sub.id, before, after, day=slcl.effective_date, effective_at=slcl.scheduled_for, source=ChangeSource.SLCL,
            provider_kind=providers[sub.provider_id], now=now, slcl_id=slcl.id,
            apply_refund=slcl.apply_refund if slcl.action == SLCLAction.DEACTIVATE else True, created_by=slcl.requested_by,
            bill_from=slcl.bill_from,  # what was billed ahead (C11, C12); On Renewal bills from D
        ))
        sub_rows.append({"id": sub.id, **state_values(after, now)})
        merged.append(slcl.id)
    insert_rows(session, LicenseChangeLog, lcl_rows)
    update_rows(session, Subscription, sub_rows)
    attempts = {x.id: x.attempts + 1 for x in slcls}
    outcome: list[tuple[int, SLCLStatus, str | None, datetime | None]] = [(i, SLCLStatus.ARCHIVED, None, now) for i in merged]
    outcome += [(i, SLCLStatus.ARCHIVED, "already applied: the subscription had these values", now) for i in already]
    outcome += [(i, SLCLStatus.MERGE_FAILED, reason, None) for i, reason in failed.items()]
    update_rows(session, ScheduledLicenseChangeLog, [
        {"id": i, "status": st, "reason": reason, "merged_at": at, "updated_at": now, "attempts": attempts[i]} for i, st, reason, at in outcome
    ])
    hooks.at("merge.before_commit")
    return merged + already, failed


def _settle(report: MergeReport, merged: list[int], failed: dict[int, str]) -> None:
    """Count a committed batch."""
    for slcl_id, reason in failed.items():
        log.warning("scheduled change #%d: merge failed: %s", slcl_id, reason)
    report.merged += merged
    report.failed.update(failed)


def merge_due_slcls(as_of: datetime, *, engine: Engine | None = None, now: datetime | None = None, batch: int = BATCH) -> MergeReport:
    """The Scheduled Update job (SPEC C6): merge every SLCL due at ``as_of``. Idempotent.

    Each batch locks its SLCLs' contracts first (in contract order, as the invoice runs do), so
    a merge and an invoice run never interleave on one contract: whichever comes second sees
    the other's result. A transient database error redoes the batch (w365.store.retry) and is
    never a merge failure; a batch the database refuses otherwise (a constraint) is redone one
    SLCL at a time, so one bad row never holds back the others.
    """
    tenant_time.require_aware(as_of, "as_of")
    now = now or as_of
    engine = engine or get_engine()
    report = MergeReport(as_of=as_of.isoformat())
    started = time.monotonic()
    stuck: set[int] = set()

    def one_batch() -> tuple[list[int], list[int], dict[int, str]]:
        with session_scope(engine) as s:
            picked = _due_ids(s, as_of, batch, stuck)
            if not picked:
                return [], [], {}
            merged, failed = _merge_rows(s, _lock_due(s, picked, as_of), as_of, now)
        return picked, merged, failed

    while True:
        picked: list[int] = []
        try:
            picked, merged, failed = run_retrying(one_batch, f"scheduled update: a batch of up to {batch}")
            if not picked:
                break
            _settle(report, merged, failed)
        except DBAPIError as exc:
            if transient_reason(exc) is not None:
                raise  # still failing after the retries: the task fails, every SLCL stays due
            with session_scope(engine) as s:
                picked = _due_ids(s, as_of, batch, stuck)
            log.warning("scheduled update: a batch of %d was refused by the database (%s); merging one at a time",
                        len(picked), str(exc.orig).splitlines()[0] if exc.orig else exc)
            for one in picked:
                _merge_one_isolated(engine, one, as_of, now, report)
            stuck.update(picked)  # settled one by one above; never picked up again by this run
        log.info("scheduled update: %d merged, %d failed so far", len(report.merged), len(report.failed))
    report.seconds = round(time.monotonic() - started, 3)
    log.info(report.summary())
    return report


def _merge_one_isolated(engine: Engine, slcl_id: int, as_of: datetime, now: datetime, report: MergeReport) -> None:
    """Merge one SLCL in its own transaction. Only a refusal by the database that is not
    transient makes it Merge Failed; a transient error is retried, then raised."""

    def once() -> tuple[list[int], dict[int, str]]:
        with session_scope(engine) as s:
            ids = _lock_due(s, [slcl_id], as_of)
            return _merge_rows(s, ids, as_of, now) if ids else ([], {})

    try:
        _settle(report, *run_retrying(once, f"scheduled change #{slcl_id}"))
    except DBAPIError as exc:
        if transient_reason(exc) is not None:
            raise
        reason = f"refused by the database: {str(exc.orig).splitlines()[0] if exc.orig else exc}"
        with session_scope(engine) as s:
            if _lock_due(s, [slcl_id], as_of):
                s.execute(update(ScheduledLicenseChangeLog).where(ScheduledLicenseChangeLog.id == slcl_id)
                          .values(status=SLCLStatus.MERGE_FAILED, reason=reason, updated_at=now))
        _settle(report, [], {slcl_id: reason})


# --------------------------------------------------------------------------------------------
# Operators' verbs


def list_slcls(session: Session, statuses: list[SLCLStatus] | None = None) -> list[dict[str, Any]]:
    q = (
        select(ScheduledLicenseChangeLog, Subscription.name, BillingContract.number)
        .join(Subscription, Subscription.id == ScheduledLicenseChangeLog.subscription_id)
        .join(BillingContract, BillingContract.id == Subscription.contract_id)
        .order_by(ScheduledLicenseChangeLog.scheduled_for, ScheduledLicenseChangeLog.id)
    )
    if statuses:
        q = q.where(ScheduledLicenseChangeLog.status.in_(statuses))
    tz = get_tenant(session).time_zone
    out = []
    for slcl, sub_name, number in session.execute(q):
        out.append({
            "id": slcl.id, "subscription_id": slcl.subscription_id, "subscription": sub_name, "contract": number,
            "status": slcl.status.value, "action": slcl.action.value, "quantity": slcl.quantity,
            "selling_price": slcl.selling_price, "cost_price": slcl.cost_price, "sales_unit": slcl.sales_unit,
            "effective_date": slcl.effective_date, "provision_on": slcl.provision_on,
            # SPEC S7: "Scheduled For" shown in tenant time, with its zone.
            "scheduled_for": slcl.scheduled_for.astimezone(tenant_time.zone(tz)).isoformat(),
            "reason": slcl.reason, "attempts": slcl.attempts,
        })
    return out


def _locked(session: Session, slcl_id: int) -> ScheduledLicenseChangeLog:
    """One SLCL, with its contract's lock held (the order every billing writer follows)."""
    contract_id = session.scalar(
        select(Subscription.contract_id).join(ScheduledLicenseChangeLog, ScheduledLicenseChangeLog.subscription_id == Subscription.id)
        .where(ScheduledLicenseChangeLog.id == slcl_id)
    )
    if contract_id is None:
        raise NotFound(f"scheduled change #{slcl_id} does not exist")
    lock_contracts(session, [contract_id])
    slcl = session.get(ScheduledLicenseChangeLog, slcl_id, with_for_update={"key_share": True} if is_postgres(session) else None,
                       populate_existing=True)
    assert slcl is not None
    return slcl


def retry_slcl(engine: Engine | None, slcl_id: int, *, now: datetime) -> dict[str, Any]:
    """Merge Failed -> retried now if due (else back to Pending for its time)."""
    engine = engine or get_engine()
    with session_scope(engine) as s:
        slcl = _locked(s, slcl_id)
        if slcl.status != SLCLStatus.MERGE_FAILED:
            raise W365Error(f"scheduled change #{slcl_id} is {slcl.status.value}; only Merge Failed ones are retried")
        billed = bool(s.scalar(select(exists().where(InvoiceLineSLCL.slcl_id == slcl_id))))
        slcl.status = SLCLStatus.AWAITING_MERGE if billed else SLCLStatus.PENDING
        slcl.reason = None
        slcl.updated_at = now
        due = slcl.scheduled_for <= now
    if not due:
        return {"id": slcl_id, "status": "pending", "message": "back in the queue for its scheduled time"}
    report = MergeReport(as_of=now.isoformat())
    _merge_one_isolated(engine, slcl_id, now, now, report)
    if slcl_id in report.failed:
        return {"id": slcl_id, "status": "merge_failed", "message": report.failed[slcl_id]}
    return {"id": slcl_id, "status": "archived", "message": "merged"}


def cancel_slcl(session: Session, slcl_id: int, *, now: datetime) -> dict[str, Any]:
    slcl = _locked(session, slcl_id)
    if slcl.status not in (SLCLStatus.PENDING, SLCLStatus.AWAITING_MERGE, SLCLStatus.MERGE_FAILED):
        raise W365Error(f"scheduled change #{slcl_id} is {slcl.status.value} and cannot be cancelled")
    was = slcl.status
    slcl.status = SLCLStatus.CANCELLED
    slcl.updated_at = now
    note = ""
    if was == SLCLStatus.AWAITING_MERGE:
        note = "; it was already invoiced, so the next change-log or full-cycle invoice credits it back"
    return {"id": slcl_id, "status": "cancelled", "message": f"cancelled (was {was.value}){note}"}
