"""Entry points of the catalogue jobs: ``fn(as_of, **params) -> dict`` (JSON-able, for XCom).

DAG tasks and ``w365 run DAG_ID --as-of DATE`` call the same functions, so a job can be debugged
without Airflow. ``as_of`` is the run's logical date (an instant, SPEC J6) or a tenant-local
date; nothing here reads the wall clock.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time
from typing import Any, Callable

from w365 import catalogue, tenant_time

log = logging.getLogger(__name__)

AsOf = datetime | date | str


def tenant_timezone() -> str:
    from w365.db.session import session_scope
    from w365.subscriptions import get_tenant

    with session_scope() as s:
        return get_tenant(s).time_zone


def as_of_date(as_of: AsOf, tz: str | None = None) -> date:
    """The tenant-local date a run is bound to."""
    return tenant_time.as_of_date(as_of, tz or tenant_timezone())


def as_of_instant(as_of: AsOf, tz: str | None = None) -> datetime:
    """An instant for jobs that work at a time of day (Scheduled Update). A bare date means the
    end of that tenant day (23:30, the day's last Scheduled Update), so everything due that day
    is included."""
    if isinstance(as_of, str):
        text = as_of.strip()
        as_of = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text.replace("Z", "+00:00"))
    if isinstance(as_of, datetime):
        return tenant_time.require_aware(as_of, "as_of")
    return tenant_time.local_instant(as_of, time(23, 30), tz or tenant_timezone())


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y")
    return bool(value)


def _contracts(value: Any) -> list[str] | None:
    if not value:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


# --------------------------------------------------------------------------------------------
# Invoicing (SPEC J4-J6)


def _full_cycle(frequency: str) -> Callable[..., dict[str, Any]]:
    def run(as_of: AsOf, advance_days: int | str = 0, dry_run: bool | str = False, contract: Any = "", contract_ids: list[int] | None = None) -> dict[str, Any]:
        from w365.invoicing.dispatcher import generate_full_cycle_invoices

        report = generate_full_cycle_invoices(
            frequency, as_of_date(as_of), int(advance_days or 0), contracts=_contracts(contract),
            contract_ids=contract_ids, dry_run=_flag(dry_run),
        )
        return report.to_dict()

    run.__name__ = f"full_cycle_invoice_{frequency}"
    run.__doc__ = f"Generate Full Cycle Invoice - {frequency.capitalize()} Contracts."
    return run


def _change_log(frequency: str) -> Callable[..., dict[str, Any]]:
    def run(as_of: AsOf, dry_run: bool | str = False, contract: Any = "") -> dict[str, Any]:
        from w365.invoicing.dispatcher import generate_change_log_invoices

        return generate_change_log_invoices(frequency, as_of_date(as_of), contracts=_contracts(contract), dry_run=_flag(dry_run)).to_dict()

    run.__name__ = f"change_log_invoice_{frequency}"
    run.__doc__ = f"Generate Change Log Invoice - {frequency.capitalize()} Contracts."
    return run


full_cycle_invoice_monthly = _full_cycle("monthly")
full_cycle_invoice_quarterly = _full_cycle("quarterly")
full_cycle_invoice_annual = _full_cycle("annual")
change_log_invoice_monthly = _change_log("monthly")
change_log_invoice_quarterly = _change_log("quarterly")
change_log_invoice_annual = _change_log("annual")


def due_contract_shards(frequency: str, as_of: AsOf, advance_days: int | str = 0, shards: int = 4, contract: Any = "") -> list[list[int]]:
    """Split the contracts due for a full-cycle run into ``shards`` lists (scale-out, issue 6)."""
    from datetime import timedelta

    from w365.db.session import session_scope
    from w365.invoicing.dispatcher import due_contract_ids

    horizon = as_of_date(as_of) + timedelta(days=int(advance_days or 0))
    with session_scope() as s:
        ids = due_contract_ids(s, frequency, horizon, _contracts(contract))
    n = max(1, min(int(shards), len(ids)))
    return [ids[i::n] for i in range(n)] if ids else []


# --------------------------------------------------------------------------------------------
# Scheduled Update (SPEC C6)


def scheduled_update(as_of: AsOf) -> dict[str, Any]:
    from w365.slcl import merge_due_slcls

    return merge_due_slcls(as_of_instant(as_of)).to_dict()


# --------------------------------------------------------------------------------------------


def function_for(dag_id: str) -> Callable[..., dict[str, Any]]:
    job = catalogue.get(dag_id)
    fn = globals().get(job.function)
    if fn is None:
        from w365.errors import W365Error

        raise W365Error(f"job {dag_id} has no entry point w365.jobs.{job.function}")
    return fn  # type: ignore[no-any-return]


def run(dag_id: str, as_of: AsOf, **params: Any) -> dict[str, Any]:
    """Run one catalogue job's function for ``as_of`` (what ``w365 run`` does)."""
    log.info("running %s as of %s with %s", dag_id, as_of, params or "no params")
    return function_for(dag_id)(as_of, **params)
