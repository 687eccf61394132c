"""Overlapping jobs bill what they bill one after the other (issue 11; SPEC C11, C12, J6).

Airflow runs Scheduled Update at 00:05 and the full-cycle jobs soon after; a slow merge, a retry
or a backfill makes them overlap. These tests force each interleaving deterministically: a hook
pauses one job at a named point (w365.hooks) while the other runs in a thread, and the test
waits until that other job has either finished or is blocked on a database lock (read from
pg_stat_activity), never for a length of time. Then the results are compared with the same
tenant billed sequentially.

Transient database errors (a deadlock, a lost connection) are retried and never recorded as a
business outcome: no scheduled change becomes Merge Failed, no contract is skipped.
"""

from __future__ import annotations

import logging
import threading
import time as _time
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

import factories as f
from conftest import reset_store
from w365 import hooks
from w365.store.models import QRB, BillingContract, ChangeEffective, Invoice, InvoiceLine, ScheduledLicenseChangeLog
from w365.store.retry import transient_reason
from w365.billing.invoicing.dispatcher import generate_change_log_invoices, generate_full_cycle_invoices
from w365.billing.scheduled_changes import merge_due_slcls
from w365.billing.changes import ChangeRequest, change_subscription

UTC = timezone.utc
RUN = date(2026, 12, 15)
MERGE_AT = datetime(2026, 12, 15, 23, 30, tzinfo=UTC)  # every change effective Dec 15 is due
postgres_only = pytest.mark.parametrize("store", ["postgres"], indirect=True)


def _tenant(session, contracts: int = 6) -> None:  # type: ignore[no-untyped-def]
    """Monthly contracts due on the run date, each with two subscriptions; one of them has a
    scheduled change effective that day (up on even contracts, down on odd ones)."""
    for n in range(contracts):
        c = f.contract(session, f.customer(session, f"Customer {n}"), start=RUN, number=f"BC-{n:02d}")
        changed = f.subscription(session, c, name=f"E3-{n}", quantity=10, price="36.00", qrb=QRB.ALLOWED,
                                 now=datetime(2026, 12, 1, tzinfo=UTC))
        f.subscription(session, c, name=f"Basic-{n}", quantity=3, price="6.00", now=datetime(2026, 12, 1, tzinfo=UTC))
        change_subscription(session, changed.id, ChangeRequest(quantity=14 if n % 2 == 0 else 7, effective=ChangeEffective.CUSTOM,
                                                               effective_date=RUN), now=datetime(2026, 12, 1, tzinfo=UTC))
    session.commit()


def _billed(session) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """What was billed, per contract: its lines (days, quantity, price, amount) and total."""
    f.fresh(session)
    out: dict[str, Any] = {}
    for number, total in session.execute(select(BillingContract.number, Invoice.total).join(Invoice, Invoice.contract_id == BillingContract.id)):
        out.setdefault(number, {"total": Decimal(0), "lines": []})["total"] += total
    for number, a, b, q, p, amount in session.execute(
        select(BillingContract.number, InvoiceLine.period_from, InvoiceLine.period_to, InvoiceLine.quantity, InvoiceLine.unit_price, InvoiceLine.amount)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id).join(BillingContract, BillingContract.id == Invoice.contract_id)
    ):
        out[number]["lines"].append((a, b, q, p, amount))
    for v in out.values():
        v["lines"].sort()
    statuses = sorted(s.value for s in session.scalars(select(ScheduledLicenseChangeLog.status)))
    session.commit()
    return {"contracts": out, "slcl_statuses": statuses}


def _nothing_owed(store) -> bool:  # type: ignore[no-untyped-def]
    """Nothing was missed: the next change-log run finds nothing to charge or credit."""
    return generate_change_log_invoices("monthly", date(2026, 12, 21), engine=store.engine).invoices == []


def _sequential(store, session) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    session.close()
    reset_store(store)
    _tenant(session)
    merge_due_slcls(MERGE_AT, engine=store.engine)
    generate_full_cycle_invoices("monthly", RUN, engine=store.engine)
    return _billed(session)


def _blocked_on_a_lock(store) -> bool:  # type: ignore[no-untyped-def]
    with store.engine.connect() as c:
        return bool(c.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")))


def _wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    """Wait for a state of the system (not for a length of time): polls ``condition``."""
    deadline = _time.monotonic() + timeout
    while not condition():
        assert _time.monotonic() < deadline, "the other job neither finished nor blocked"
        _time.sleep(0.005)


def _while_paused(point: str, other: Callable[[], Any], store):  # type: ignore[no-untyped-def]
    """A hook for ``point`` that, the first time it is reached, starts ``other`` in a thread and
    waits until it has finished or is blocked on a lock. Returns (state, the hook, join)."""
    state: dict[str, Any] = {}

    def pause() -> None:
        if "thread" in state:
            return
        t = threading.Thread(target=lambda: state.setdefault("result", other()))
        state["thread"] = t
        t.start()
        _wait_for(lambda: not t.is_alive() or _blocked_on_a_lock(store))
        state["finished_during_pause"] = not t.is_alive()

    def join() -> None:
        state["thread"].join(120)
        assert not state["thread"].is_alive()

    return state, pause, join


@postgres_only
@pytest.mark.parametrize("point", ["invoice.read_change_logs", "invoice.before_write"])
def test_invoice_run_paused_while_scheduled_update_runs_bills_as_if_sequential(store, session, point):
    """Issue 11 (C11, C12): the full-cycle run is paused between its reads (or before it
    writes) while Scheduled Update merges the day's changes. The merge waits for the contracts'
    lock; the invoices equal the sequential run's and no SLCL is Merge Failed."""
    _tenant(session)
    state, pause, join = _while_paused(point, lambda: merge_due_slcls(MERGE_AT, engine=store.engine), store)
    with hooks.installed(point, pause):
        generate_full_cycle_invoices("monthly", RUN, engine=store.engine)
    join()
    assert state["finished_during_pause"] is False  # the merge was held by the contract lock
    assert state["result"].failed == {} and len(state["result"].merged) == 6
    overlapped = _billed(session)
    assert overlapped["slcl_statuses"] == ["archived"] * 6
    assert _nothing_owed(store)
    assert overlapped == _sequential(store, session)


@postgres_only
def test_scheduled_update_paused_before_commit_while_invoice_run_starts(store, session):
    """Issue 11, the other interleaving: the merge has written and not committed; the
    full-cycle run starts and waits for the contracts' lock, then reads the merged state."""
    _tenant(session)
    state, pause, join = _while_paused("merge.before_commit", lambda: generate_full_cycle_invoices("monthly", RUN, engine=store.engine), store)
    with hooks.installed("merge.before_commit", pause):
        report = merge_due_slcls(MERGE_AT, engine=store.engine)
    join()
    assert state["finished_during_pause"] is False  # the invoice run was held by the contract lock
    assert report.failed == {} and len(report.merged) == 6 and len(state["result"].invoices) == 6
    overlapped = _billed(session)
    assert _nothing_owed(store)
    assert overlapped == _sequential(store, session)


def _fail_once(exc: BaseException) -> Callable[[], None]:
    calls = {"n": 0}

    def hook() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise exc

    return hook


class _PgError(Exception):
    """What psycopg2 raises, as far as the retry logic looks: a SQLSTATE."""

    def __init__(self, pgcode: str, message: str):
        super().__init__(message)
        self.pgcode = pgcode


DEADLOCK = OperationalError("UPDATE ...", {}, _PgError("40P01", "deadlock detected"))


def test_a_deadlock_in_the_merge_is_retried_not_merge_failed(store, session, caplog):
    """Issue 11: a transient error (here a deadlock at commit time) redoes the batch; no SLCL
    is Merge Failed and the log says what was retried."""
    _tenant(session)
    caplog.set_level(logging.WARNING, logger="w365.store.retry")
    with hooks.installed("merge.before_commit", _fail_once(DEADLOCK)):
        report = merge_due_slcls(MERGE_AT, engine=store.engine)
    assert report.failed == {} and len(report.merged) == 6
    assert _billed(session)["slcl_statuses"] == ["archived"] * 6
    assert any("deadlock detected; rolled back and retrying (attempt 2 of 5)" in r.getMessage() for r in caplog.records)


def test_a_deadlock_while_writing_invoices_is_retried_not_skipped(store, session, caplog):
    """Issue 11: the batch whose write hit a deadlock is redone: every contract billed once,
    none skipped, invoice numbers gapless."""
    _tenant(session)
    caplog.set_level(logging.WARNING)
    with hooks.installed("invoice.before_write", _fail_once(DEADLOCK)):
        report = generate_full_cycle_invoices("monthly", RUN, engine=store.engine)
    assert report.skipped == [] and len(report.invoices) == 6
    assert sorted(i.number for i in report.invoices) == [f"INV-{n:06d}" for n in range(1, 7)]
    assert generate_full_cycle_invoices("monthly", RUN, engine=store.engine).invoices == []  # J6
    assert any("deadlock detected" in r.getMessage() for r in caplog.records)


@postgres_only
def test_a_connection_lost_in_the_middle_of_a_run_is_retried(store, session):
    """Issue 11: the server drops the run's connections between two of its reads (an
    administrator's pg_terminate_backend); the batch is redone on a new connection and the
    run completes as if nothing happened."""
    _tenant(session)
    session.close()

    def drop_connections() -> None:
        with store.engine.connect() as c:  # a connection of the test's own, not the run's
            c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
            c.commit()

    with hooks.installed("invoice.read_change_logs", _fail_once_call(drop_connections)):
        report = generate_full_cycle_invoices("monthly", RUN, engine=store.engine)
    assert report.skipped == [] and len(report.invoices) == 6
    assert _billed(session) == _sequential_invoice_only(store, session)


def _fail_once_call(fn: Callable[[], None]) -> Callable[[], None]:
    calls = {"n": 0}

    def hook() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            fn()

    return hook


def _sequential_invoice_only(store, session) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    session.close()
    reset_store(store)
    _tenant(session)
    generate_full_cycle_invoices("monthly", RUN, engine=store.engine)
    return _billed(session)


@postgres_only
def test_a_real_deadlock_is_classified_transient(store):
    """Issue 11: what PostgreSQL raises on a deadlock is recognised as worth retrying.
    Two connections lock two rows in opposite orders; the server aborts one of them."""
    with store.engine.begin() as c:
        c.execute(text("INSERT INTO unit_mapping (code, name, months) VALUES ('DL1', 'a', 1), ('DL2', 'b', 1)"))
    a, b = store.engine.connect(), store.engine.connect()
    errors: list[BaseException] = []
    try:
        a.begin()
        b.begin()
        a.execute(text("SELECT * FROM unit_mapping WHERE code = 'DL1' FOR UPDATE"))
        b.execute(text("SELECT * FROM unit_mapping WHERE code = 'DL2' FOR UPDATE"))

        def a_wants_b() -> None:
            try:
                a.execute(text("SELECT * FROM unit_mapping WHERE code = 'DL2' FOR UPDATE"))
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        t = threading.Thread(target=a_wants_b)
        t.start()
        _wait_for(lambda: _blocked_on_a_lock(store))
        try:
            b.execute(text("SELECT * FROM unit_mapping WHERE code = 'DL1' FOR UPDATE"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        b.rollback()
        t.join(30)
    finally:
        a.close()
        b.close()
    assert len(errors) == 1
    assert transient_reason(errors[0]) == "deadlock detected"
