"""The tenant's time zone: one source, Airflow's ``[w365] timezone`` (SPEC S4, issue 14).

The DAG schedules are computed from ``[w365] timezone`` when the DAG files are parsed, before any
billing store is read, so that setting is the source. The store keeps a copy on its tenant row
(billing reads it in the same transaction as the data it dates): the copy is *derived* from the
setting while nothing is billed (``w365 db upgrade``), and *checked when it is set* (``w365 tenant
set --timezone``, ``w365 demo load --timezone``): a zone other than the schedules' is refused
there, with the one line that says what to change. Once invoices exist the copy never changes:
their dates were computed in it.
"""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from w365 import config
from w365.billing.subscriptions import get_tenant
from w365.core import tenant_time
from w365.errors import ValidationError
from w365.store.models import Invoice


def _billed(session: Session) -> bool:
    return bool(session.scalar(select(exists().where(Invoice.id.is_not(None)))))


def check_schedules_zone(zone: str) -> None:
    """``zone`` must be a zone Python knows and the one the DAG schedules run in."""
    tenant_time.zone(zone)
    scheduled = config.timezone_name()
    if zone != scheduled:
        raise ValidationError(
            "tenant time zone",
            f"{zone} is not the zone the DAG schedules run in ({scheduled}, Airflow's [w365] timezone): set "
            f"AIRFLOW__W365__TIMEZONE={zone} (or timezone = {zone} under [w365] in airflow.cfg) first, then run this again",
            "SPEC S4",
        )


def set_zone(session: Session, zone: str) -> None:
    """Set the store's copy to ``zone``: it must be the schedules' zone, and a store with invoices
    keeps the zone they were dated in."""
    check_schedules_zone(zone)
    tenant = get_tenant(session)
    if zone != tenant.time_zone and _billed(session):
        raise ValidationError("tenant time zone", f"the store's invoices were dated in {tenant.time_zone}; it cannot change now", "SPEC S4")
    tenant.time_zone = zone


def align_zone(session: Session) -> str:
    """Derive the store's copy from ``[w365] timezone`` while nothing is billed (``w365 db
    upgrade``). Returns what was done, for the operator; a store already billed in another zone
    is reported, never changed."""
    scheduled = config.timezone_name()
    tenant = get_tenant(session)
    if tenant.time_zone == scheduled:
        return f"tenant time zone {scheduled} ([w365] timezone)"
    if _billed(session):
        return (f"warning: the store's invoices are dated in {tenant.time_zone} but the DAG schedules run in {scheduled} "
                f"([w365] timezone): set AIRFLOW__W365__TIMEZONE={tenant.time_zone}; the jobs refuse to run until then")
    old, tenant.time_zone = tenant.time_zone, scheduled
    return f"tenant time zone {old} -> {scheduled} (from [w365] timezone; nothing billed yet)"
