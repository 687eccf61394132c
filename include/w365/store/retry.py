"""Transient database errors: retried a bounded number of times, never recorded as a business
outcome (issue 11).

A deadlock, a serialization failure, a lock timeout, a server restart or a dropped connection
says nothing about the data: the unit of work was rolled back whole, and doing it again is
correct. So the jobs redo the unit of work (a batch of contracts, a batch of scheduled changes)
a few times, with jittered backoff, logging each retry; no scheduled change becomes *Merge
Failed* and no contract is skipped because of one. If the error persists, the job fails with it
(Airflow retries the task) and a rerun completes the work: everything committed before stays.
"""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

log = logging.getLogger(__name__)

T = TypeVar("T")
ATTEMPTS = 5

# PostgreSQL SQLSTATEs that mean "try again" (Appendix A of its manual).
TRANSIENT_SQLSTATES = {
    "40001": "serialization failure",
    "40P01": "deadlock detected",
    "55P03": "lock not available",
    "57P01": "server shutting down",
    "57P02": "server crash shutdown",
    "57P03": "server not accepting connections yet",
    "08000": "connection exception",
    "08001": "could not connect",
    "08003": "connection does not exist",
    "08006": "connection failure",
}
_SQLITE_TRANSIENT = ("database is locked", "database table is locked")


def transient_reason(exc: BaseException) -> str | None:
    """Why ``exc`` is worth retrying, or None when it is not transient."""
    if not isinstance(exc, DBAPIError):
        return None
    if exc.connection_invalidated:
        return "lost the database connection"
    code = getattr(exc.orig, "pgcode", None)
    if code in TRANSIENT_SQLSTATES:
        return TRANSIENT_SQLSTATES[code]
    if isinstance(exc, OperationalError) and code is None:
        text = str(exc.orig).lower()
        if any(s in text for s in _SQLITE_TRANSIENT):
            return "database is locked"
        if "server closed the connection" in text or "connection already closed" in text or "terminating connection" in text:
            return "lost the database connection"
    return None


def retrying(what: str, attempts: int = ATTEMPTS) -> Retrying:
    """A tenacity ``Retrying`` for one unit of work named ``what`` (for the logs)."""

    def note(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s: %s; rolled back and retrying (attempt %d of %d)", what, transient_reason(exc) if exc else "error",
                    state.attempt_number + 1, attempts)

    return Retrying(
        retry=retry_if_exception(lambda e: transient_reason(e) is not None),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(initial=0.1, max=3.0),
        before_sleep=note,
        reraise=True,
    )


def run_retrying(fn: Callable[[], T], what: str, attempts: int = ATTEMPTS) -> T:
    """``fn()``, redone while it fails with a transient database error (at most ``attempts``)."""
    for attempt in retrying(what, attempts):
        with attempt:
            return fn()
    raise AssertionError("unreachable")  # pragma: no cover - Retrying either returns or raises


def batch_or_each(ids: list[int], work: Callable[[list[int]], None], what: Callable[[list[int]], str]) -> None:
    """``work(ids)`` as one unit of work (redone on transient errors); if the database refuses the
    batch on a unique key (another run did part of it), each id as its own unit, where a refusal
    means that id is done already: a no-op. The one batch-then-one-by-one skeleton of the jobs
    that write with idempotency keys (invoice runs, usage invoices)."""
    try:
        run_retrying(lambda: work(ids), what(ids))
    except IntegrityError as exc:
        if len(ids) == 1:
            log.info("%s: done by another run already; nothing to do", what(ids))
            return
        log.warning("%s: a unique key refused the batch (%s); one at a time", what(ids), str(exc.orig).splitlines()[0])
        for one in ids:
            batch_or_each([one], work, what)
