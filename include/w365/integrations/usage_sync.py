"""Azure usage from the providers: the daily (interim) and final sync jobs.

Each provider's day is read in chunks and loaded in one transaction per provider and day
(``w365.integrations.usage_day``: checks, held-back subscriptions, sums, replace). A provider that
cannot be read, or whose export breaks off mid-file, is reported and changes nothing.

On the first day of a month the final sync also bills the month before (``w365.billing.usage``).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any, Callable

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from w365.billing.usage import bill_usage_month, job_for, month_start
from w365.core.calendar import add_months
from w365.errors import W365Error
from w365.integrations.usage_day import load_usage
from w365.store.job_report import record_exceptions
from w365.store.models import Provider, ProviderKind, UsageKind
from w365.store.session import get_engine, session_scope

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# The sync jobs


def _api_providers(session: Session) -> list[tuple[int, str, str, str | None]]:
    return [
        (p.id, p.name, p.kind, p.connection_id)
        for p in session.scalars(select(Provider).where(Provider.kind != ProviderKind.MANUAL).order_by(Provider.id))
    ]


class _ProviderRow:
    def __init__(self, pid: int, name: str, kind: str, connection_id: str | None):
        self.id, self.name, self.kind, self.connection_id = pid, name, kind, connection_id


def sync_usage(
    kind: str,
    day: date,
    *,
    as_of: date,
    now: datetime,
    client_factory: Callable[[Any], Any] | None = None,
    engine: Engine | None = None,
) -> dict[str, Any]:
    """Load ``day``'s usage of ``kind`` from every provider with an API or file drop."""
    from w365.integrations.providers import ProviderUnavailable, client_for

    engine = engine or get_engine()
    factory = client_factory or client_for
    job = job_for(kind)
    report: dict[str, Any] = {"job": job, "as_of": as_of.isoformat(), "day": day.isoformat(), "kind": kind, "providers": [],
                              "problems": {}, "failed_providers": {}}
    with session_scope(engine) as s:
        providers = _api_providers(s)
    for pid, name, pkind, conn_id in providers:
        entry: dict[str, Any] = {"provider": name, "kind": pkind}
        try:
            with factory(_ProviderRow(pid, name, pkind, conn_id)) as client:
                chunks = client.usage_batches(day, kind)
                if chunks is None:
                    entry["status"] = "no usage available for the day"
                    report["providers"].append(entry)
                    continue
                # The chunks are read inside the transaction: an export that breaks off rolls
                # the whole day back (nothing half-loaded) and is reported below.
                with session_scope(engine) as s:
                    res = load_usage(s, pid, kind, day, chunks, now=now, provider_name=name)
                    record_exceptions(s, job, as_of, "usage_subscription", {f"{name}:{day}:{k}": v for k, v in res.held_back.items()})
                    record_exceptions(s, job, as_of, "provider", {}, cleared=[name])
        except (ProviderUnavailable, W365Error) as exc:
            log.error("%s: provider %s: %s", job, name, exc)
            report["failed_providers"][name] = str(exc)
            with session_scope(engine) as s:
                record_exceptions(s, job, as_of, "provider", {name: str(exc)})
            continue
        entry.update(res.to_dict())
        report["providers"].append(entry)
        report["problems"].update({f"{name}:{k}": v for k, v in res.held_back.items()})
    return report


def sync_final_usage(
    as_of: date, *, day: date | None = None, bill_month: date | None = None, now: datetime, bill: bool = True,
    client_factory: Callable[[Any], Any] | None = None, engine: Engine | None = None,
) -> dict[str, Any]:
    """The final-usage job: load yesterday's final usage, then, on the first day of a month (or for
    ``bill_month``), invoice the month before."""
    day = day or as_of - timedelta(days=1)
    report = sync_usage(UsageKind.FINAL.value, day, as_of=as_of, now=now, client_factory=client_factory, engine=engine)
    month = bill_month or (add_months(month_start(as_of), -1) if as_of.day == 1 else None)
    if bill and month is not None:
        report["billing"] = bill_usage_month(month_start(month), as_of=as_of, engine=engine)
    return report

