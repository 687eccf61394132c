"""Changes awaiting provisioning at manual providers (SPEC P1, C5; job "Sync Subscriptions From
Tenant to Provider - Manual").

A Manual provider has no API: people provision its changes. What awaits them, on a date D:

* every License Change Log of a subscription whose provider is manual, with provisioning status
  ``pending`` and effective on or before D (``write_lcl`` leaves manual changes pending);
* every open scheduled change (SLCL: pending or awaiting merge) of such a subscription whose
  Provision On date (SPEC C5) is on or before D: people provision it ahead of its merge.

The job sends one alert per item, once (``w365.notify.send_once``, keys ``lcl:<id>`` and
``slcl:<id>``; an LCL written by merging an SLCL that was already alerted keeps the SLCL's key,
so it is not alerted again). Recipients: the provider's ``alert_email``, else ``[w365]
alert_email``. ``w365 provisioning pending`` lists the items; ``w365 provisioning done LCL_ID``
marks an LCL provisioned (the only change an LCL allows after it is written).
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from w365.notify import Alert, Notifier, deliver, recipients
from w365.store.models import (
    AlertSent,
    BillingContract,
    Customer,
    LicenseChangeLog,
    Provider,
    ProviderKind,
    ProvisioningStatus,
    ScheduledLicenseChangeLog,
    SLCLStatus,
    Subscription,
)
from w365.store.session import session_scope
from w365.errors import NotFound, W365Error

log = logging.getLogger(__name__)

JOB = "sync_subscriptions_to_provider_manual"
ALERT_KIND = "manual_provisioning"



def pending_items(session: Session, as_of: date | None = None) -> list[dict[str, Any]]:
    """LCLs and due SLCLs awaiting provisioning at manual providers (``as_of`` None: all)."""
    lcl, sub, prov, cust, con = LicenseChangeLog, Subscription, Provider, Customer, BillingContract
    q = (
        select(lcl, sub.name, sub.provider_subscription_id, prov.name, prov.alert_email, cust.name, con.number)
        .join(sub, sub.id == lcl.subscription_id)
        .join(prov, prov.id == sub.provider_id)
        .join(cust, cust.id == sub.customer_id)
        .join(con, con.id == sub.contract_id)
        .where(prov.kind == ProviderKind.MANUAL, lcl.provisioning_status == ProvisioningStatus.PENDING)
        .order_by(lcl.effective_date, lcl.id)
    )
    if as_of is not None:
        q = q.where(lcl.effective_date <= as_of)
    items: list[dict[str, Any]] = []
    for row, sub_name, psid, prov_name, prov_email, cust_name, number in session.execute(q):
        items.append({
            "item": f"LCL #{row.id}", "key": f"slcl:{row.slcl_id}" if row.slcl_id else f"lcl:{row.id}",
            "lcl_id": row.id, "slcl_id": row.slcl_id, "subscription_id": row.subscription_id, "subscription": sub_name,
            "provider_subscription_id": psid, "provider": prov_name, "alert_email": prov_email, "customer": cust_name,
            "contract": number, "change": row.change_type, "quantity": f"{row.quantity_before} -> {row.quantity_after}",
            "status": f"{row.status_before} -> {row.status_after}", "effective": row.effective_date,
            "provision_on": row.effective_date, "scheduled_for": row.effective_at,
        })
    sl = ScheduledLicenseChangeLog
    q2 = (
        select(sl, sub.name, sub.provider_subscription_id, sub.quantity, prov.name, prov.alert_email, cust.name, con.number)
        .join(sub, sub.id == sl.subscription_id)
        .join(prov, prov.id == sub.provider_id)
        .join(cust, cust.id == sub.customer_id)
        .join(con, con.id == sub.contract_id)
        .where(prov.kind == ProviderKind.MANUAL, sl.status.in_((SLCLStatus.PENDING, SLCLStatus.AWAITING_MERGE)))
        .order_by(sl.provision_on, sl.id)
    )
    if as_of is not None:
        q2 = q2.where(sl.provision_on <= as_of)
    for srow, sub_name, psid, qty, prov_name, prov_email, cust_name, number in session.execute(q2):
        items.append({
            "item": f"SLCL #{srow.id}", "key": f"slcl:{srow.id}", "lcl_id": None, "slcl_id": srow.id,
            "subscription_id": srow.subscription_id, "subscription": sub_name, "provider_subscription_id": psid,
            "provider": prov_name, "alert_email": prov_email, "customer": cust_name, "contract": number,
            "change": srow.action, "quantity": f"{qty} -> {srow.quantity if srow.quantity is not None else qty}",
            "status": srow.status, "effective": srow.effective_date, "provision_on": srow.provision_on,
            "scheduled_for": srow.scheduled_for,
        })
    return items


def alert_for(item: dict[str, Any]) -> Alert:
    subject = (f"Provision {item['change']} of {item['subscription']} for {item['customer']} at {item['provider']} "
               f"(effective {item['effective']})")
    body = "\n".join([
        f"{item['item']} awaits provisioning at the manual provider {item['provider']}.",
        f"Customer: {item['customer']} (contract {item['contract']})",
        f"Subscription: #{item['subscription_id']} {item['subscription']}"
        + (f" (provider id {item['provider_subscription_id']})" if item["provider_subscription_id"] else ""),
        f"Change: {item['change']}, quantity {item['quantity']}, status {item['status']}",
        f"Effective: {item['effective']} (scheduled for {item['scheduled_for']}); provision on {item['provision_on']}",
        "",
        "When it is done: w365 provisioning done " + (str(item["lcl_id"]) if item["lcl_id"] else f"<the LCL of SLCL #{item['slcl_id']}>"),
    ])
    return Alert(ALERT_KIND, item["key"], recipients(item["alert_email"]), subject, body,
                 {k: item[k] for k in ("lcl_id", "slcl_id", "subscription_id")})


def alert_pending(as_of: date, *, notifier: Notifier, now: datetime, engine: Any = None) -> dict[str, Any]:
    """Send one alert per item awaiting provisioning on ``as_of``, never twice."""
    with session_scope(engine) as s:
        items = pending_items(s, as_of)
    alerts: dict[str, Alert] = {}
    for item in items:
        alerts.setdefault(item["key"], alert_for(item))
    result = deliver(list(alerts.values()), notifier=notifier, now=now, session_scope=lambda: session_scope(engine))
    report = {"job": JOB, "as_of": as_of.isoformat(), "awaiting": len(alerts), **result}
    if result["failed"]:
        from w365.store.job_report import record_exceptions

        with session_scope(engine) as s:
            record_exceptions(s, JOB, as_of, "alert", result["failed"], cleared=result["sent"])
    return report


def alerted_keys(session: Session, keys: list[str]) -> dict[str, datetime]:
    out: dict[str, datetime] = {}
    for i in range(0, len(keys), 1000):
        for key, at in session.execute(
            select(AlertSent.dedup_key, AlertSent.sent_at).where(AlertSent.kind == ALERT_KIND, AlertSent.dedup_key.in_(keys[i : i + 1000]))
        ):
            out[key] = at
    return out


def pending_report(session: Session, as_of: date | None = None) -> list[dict[str, Any]]:
    """What ``w365 provisioning pending`` shows: the items, with when each was alerted."""
    items = pending_items(session, as_of)
    sent = alerted_keys(session, [i["key"] for i in items])
    for i in items:
        i["alerted_at"] = sent.get(i["key"])
    return items


def mark_provisioned(session: Session, lcl_id: int, *, at: datetime) -> LicenseChangeLog:
    """Record that people provisioned a manual LCL (provisioning status and time only)."""
    lcl = session.get(LicenseChangeLog, lcl_id)
    if lcl is None:
        raise NotFound(f"license change log #{lcl_id} does not exist")
    if lcl.provisioning_status != ProvisioningStatus.PENDING:
        raise W365Error(f"license change log #{lcl_id} is {lcl.provisioning_status.value}, not pending provisioning")
    lcl.provisioning_status = ProvisioningStatus.PROVISIONED
    lcl.provisioned_at = at
    session.flush()
    return lcl

