"""What the integration jobs report: their exceptions in ``job_exception`` and a small report.

``replace_exceptions`` is for jobs that look at a whole set each run (a price list file, a
payment feed, the subscriptions off the list): the run's list for (job, date, entity type)
replaces the previous one, so a rerun reports the same list, never a longer one.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Iterable

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from w365.store.models import JobException

REPORT_LIMIT = 100  # problems listed in a job's report (all are in job_exception)


def replace_exceptions(session: Session, job: str, as_of: date, entity_type: str, problems: dict[str, str]) -> None:
    session.execute(
        delete(JobException).where(JobException.job == job, JobException.as_of == as_of, JobException.entity_type == entity_type)
    )
    rows = [{"job": job, "as_of": as_of, "entity_type": entity_type, "entity_key": k[:200], "reason": r} for k, r in problems.items()]
    if rows:
        session.execute(insert(JobException), rows)


def capped(problems: dict[str, str], limit: int = REPORT_LIMIT) -> dict[str, Any]:
    """The first ``limit`` problems, for a report small enough for XCom."""
    items = list(problems.items())
    return dict(items[:limit])


def record_exceptions(session: Session, job: str, as_of: date, entity_type: str, problems: dict[str, str], cleared: Iterable[str] = ()) -> None:
    """Upsert the job's exceptions for this date: a rerun reports the same list, not a longer one."""
    keys = list(problems) + list(cleared)
    if keys:
        session.execute(
            delete(JobException).where(
                JobException.job == job, JobException.as_of == as_of, JobException.entity_type == entity_type,
                JobException.entity_key.in_(keys),
            )
        )
    if problems:
        session.execute(
            insert(JobException),
            [{"job": job, "as_of": as_of, "entity_type": entity_type, "entity_key": k, "reason": r} for k, r in problems.items()],
        )
