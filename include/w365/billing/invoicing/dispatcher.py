"""The invoice dispatcher: lock, load, plan, diff, write, in one transaction per batch.

Idempotency in depth (like Lago): the due-date pre-check re-read under the lock, the contracts
locked ``FOR UPDATE`` on PostgreSQL (SQLite serialises writers with BEGIN IMMEDIATE), the plan
that only bills the difference, and the unique keys (one full-cycle invoice per contract and
period, one first-billing line per subscription, day and price). If a batch still hits a unique
key (another run got there first) the batch is redone one contract per transaction and the
conflict is a no-op.

A contract whose data is bad (no unit mapping, no exchange rate, unknown currency...) is skipped
with its reason recorded in ``job_exception`` and reported; the others are billed.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any, Iterable, Sequence

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from w365 import hooks
from w365.billing.invoicing.generator import BadContractData, ProposedLine
from w365.billing.invoicing.loader import (
    ContractBundle,
    change_log_contract_ids,
    due_contract_ids,
    load_bundles,
    load_rates,
    load_units,
    pricer_for,
    terms_for,
)
from w365.billing.invoicing.tax import line_tax_columns, take_numbers, tax_documents, tax_drafts
from w365.billing.invoicing.planner import (
    Plan,
    PlannedInvoice,
    draft_dict,
    plan_change_log,
    plan_full_cycle,
)
from w365.core.calendar import stored_proration
from w365.core.money import UnknownCurrency
from w365.core.tax import LineTax
from w365.errors import W365Error
from w365.store.bulk import insert_rows, update_rows
from w365.store.job_report import record_exceptions
from w365.store.models import (
    BillingContract,
    Invoice,
    InvoiceLine,
    InvoiceLineLCL,
    InvoiceLineSLCL,
    ScheduledLicenseChangeLog,
    SLCLStatus,
)
from w365.store.retry import batch_or_each, run_retrying, transient_reason
from w365.store.session import (
    get_engine,
    is_postgres,
    lock_contracts,
    session_factory,
    session_scope,
    snapshot_scope,
)

log = logging.getLogger(__name__)

BATCH = 500


@dataclass
class InvoiceSummary:
    number: str | None
    contract: str
    kind: str
    period_from: str
    period_to: str
    currency: str
    total: str
    lines: int
    document: str = "invoice"  # or credit_note (SPEC I6)
    subtotal: str = ""
    tax_total: str = ""


@dataclass
class RunReport:
    job: str
    as_of: str
    dry_run: bool = False
    contracts_considered: int = 0
    invoices: list[InvoiceSummary] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    lines: int = 0
    seconds: float = 0.0
    drafts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.job} as of {self.as_of}: {self.contracts_considered} contract(s) considered, "
            f"{len(self.invoices)} invoice(s), {self.lines} line(s), {len(self.skipped)} skipped"
            + (" (dry run: nothing written)" if self.dry_run else "")
        )


def _chunks(ids: Sequence[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(ids), size):
        yield list(ids[i : i + size])


# --------------------------------------------------------------------------------------------
# Planning a batch (no writes)


def _plan_batch(
    session: Session, bundles: dict[int, ContractBundle], kind: str, *, horizon: date | None
) -> tuple[dict[int, Plan], dict[int, str]]:
    units = load_units(session)
    rates = load_rates(session)
    plans: dict[int, Plan] = {}
    bad: dict[int, str] = {}
    for cid, b in bundles.items():
        c = b.contract
        try:
            terms = terms_for(c, units)
            pricer = pricer_for(terms, units, rates)
            if kind == "full_cycle":
                assert horizon is not None and c.next_invoice_date is not None
                plans[cid] = plan_full_cycle(
                    terms, b.subs, b.billed, next_invoice_date=c.next_invoice_date, billed_from=c.billed_from,
                    horizon=horizon, pricer=pricer, existing_full_cycle=frozenset(b.full_cycle_periods),
                )
            else:
                plans[cid] = plan_change_log(
                    terms, b.subs, b.billed, next_invoice_date=c.next_invoice_date, billed_from=c.billed_from, pricer=pricer
                )
        except (BadContractData, UnknownCurrency) as exc:
            bad[cid] = str(exc)
    return plans, bad


# --------------------------------------------------------------------------------------------
# Writing a batch


def _line_row(invoice_id: int, no: int, ln: ProposedLine, tax: LineTax) -> dict[str, Any]:
    return {
        "invoice_id": invoice_id,
        "line_no": no,
        "subscription_id": ln.subscription_id,
        "kind": ln.kind,
        "description": ln.description[:300],
        "billing_period_from": ln.period.start,
        "billing_period_to": ln.period.last_day,
        "period_from": ln.start,
        "period_to": ln.end - timedelta(days=1),
        "quantity": ln.quantity,
        "unit_price": ln.unit_price,
        "days": ln.days,
        "period_days": ln.period_days,
        "proration_factor": stored_proration(ln.days, ln.period_days),
        "amount": ln.amount,
        "sales_unit": ln.sales_unit,
        "source_currency": ln.source_currency,
        "fx_rate": ln.fx_rate,
        **line_tax_columns(tax),
    }


def write_plans(
    session: Session, bundles: dict[int, ContractBundle], plans: dict[int, Plan], *, as_of: date, job: str,
    problems: dict[str, str] | None = None,
) -> list[InvoiceSummary]:
    """Write planned invoices, lines and their sources; advance contracts; mark billed SLCLs.

    Each document is taxed first (SPEC I2-I5); one whose total is negative is a credit note,
    numbered in its own series (I6). A contract that cannot be taxed is not written nor
    advanced: its reason goes to ``problems`` (an error when the caller gave none)."""
    drafts: list[tuple[ContractBundle, PlannedInvoice]] = [
        (bundles[cid], inv) for cid in sorted(plans) for inv in plans[cid].invoices
    ]
    taxed, untaxable = tax_documents(session, [(b.contract, inv) for b, inv in drafts])
    if untaxable:
        reasons = {bundles[cid].contract.number: reason for cid, reason in untaxable.items()}
        if problems is None:
            raise W365Error("; ".join(f"contract {k}: {r}" for k, r in reasons.items()))
        problems.update(reasons)
        plans = {cid: p for cid, p in plans.items() if cid not in untaxable}
    kept = [(d, t) for d, t in zip(drafts, taxed) if t is not None]  # None: the contract cannot be taxed
    drafts, docs = [d for d, _ in kept], [t for _, t in kept]
    summaries: list[InvoiceSummary] = []
    if drafts:
        numbers = take_numbers(session, [t.document for t in docs])
        inv_rows: list[dict[str, Any]] = []
        for (b, inv), t, (number, seq) in zip(drafts, docs, numbers):
            c = b.contract
            inv_rows.append({
                "number": number, "sequence": seq, "contract_id": c.id, "customer_id": c.customer_id,
                "kind": inv.kind, "currency": c.currency, "issue_date": as_of, "due_date": as_of + timedelta(days=c.payment_terms_days),
                "period_from": inv.period_from, "period_to": inv.period_to,
                "total": t.totals.total, "tax_total": t.totals.tax_total, "document": t.document,
                "corrects_invoice_id": t.corrects_invoice_id, "tax_exempt_reference": t.exempt_reference, "created_by_job": job,
            })
        ids = insert_rows(session, Invoice, inv_rows, return_ids=True)
        line_rows: list[dict[str, Any]] = []
        sources: list[ProposedLine] = []
        for inv_id, (b, inv), t, row in zip(ids, drafts, docs, inv_rows):
            for no, (ln, tax) in enumerate(zip(inv.lines, t.lines), start=1):
                line_rows.append(_line_row(inv_id, no, ln, tax))
                sources.append(ln)
            summaries.append(InvoiceSummary(row["number"], b.contract.number, inv.kind, str(inv.period_from), str(inv.period_to),
                                            b.contract.currency, format(row["total"], "f"), len(inv.lines),
                                            t.document.value, format(t.totals.subtotal, "f"), format(t.totals.tax_total, "f")))
        line_ids = insert_rows(session, InvoiceLine, line_rows, return_ids=True)
        lcl_links = [{"invoice_line_id": lid, "lcl_id": x} for lid, ln in zip(line_ids, sources) for x in ln.lcl_ids]
        slcl_links = [{"invoice_line_id": lid, "slcl_id": x} for lid, ln in zip(line_ids, sources) for x in ln.slcl_ids]
        insert_rows(session, InvoiceLineLCL, lcl_links)
        if slcl_links:
            insert_rows(session, InvoiceLineSLCL, slcl_links)
            # SPEC C9 decision: a scheduled change billed ahead is Awaiting Merge.
            session.execute(
                update(ScheduledLicenseChangeLog)
                .where(ScheduledLicenseChangeLog.id.in_({l["slcl_id"] for l in slcl_links}),
                       ScheduledLicenseChangeLog.status == SLCLStatus.PENDING)
                .values(status=SLCLStatus.AWAITING_MERGE)
            )
    moves = [
        {"id": cid, "next_invoice_date": p.next_invoice_date, "billed_from": p.billed_from}
        for cid, p in plans.items()
        if (p.next_invoice_date, p.billed_from) != (bundles[cid].contract.next_invoice_date, bundles[cid].contract.billed_from)
    ]
    update_rows(session, BillingContract, moves)
    return summaries


@dataclass
class _Batch:
    """A planned batch whose transaction is still open (its contracts locked), ready to write."""

    session: Session
    bundles: dict[int, ContractBundle]
    plans: dict[int, Plan]
    problems: dict[str, str]

    def write(self, *, as_of: date, job: str) -> tuple[list[InvoiceSummary], dict[str, str]]:
        s = self.session
        try:
            hooks.at("invoice.before_write")
            summaries = write_plans(s, self.bundles, self.plans, as_of=as_of, job=job, problems=self.problems)
            numbers = [self.bundles[c].contract.number for c in self.plans]
            record_exceptions(s, job, as_of, "billing_contract", self.problems, cleared=numbers)
            s.commit()
            return summaries, self.problems
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def abandon(self) -> None:
        self.session.rollback()
        self.session.close()


def _prepare_batch(
    engine: Engine, ids: list[int], kind: str, *, horizon: date | None, job: str, dry_run: bool, report: RunReport
) -> _Batch | None:
    """Open the batch's transaction, lock its contracts, then load and plan them from one
    consistent snapshot taken under the locks; None when there is nothing to write.

    The lock (the same per-contract lock the Scheduled Update merge and subscription changes
    take) keeps those from committing changes to these contracts until this batch commits; the
    snapshot makes every read of the batch see one state, whatever else commits meanwhile.
    """
    s = session_factory(engine)()
    try:
        lock_contracts(s, ids)
        if kind == "full_cycle":
            # Pre-check under the lock: another run may have billed these since we listed them.
            ids = list(s.scalars(select(BillingContract.id).where(BillingContract.id.in_(ids), BillingContract.next_invoice_date <= horizon)))
        with snapshot_scope(s) as snap:
            bundles = load_bundles(snap, ids)
            plans, bad = _plan_batch(snap, bundles, kind, horizon=horizon)
    except BaseException:
        s.rollback()
        s.close()
        raise
    numbers = {cid: bundles[cid].contract.number for cid in bundles}
    problems = {numbers[cid]: reason for cid, reason in bad.items()}
    batch = _Batch(s, bundles, plans, problems)
    if dry_run:
        drafts = [(bundles[cid].contract, inv, draft_dict(numbers[cid], bundles[cid].contract.currency, inv))
                  for cid, plan in plans.items() for inv in plan.invoices]
        untaxable = tax_drafts(s, drafts)  # SPEC I4: a dry run shows the tax it would bill
        problems.update({numbers[cid]: reason for cid, reason in untaxable.items()})
        for c, inv, d in drafts:
            if c.id not in untaxable:
                report.drafts.append(d)
                report.lines += len(inv.lines)
        _account(report, [], problems, job)
        batch.abandon()
        return None
    return batch


def _account(report: RunReport, summaries: list[InvoiceSummary], problems: dict[str, str], job: str) -> None:
    report.invoices += summaries
    report.lines += sum(x.lines for x in summaries)
    for key, reason in problems.items():
        log.warning("%s: contract %s skipped: %s", job, key, reason)
    report.skipped += [{"contract": k, "reason": r} for k, r in problems.items()]


def _run(kind: str, group: str, run_date: date, ids_of, *, horizon: date | None, job: str, dry_run: bool, engine: Engine | None, batch: int) -> RunReport:  # type: ignore[no-untyped-def]
    """Batches of contracts, one transaction each. On PostgreSQL the writing of one batch (mostly
    the database's work) overlaps the loading and planning of the next (mostly Python's): a
    single writer thread, so batches still commit one after the other, in order.

    A batch that fails with a transient database error (deadlock, serialization failure, lost
    connection) is redone whole, a bounded number of times (w365.store.retry); one that hits a
    unique key (another run billed part of it) is redone a contract at a time, where the
    conflict means "already billed" and is a no-op.
    """
    engine = engine or get_engine()
    started = time.monotonic()
    report = RunReport(job=job, as_of=run_date.isoformat(), dry_run=dry_run)
    with session_scope(engine) as s:
        ids = ids_of(s)
    report.contracts_considered = len(ids)
    log.info("%s: %d contract(s) to consider", job, len(ids))

    def what(chunk: list[int]) -> str:
        return f"{job}: batch of {len(chunk)} contract(s) from #{chunk[0]}"

    def prepare(chunk: list[int]) -> _Batch | None:
        return run_retrying(lambda: _prepare_batch(engine, chunk, kind, horizon=horizon, job=job, dry_run=dry_run, report=report), what(chunk))

    def bill_now(chunk: list[int]) -> None:
        """Prepare and write ``chunk`` here and now, redone on transient errors."""

        def once_for(ids: list[int]) -> None:
            b = _prepare_batch(engine, ids, kind, horizon=horizon, job=job, dry_run=dry_run, report=report)
            if b is not None:
                _account(report, *b.write(as_of=run_date, job=job), job)

        batch_or_each(chunk, once_for, what)

    def recover(chunk: list[int], exc: BaseException) -> None:
        """A batch's write failed: redo it if the failure allows (a unique key, a transient error)."""
        if isinstance(exc, IntegrityError) or transient_reason(exc) is not None:
            if not isinstance(exc, IntegrityError):
                log.warning("%s: %s while writing; redoing the batch", what(chunk), transient_reason(exc))
            bill_now(chunk)
        else:
            raise exc

    done = 0
    pending: tuple[list[int], Future[tuple[list[InvoiceSummary], dict[str, str]]]] | None = None

    def progress(chunk: list[int]) -> None:
        nonlocal done
        done += len(chunk)
        log.info("%s: %d/%d contracts done, %d invoice(s), %d line(s) so far", job, done, len(ids), len(report.invoices), report.lines)

    overlap = is_postgres(engine) and not dry_run  # SQLite has one writer at a time: no overlap
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="w365-invoice-writer") as writer:
        try:
            for chunk in _chunks(ids, batch):
                b = prepare(chunk)
                if pending is not None:
                    # The previous batch commits before this one writes: numbering stays in order.
                    prev, future = pending
                    pending = None
                    try:
                        _account(report, *future.result(), job)
                    except BaseException as exc:  # noqa: BLE001 - recover() re-raises what it cannot redo
                        if b is not None:
                            b.abandon()  # release this batch's locks before redoing the previous one
                        recover(prev, exc)
                        b = prepare(chunk)
                    progress(prev)
                if b is None:
                    progress(chunk)
                elif overlap:
                    pending = (chunk, writer.submit(b.write, as_of=run_date, job=job))
                else:
                    try:
                        _account(report, *b.write(as_of=run_date, job=job), job)
                    except BaseException as exc:  # noqa: BLE001
                        recover(chunk, exc)
                    progress(chunk)
        finally:
            if pending is not None:
                prev, future = pending
                try:
                    _account(report, *future.result(), job)
                except BaseException as exc:  # noqa: BLE001
                    recover(prev, exc)
                progress(prev)
    report.seconds = round(time.monotonic() - started, 3)
    log.info(report.summary())
    return report


def generate_full_cycle_invoices(
    frequency: str,
    run_date: date,
    advance_days: int = 0,
    *,
    contracts: Sequence[str] | None = None,
    contract_ids: Sequence[int] | None = None,
    dry_run: bool = False,
    engine: Engine | None = None,
    batch: int = BATCH,
) -> RunReport:
    """Bill every due contract of ``frequency`` (monthly | quarterly | annual) for its coming
    period(s): next invoice date <= run_date + advance_days (SPEC J4, J5)."""
    if advance_days < 0:
        raise W365Error(f"advance days must be 0 or more, not {advance_days}")
    horizon = run_date + timedelta(days=advance_days)

    def ids_of(s: Session) -> list[int]:
        ids = due_contract_ids(s, frequency, horizon, contracts)
        return [i for i in ids if i in set(contract_ids)] if contract_ids is not None else ids

    return _run("full_cycle", frequency, run_date, ids_of, horizon=horizon, job=f"generate_full_cycle_invoice_{frequency}",
                dry_run=dry_run, engine=engine, batch=batch)


def generate_change_log_invoices(
    frequency: str,
    run_date: date,
    *,
    contracts: Sequence[str] | None = None,
    dry_run: bool = False,
    engine: Engine | None = None,
    batch: int = BATCH,
) -> RunReport:
    """Charge or credit, for periods already billed, what the change logs say differently (B4)."""
    return _run("change_log", frequency, run_date, lambda s: change_log_contract_ids(s, frequency, contracts), horizon=None,
                job=f"generate_change_log_invoice_{frequency}", dry_run=dry_run, engine=engine, batch=batch)
