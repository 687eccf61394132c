"""A demo with a past (issue 13): ``w365 demo load --history-days N``.

The demo tenant as it would be after N days of operation. Nothing is written as a result:
the tenant is loaded as of ``today - N`` with fresh contracts (starting in the four weeks after
that day, nothing billed), and then every day up to yesterday is *run*, with that day's logical
instants and never the wall clock:

* the catalogue jobs that bill, renew and measure, at their catalogue times in tenant time
  (``w365.orchestration.catalogue``, with any ``[w365] schedule_<dag_id>`` override): Auto Renew (00:00),
  Scheduled Update (00:05 and 23:30, ``w365.billing.scheduled_changes.merge_due_slcls``), the three full-cycle jobs
  (00:15; Annual with its catalogue ``advance_days``, 30), the change-log jobs on their weekly
  day (Monday 00:30; the Monthly one stays off, as the catalogue says), Update Metrics (06:00:
  a snapshot for every day);
* between 09:00 and 17:00, ops' subscription changes through the change service
  (``w365.billing.changes.change_subscription``): increases, decreases inside the reduction
  window, price changes, changes scheduled for a later date or On Renewal, suspensions now or
  on a date and reactivations, a few cancellations (with a refund where the contract allows).

The jobs are the real ones (the functions the DAG tasks call), so invoices span the months,
change-log invoices credit and re-bill, scheduled changes are billed ahead and merged (archived),
contracts renew or expire, and ``w365 verify billing`` and ``w365 verify ledger`` find nothing.
Usage, provider sync, payments, pricing and incentive jobs are not run (the history has no
provider feed or accounting system).

**The books end settled.** A change whose effect falls in a period already invoiced is billed by
a later run: a change-log invoice (immediate contracts whose change-log job is on) or the next
full-cycle invoice. A change is only entered when that run falls inside the history; otherwise
it is left out (near the end, or for long next-cycle terms), so that the store the history
leaves behind has no difference at all for ``w365 verify billing`` to report: everything entered
has been invoiced. A subscription with an open scheduled change is not changed again (the
change service would refuse a second one, and an immediate change under it could make the
scheduled one fail its merge).

**Speed.** A job with nothing due is skipped: after each run that writes, one query reads the
earliest scheduled change due, the earliest next invoice date per job and the earliest term end;
a Scheduled Update, full-cycle or renewal run is started only when its time has come (running it
would read the same and write nothing). Change-log and metrics jobs run on their days. A day's
changes share one session and one transaction (a savepoint each: one refused by a rule is
dropped alone). Deterministic: one seeded random generator, subscriptions in id order.
"""

from __future__ import annotations

import logging
import random
import time as clock
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Callable

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from w365.billing.change_rules import check_reduction, reduction_window_start
from w365.billing.changes import ChangeRequest, change_subscription
from w365.billing.invoicing.dispatcher import generate_change_log_invoices, generate_full_cycle_invoices
from w365.billing.scheduled_changes import merge_due_slcls
from w365.billing.subscriptions import get_tenant
from w365.core import tenant_time
from w365.core.calendar import frequency_group
from w365.core.money import round_money
from w365.errors import W365Error
from w365.operations.metrics import update_metrics
from w365.operations.renewals import auto_renew
from w365.orchestration import catalogue
from w365.store.models import (
    OPEN_SLCL_STATUSES,
    BillingContract,
    ChangeBilling,
    ChangeEffective,
    ContractStatus,
    Invoice,
    Product,
    ProductKind,
    ScheduledLicenseChangeLog,
    SLCLStatus,
    Subscription,
    SubscriptionStatus,
    UnitMapping,
)
from w365.store.session import get_engine, session_scope

log = logging.getLogger(__name__)

CHANGE_HOURS = (9, 17)  # ops type changes between 09:00 and 17:00 tenant time
CHANGE_RATE = 0.03  # chance per licence subscription and day that ops change it
REQUESTED_BY = "demo history"


class HistoryRefused(W365Error):
    """The store cannot take a history (it has invoices already)."""


# --------------------------------------------------------------------------------------------
# The catalogue's schedule, as times of a tenant day


def cron_times(cron: str, day: date) -> list[time]:
    """The wall-clock times of ``day`` a five-field cron fires at (croniter: cron's own rules)."""
    from croniter import croniter

    it = croniter(cron, datetime.combine(day, time.min) - timedelta(microseconds=1))
    out: list[time] = []
    while (fire := it.get_next(datetime)).date() == day:
        out.append(fire.time())
    return out


@dataclass(frozen=True)
class _Event:
    at: time
    order: int  # catalogue order among jobs at the same time
    kind: str  # renew | merge | full_cycle | change_log | metrics | changes
    group: str | None = None
    advance_days: int = 0


def _schedule() -> list[tuple[str, str | None, int, list[str]]]:
    """(kind, group, advance days, crons) of the jobs the history runs, as the catalogue says."""
    out: list[tuple[str, str | None, int, list[str]]] = []
    for job in catalogue.JOBS:
        kind, crons = job.kind, catalogue.schedule_for(job)
        if kind == catalogue.JobKind.SCHEDULED_UPDATE:
            out.append(("merge", None, 0, crons))
        elif kind == catalogue.JobKind.FULL_CYCLE_INVOICE:
            out.append(("full_cycle", job.frequency, int(job.params.get("advance_days") or 0), crons))
        elif kind == catalogue.JobKind.CHANGE_LOG_INVOICE and not job.paused_at_creation:
            out.append(("change_log", job.frequency, 0, crons))
        elif kind == catalogue.JobKind.AUTO_RENEW_BILLING_CONTRACT:
            out.append(("renew", None, 0, crons))
        elif kind == catalogue.JobKind.UPDATE_METRICS_ON_BILLING_CONTRACT:
            out.append(("metrics", None, 0, crons))
    return out


def day_events(schedule: list[tuple[str, str | None, int, list[str]]], day: date) -> list[_Event]:
    events = [_Event(time(CHANGE_HOURS[0], 0), -1, "changes")]
    for order, (kind, group, advance, crons) in enumerate(schedule):
        for cron in crons:
            events += [_Event(at, order, kind, group, advance) for at in cron_times(cron, day)]
    return sorted(events, key=lambda e: (e.at, e.order))


# --------------------------------------------------------------------------------------------
# What is due (so that jobs with nothing to do are not started)


@dataclass
class _Due:
    slcl: datetime | None = None  # earliest scheduled_for of a pending or awaiting-merge SLCL
    invoice: dict[str, date] = field(default_factory=dict)  # group -> earliest next invoice date (active)
    term_end: date | None = None  # earliest end date of an active contract

    @classmethod
    def read(cls, session: Session, groups: dict[str, str]) -> "_Due":
        sl, c = ScheduledLicenseChangeLog, BillingContract
        due = cls(slcl=session.scalar(select(func.min(sl.scheduled_for)).where(sl.status.in_((SLCLStatus.PENDING, SLCLStatus.AWAITING_MERGE)))))
        for freq, nid in session.execute(select(c.frequency, func.min(c.next_invoice_date)).where(c.status == ContractStatus.ACTIVE)
                                         .group_by(c.frequency)).tuples():
            group = groups.get(freq)
            if group is not None and nid is not None and (group not in due.invoice or nid < due.invoice[group]):
                due.invoice[group] = nid
        due.term_end = session.scalar(select(func.min(c.end_date)).where(c.status == ContractStatus.ACTIVE))
        return due


# --------------------------------------------------------------------------------------------
# Ops' changes


@dataclass
class _Candidate:
    sub: Subscription
    contract: BillingContract
    months: int
    has_open_slcl: bool


class _Ops:
    """Chooses and enters a day's subscription changes, keeping the books settled by the end."""

    def __init__(self, rng: random.Random, last_day: date, schedule: list[tuple[str, str | None, int, list[str]]], tz: str):
        self.rng, self.last_day, self.tz = rng, last_day, tz
        self.advance = {g: a for kind, g, a, _ in schedule if kind == "full_cycle" and g}
        self.change_log_crons = {g: crons for kind, g, _, crons in schedule if kind == "change_log" and g}
        self.entered: dict[str, int] = {}
        self.left_out: dict[str, int] = {}  # would not be invoiced before the end
        self.refused: dict[str, int] = {}  # refused by a rule of the change service

    # -- when a run settles a change ---------------------------------------------------------

    def _next_change_log(self, group: str, after: datetime) -> date | None:
        crons = self.change_log_crons.get(group)
        if not crons:
            return None
        day = tenant_time.local_date(after, self.tz)
        while day <= self.last_day:
            for cron in crons:
                if any(tenant_time.local_instant(day, at, self.tz) > after for at in cron_times(cron, day)):
                    return day
            day += timedelta(days=1)
        return None

    def settled_in_time(self, c: _Candidate, bill_from: date, now: datetime) -> bool:
        """Whether the days this change bills differently are invoiced before the history ends:
        none is invoiced yet (it falls on or after the next invoice date), or a run due to bill
        the difference comes before the end (B4: change-log or next full cycle)."""
        contract = c.contract
        nid = contract.next_invoice_date
        if nid is None or bill_from >= nid:
            return True
        group = frequency_group(c.months)
        renews = contract.auto_renew or contract.end_date is None
        runs: list[date | None] = []
        if renews or nid <= contract.end_date:  # type: ignore[operator]
            runs.append(nid - timedelta(days=self.advance.get(group, 0)))  # the next full cycle carries it
        if contract.change_billing == ChangeBilling.IMMEDIATE:
            runs.append(self._next_change_log(group, now))
        if not renews:  # once expired (00:00 the day after its end), the change-log jobs take it whatever it bills
            assert contract.end_date is not None
            runs.append(self._next_change_log(group, tenant_time.local_instant(contract.end_date + timedelta(days=1), time(0, 0), self.tz)))
        due = [d for d in runs if d is not None]
        return bool(due) and min(due) <= self.last_day

    # -- choosing ----------------------------------------------------------------------------

    def _reduction_ok(self, c: _Candidate, day: date) -> bool:
        s, k = c.sub, c.contract
        start = reduction_window_start(s.provisioned_on, s.start_date, k.start_date, k.term_months, k.last_renewed_on, day)
        try:
            check_reduction("", s.qrb, s.qrw_days, start, day)
        except W365Error:
            return False
        return True

    def _bump(self, c: _Candidate, factor: str) -> Decimal:
        return round_money(c.sub.selling_price * Decimal(factor), c.sub.currency)

    def choose(self, c: _Candidate, day: date) -> tuple[str, ChangeRequest, date] | None:
        """A change for ``c`` on ``day``: (what, request, its bill-from day), or None."""
        rng, sub = self.rng, c.sub
        if sub.status == SubscriptionStatus.SUSPENDED:
            return ("reactivation", ChangeRequest(action="reactivate", requested_by=REQUESTED_BY), day) if rng.random() < 0.5 else None
        roll = rng.random()
        later = day + timedelta(days=rng.randrange(1, 46))
        custom: dict[str, Any] = {"effective": ChangeEffective.CUSTOM, "requested_by": REQUESTED_BY}
        renewal: dict[str, Any] = {"effective": ChangeEffective.ON_RENEWAL, "requested_by": REQUESTED_BY}
        window_open = self._reduction_ok(c, day)
        if window_open and sub.quantity >= 2 and rng.random() < 0.6:
            # Inside the reduction window (a week from provisioning or renewal, SPEC C2):
            # customers who over-bought give seats back while they can.
            return "decrease", ChangeRequest(quantity=sub.quantity - rng.randrange(1, min(4, sub.quantity)), requested_by=REQUESTED_BY), day + timedelta(days=1)
        if roll < 0.30:
            return "increase", ChangeRequest(quantity=sub.quantity + rng.randrange(1, 6), requested_by=REQUESTED_BY), day
        if roll < 0.45:
            if sub.quantity < 2 or not window_open:
                return None
            return "decrease", ChangeRequest(quantity=sub.quantity - rng.randrange(1, min(4, sub.quantity)), requested_by=REQUESTED_BY), day + timedelta(days=1)
        if roll < 0.58:
            return "price change", ChangeRequest(selling_price=self._bump(c, rng.choice(("1.05", "1.03", "0.97"))), requested_by=REQUESTED_BY), day
        if roll < 0.78:
            if rng.random() < 0.7 or sub.quantity < 2 or not self._reduction_ok(c, later):
                return "scheduled increase", ChangeRequest(quantity=sub.quantity + rng.randrange(1, 4), effective_date=later, **custom), later
            return "scheduled decrease", ChangeRequest(quantity=sub.quantity - 1, effective_date=later, **custom), later + timedelta(days=1)
        if roll < 0.84:
            return "scheduled price change", ChangeRequest(selling_price=self._bump(c, "1.04"), effective_date=later, **custom), later
        if roll < 0.88:
            return "scheduled suspension", ChangeRequest(action="suspend", effective_date=later, **custom), later + timedelta(days=1)
        if roll < 0.91:
            return "suspension", ChangeRequest(action="suspend", requested_by=REQUESTED_BY), day + timedelta(days=1)
        if roll < 0.96:
            if c.contract.end_date is None:
                return None
            qty = sub.quantity + rng.choice((-1, 1, 2)) if sub.quantity > 1 else sub.quantity + 1
            return "change on renewal", ChangeRequest(quantity=qty, **renewal), c.contract.end_date + timedelta(days=1)
        # A cancellation is a reduction to 0 (SPEC C2): inside the window now or on a date,
        # otherwise at the renewal (which reopens the window).
        refund = bool(c.contract.refunds_allowed) and rng.random() < 0.5
        if window_open:
            return "cancellation", ChangeRequest(action="deactivate", apply_refund=refund, requested_by=REQUESTED_BY), day + timedelta(days=1)
        if self._reduction_ok(c, later):
            return "scheduled cancellation", ChangeRequest(action="deactivate", apply_refund=refund, effective_date=later, **custom), later + timedelta(days=1)
        if c.contract.end_date is None:
            return None
        return "cancellation on renewal", ChangeRequest(action="deactivate", **renewal), c.contract.end_date + timedelta(days=1)

    # -- entering ----------------------------------------------------------------------------

    def run_day(self, session: Session, day: date) -> int:
        """Enter the day's changes in ``session`` (one transaction; a savepoint each)."""
        s, c, p, u = Subscription, BillingContract, Product, UnitMapping
        rows = session.execute(
            select(s, c, u.months)
            .join(c, c.id == s.contract_id).join(p, p.id == s.product_id).join(u, u.code == c.frequency)
            .where(p.kind == ProductKind.LICENSE, s.status.in_((SubscriptionStatus.ACTIVE, SubscriptionStatus.SUSPENDED)),
                   s.start_date <= day, c.status == ContractStatus.ACTIVE)
            .order_by(s.id)
        ).all()
        if not rows:
            return 0
        busy = set(session.scalars(select(ScheduledLicenseChangeLog.subscription_id).where(ScheduledLicenseChangeLog.status.in_(OPEN_SLCL_STATUSES))))
        picked = [_Candidate(sub, contract, months, sub.id in busy) for sub, contract, months in rows
                  if months and self.rng.random() < CHANGE_RATE]  # a contract's frequency is recurring: months is set
        minutes = sorted(self.rng.randrange(0, (CHANGE_HOURS[1] - CHANGE_HOURS[0]) * 60) for _ in picked)
        done = 0
        for cand, minute in zip(picked, minutes):
            if cand.has_open_slcl:
                continue
            choice = self.choose(cand, day)
            if choice is None:
                continue
            what, req, bill_from = choice
            now = tenant_time.local_instant(day, time(CHANGE_HOURS[0] + minute // 60, minute % 60), self.tz)
            if not self.settled_in_time(cand, bill_from, now):
                self.left_out[what] = self.left_out.get(what, 0) + 1
                continue
            try:
                with session.begin_nested():
                    change_subscription(session, cand.sub.id, req, now=now)
            except W365Error as exc:  # refused by a rule (window, term end...): nothing written
                log.debug("demo history %s: %s refused: %s", day, what, exc)
                self.refused[what] = self.refused.get(what, 0) + 1
                continue
            self.entered[what] = self.entered.get(what, 0) + 1
            done += 1
        return done


# --------------------------------------------------------------------------------------------
# The day loop


def check_store(session: Session) -> None:
    """A history starts in the past: the store must not hold invoices yet (issued later than
    the history's first day, they would make its runs out of order)."""
    if session.scalar(select(func.count()).select_from(Invoice)):
        raise HistoryRefused("--history-days needs a store without invoices (the history's runs would come after them); "
                             "load it into a new store (W365_DATABASE_URL) or leave out --history-days")


@dataclass
class HistoryReport:
    first_day: str
    last_day: str
    days: int
    invoices: int = 0
    change_log_invoices: int = 0
    merged: int = 0
    merge_failed: int = 0
    renewed: int = 0
    expired: int = 0
    metric_snapshots: int = 0
    changes: dict[str, int] = field(default_factory=dict)
    changes_left_out: dict[str, int] = field(default_factory=dict)
    changes_refused: dict[str, int] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)
    skipped_runs: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_history(first_day: date, last_day: date, *, seed: int = 365, engine: Engine | None = None,
                progress: Callable[[date], None] | None = None) -> HistoryReport:
    """Run every day from ``first_day`` to ``last_day`` (inclusive) on the store (module
    docstring). Each job commits as it does in Airflow; the changes commit once a day."""
    engine = engine or get_engine()

    with session_scope(engine) as s:
        tz = get_tenant(s).time_zone
        check_store(s)
        groups = {code: frequency_group(m) for code, m in s.execute(select(UnitMapping.code, UnitMapping.months)) if m}
    schedule = _schedule()
    rng = random.Random(seed)
    ops = _Ops(rng, last_day, schedule, tz)
    report = HistoryReport(first_day.isoformat(), last_day.isoformat(), (last_day - first_day).days + 1)
    seconds: dict[str, float] = {}

    def timed(kind: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = clock.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds[kind] = seconds.get(kind, 0.0) + clock.perf_counter() - started
            report.runs[kind] = report.runs.get(kind, 0) + 1

    def read_due() -> _Due:
        with session_scope(engine.execution_options(sqlite_begin="DEFERRED")) as s:
            return timed("due", _Due.read, s, groups)

    due = read_due()
    day = first_day
    while day <= last_day:
        for ev in day_events(schedule, day):
            at = tenant_time.local_instant(day, ev.at, tz)
            wrote = False
            if ev.kind == "merge":
                if due.slcl is None or due.slcl > at:
                    report.skipped_runs += 1
                    continue
                r = timed("merge", merge_due_slcls, at, engine=engine, now=at)
                report.merged += len(r.merged)
                report.merge_failed += len(r.failed)
                wrote = True
            elif ev.kind == "full_cycle":
                assert ev.group is not None  # invoice events carry their frequency group
                nid = due.invoice.get(ev.group)
                if nid is None or nid > day + timedelta(days=ev.advance_days):
                    report.skipped_runs += 1
                    continue
                r = timed("full_cycle", generate_full_cycle_invoices, ev.group, day, ev.advance_days, engine=engine)
                report.invoices += len(r.invoices)
                wrote = True
            elif ev.kind == "change_log":
                assert ev.group is not None
                r = timed("change_log", generate_change_log_invoices, ev.group, day, engine=engine)
                report.invoices += len(r.invoices)
                report.change_log_invoices += len(r.invoices)
            elif ev.kind == "renew":
                if due.term_end is None or due.term_end >= day:
                    report.skipped_runs += 1
                    continue
                r = timed("renew", auto_renew, day, now=at, engine=engine)
                report.renewed += len(r["renewed"])
                report.expired += len(r["expired"])
                wrote = True
            elif ev.kind == "metrics":
                r = timed("metrics", update_metrics, day, now=at, engine=engine)
                report.metric_snapshots += r["contracts"] + r["zeroed"]
            elif ev.kind == "changes":
                with session_scope(engine) as s:
                    n = timed("changes", ops.run_day, s, day)
                wrote = n > 0
            if wrote:
                due = read_due()
        if progress is not None:
            progress(day)
        if day.day == 1 or day == last_day:
            log.info("demo history: %s done (%d invoices, %d merges so far)", day, report.invoices, report.merged)
        day += timedelta(days=1)
    report.changes = dict(sorted(ops.entered.items()))
    report.changes_left_out = dict(sorted(ops.left_out.items()))
    report.changes_refused = dict(sorted(ops.refused.items()))
    report.seconds = {k: round(v, 3) for k, v in sorted(seconds.items())}
    log.info("demo history %s..%s: %d invoices (%d change-log), %d SLCLs merged, %d changes", first_day, last_day,
             report.invoices, report.change_log_invoices, report.merged, sum(ops.entered.values()))
    return report
