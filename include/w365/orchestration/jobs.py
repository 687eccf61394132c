"""Entry points of the catalogue jobs: ``fn(as_of, **params) -> dict`` (JSON-able, for XCom).

DAG tasks and ``w365 run DAG_ID --as-of DATE`` call the same functions, so a job can be debugged
without Airflow. ``as_of`` is the run's logical date (an instant, SPEC J6) or a tenant-local
date; nothing here reads the wall clock.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time
from functools import partial
from typing import Any, Callable

from w365.orchestration import catalogue

from w365.core import tenant_time

log = logging.getLogger(__name__)

AsOf = datetime | date | str


def tenant_timezone() -> str:
    from w365.store.session import session_scope
    from w365.billing.subscriptions import get_tenant

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


def full_cycle_invoice(frequency: str, as_of: AsOf, advance_days: int | str = 0, dry_run: bool | str = False, contract: Any = "",
                       contract_ids: list[int] | None = None) -> dict[str, Any]:
    """Generate Full Cycle Invoice - Monthly, Quarterly or Annual Contracts."""
    from w365.billing.invoicing.dispatcher import generate_full_cycle_invoices

    report = generate_full_cycle_invoices(
        frequency, as_of_date(as_of), int(advance_days or 0), contracts=_contracts(contract),
        contract_ids=contract_ids, dry_run=_flag(dry_run),
    )
    return report.to_dict()


def change_log_invoice(frequency: str, as_of: AsOf, dry_run: bool | str = False, contract: Any = "") -> dict[str, Any]:
    """Generate Change Log Invoice - Monthly, Quarterly or Annual Contracts."""
    from w365.billing.invoicing.dispatcher import generate_change_log_invoices

    return generate_change_log_invoices(frequency, as_of_date(as_of), contracts=_contracts(contract), dry_run=_flag(dry_run)).to_dict()


def due_contract_shards(frequency: str, as_of: AsOf, advance_days: int | str = 0, shards: int = 4, contract: Any = "") -> list[list[int]]:
    """Split the contracts due for a full-cycle run into ``shards`` lists (scale-out, issue 6)."""
    from datetime import timedelta

    from w365.store.session import session_scope
    from w365.billing.invoicing.loader import due_contract_ids

    horizon = as_of_date(as_of) + timedelta(days=int(advance_days or 0))
    with session_scope() as s:
        ids = due_contract_ids(s, frequency, horizon, _contracts(contract))
    n = max(1, min(int(shards), len(ids)))
    return [ids[i::n] for i in range(n)] if ids else []


# --------------------------------------------------------------------------------------------
# Scheduled Update (SPEC C6)


def scheduled_update(as_of: AsOf) -> dict[str, Any]:
    from w365.billing.scheduled_changes import merge_due_slcls

    return merge_due_slcls(as_of_instant(as_of)).to_dict()


# --------------------------------------------------------------------------------------------
# Integrations and contract lifecycle (issue 5: SPEC J1, P1-P4, S3, B3, C2). The logic lives in
# w365.integrations.sync, w365.usage, w365.integrations.provisioning, w365.integrations.payments, w365.integrations.price_lists, w365.operations.renewals,
# w365.operations.metrics and w365.operations.incentives; docs/integrations.md describes each job. Record-level
# problems are reported (job_exception + the report) and the job succeeds; a provider or system
# that cannot be read at all, or a contract whose usage cannot be invoiced, fails the job (after
# everything else was done and committed) so Airflow retries it and ops see it.

from datetime import timedelta  # noqa: E402 - kept in this section

from w365.errors import JobFailed  # noqa: E402


REPORT_LIMIT = 100


def _audit_now() -> datetime:
    """Wall-clock time for audit columns only (created_at, synced_at, sent_at), never for what a
    job does: that is decided by ``as_of`` (SPEC J6)."""
    from datetime import timezone

    return datetime.now(timezone.utc)


def _date_param(value: Any) -> date | None:
    if value in (None, ""):
        return None
    return value if isinstance(value, date) else date.fromisoformat(str(value).strip()[:10])


def _cap(report: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Keep a report small enough for XCom: long lists and dicts are cut, their size kept."""
    for key in keys:
        value = report.get(key)
        if isinstance(value, (list, dict)) and len(value) > REPORT_LIMIT:
            report[f"{key}_count"] = len(value)
            report[key] = value[:REPORT_LIMIT] if isinstance(value, list) else dict(list(value.items())[:REPORT_LIMIT])
        elif isinstance(value, (list, dict)):
            report[f"{key}_count"] = len(value)
    return report


def _finish(report: dict[str, Any], *keys: str) -> dict[str, Any]:
    failed = report.get("failed_providers") or {}
    unbilled = (report.get("billing") or {}).get("skipped") or {}
    _cap(report, "problems", *keys)
    if failed or unbilled:
        what = []
        if failed:
            what.append(f"{len(failed)} provider(s) could not be read (" + "; ".join(f"{k}: {v}" for k, v in failed.items()) + ")")
        if unbilled:  # like the invoicing jobs: finance must not miss an invoice silently
            items = list(unbilled.items())
            what.append(f"{len(items)} contract(s) not invoiced for usage (" + "; ".join(f"{k}: {v}" for k, v in items[:20]) + ")")
        raise JobFailed(f"{report.get('job')} as of {report.get('as_of')}: {' and '.join(what)}. "
                        "Everything else was done and recorded (reasons also in job_exception); fix and rerun: it is safe.")
    return report


def sync_subscriptions_from_provider(as_of: AsOf) -> dict[str, Any]:
    """Sync Subscriptions From Provider to Tenant (w365.integrations.sync)."""
    from w365.integrations.sync import sync_subscriptions

    report = sync_subscriptions(as_of_date(as_of), now=_audit_now())
    for p in report["providers"]:
        _cap(p, "changed", "created", "quarantined", "customers_failed")
    return _finish(report)


def sync_daily_usage_data(as_of: AsOf, day: Any = None) -> dict[str, Any]:
    """Sync Daily Usage Data (interim, not billed) for ``day`` (default: the day before as_of)."""
    from w365.integrations.usage_sync import sync_usage

    run_date = as_of_date(as_of)
    report = sync_usage("interim", _date_param(day) or run_date - timedelta(days=1), as_of=run_date, now=_audit_now())
    for p in report["providers"]:
        _cap(p, "held_back")
    return _finish(report)


def sync_usage_data(as_of: AsOf, day: Any = None, month: Any = None, bill: bool | str = True) -> dict[str, Any]:
    """Sync Usage Data (final) for ``day`` (default: the day before); on the 1st of a month (or
    for ``month`` = YYYY-MM) invoice the month before's usage."""
    from w365.integrations.usage_sync import sync_final_usage

    month_date = date.fromisoformat(f"{str(month).strip()[:7]}-01") if month not in (None, "") else None
    report = sync_final_usage(as_of_date(as_of), day=_date_param(day), bill_month=month_date, bill=_flag(bill), now=_audit_now())
    for p in report["providers"]:
        _cap(p, "held_back")
    if "billing" in report:
        _cap(report["billing"], "invoices", "skipped")
    return _finish(report)


def azure_threshold_violation_alert(as_of: AsOf, notifier: str | None = None) -> dict[str, Any]:
    """Azure Threshold Violation Alert: 80% and 100% of each usage subscription's monthly threshold."""
    from w365.notify import get_notifier
    from w365.operations.usage_alerts import alert_thresholds

    return _finish(alert_thresholds(as_of_date(as_of), notifier=get_notifier(notifier), now=_audit_now()), "sent")


def sync_subscriptions_to_provider_manual(as_of: AsOf, notifier: str | None = None) -> dict[str, Any]:
    """Sync Subscriptions From Tenant to Provider - Manual: one alert per change awaiting provisioning."""
    from w365.notify import get_notifier
    from w365.integrations.provisioning import alert_pending

    report = alert_pending(as_of_date(as_of), notifier=get_notifier(notifier), now=_audit_now())
    report["problems"] = report.get("failed", {})
    return _finish(report, "sent")


def update_payment_status(as_of: AsOf, path: str | None = None) -> dict[str, Any]:
    """Update Payment Status of Invoice from Accounting System (file or REST adapter)."""
    from w365.store.session import session_scope
    from w365.integrations.payments import JOB, source_for, update_payments

    from w365.connections import ConnectionNotFound

    run_date = as_of_date(as_of)
    try:
        source = source_for(path or None)
    except ConnectionNotFound:
        log.warning("%s: no accounting system configured (connection w365_accounting or param path): nothing done", JOB)
        return {"job": JOB, "as_of": run_date.isoformat(), "status": "not configured: set connection w365_accounting or param path"}
    try:
        with session_scope() as s:
            result = update_payments(s, source, run_date)
    finally:
        source.close()
    return _finish({"job": JOB, "as_of": run_date.isoformat(), **result.to_dict()}, "updated")


def send_invoices(as_of: AsOf, lookback_days: int | str = 30, channel: str = "all") -> dict[str, Any]:
    """Send Invoices (issue 16, I20-I29): e-mail and accounting export of the invoices issued in
    the last ``lookback_days`` days; ``channel`` email, accounting or all (the DAG runs each in its
    own task). A channel whose connection is not defined is reported as not configured."""
    from w365.connections import ConnectionNotFound
    from w365.integrations import delivery
    from w365.integrations.accounting import accounting_for
    from w365.integrations.mail import Mailer
    from w365.store.models import DeliveryChannel
    from w365.store.session import session_scope

    run_date, days, now = as_of_date(as_of), int(lookback_days), _audit_now()
    report: dict[str, Any] = {"job": delivery.JOB, "as_of": run_date.isoformat()}
    failed: dict[str, str] = {}
    if channel in ("all", "email"):
        try:
            mailer = Mailer.from_connection()
        except ConnectionNotFound as exc:
            report["email"] = {"status": f"not configured: {exc}"}
        else:
            sent = delivery.deliver_pending(session_scope, DeliveryChannel.EMAIL,
                                            lambda n: delivery.email_invoice(session_scope, mailer, n, now=now), run_date, days)
            report["email"] = _cap(sent.to_dict(), "sent", "problems", "failed")
            failed.update({f"e-mail {k}": v for k, v in sent.failed.items()})
    if channel in ("all", "accounting"):
        try:
            system = accounting_for()
        except ConnectionNotFound as exc:
            report["accounting"] = {"status": f"not configured: {exc}"}
        else:
            try:
                exported = delivery.deliver_pending(session_scope, DeliveryChannel.ACCOUNTING,
                                                    lambda n: delivery.export_invoice(session_scope, system, n, now=now), run_date, days)
            finally:
                system.close()
            report["accounting"] = _cap(exported.to_dict(), "sent", "problems", "failed")
            failed.update({f"export {k}": v for k, v in exported.failed.items()})
    if failed:  # after everything else was sent and recorded; the next run (or a cleared task) retries
        items = list(failed.items())
        raise JobFailed(f"{delivery.JOB} as of {run_date}: {len(items)} delivery(ies) failed (" + "; ".join(f"{k}: {v}" for k, v in items[:20])
                        + "). The rest was sent and recorded (reasons also in job_exception); the failed ones stay pending for the next run.")
    return report


def update_pricing_on_product_price(as_of: AsOf, path: str | None = None) -> dict[str, Any]:
    """Update Pricing on Product Price from the price list (param ``path`` or connection w365_price_list)."""
    from w365.store.session import session_scope
    from w365.integrations.price_lists import JOB, price_list_path, update_pricing

    run_date = as_of_date(as_of)
    file = price_list_path(path or None)
    if file is None:
        log.warning("%s: no price list configured (connection w365_price_list or param path): nothing loaded", JOB)
        return {"job": JOB, "as_of": run_date.isoformat(), "status": "not configured: set connection w365_price_list or param path"}
    with session_scope() as s:
        result = update_pricing(s, file, run_date, now=_audit_now())
    report = {"job": JOB, "as_of": run_date.isoformat(), **result.to_dict()}
    report["problems"] = {**result.bad_rows, **result.conflicts}
    return _finish(report, "bad_rows")


def auto_renew_billing_contract(as_of: AsOf) -> dict[str, Any]:
    """Auto Renew Billing Contract: renew auto-renewing contracts past their end, expire the rest."""
    from w365.operations.renewals import auto_renew

    return _finish(auto_renew(as_of_date(as_of), now=_audit_now()), "renewed", "expired")


def update_metrics_on_billing_contract(as_of: AsOf) -> dict[str, Any]:
    """Update Metrics On Billing Contract: MRR and ACV per contract, with a dated snapshot."""
    from w365.operations.metrics import update_metrics

    return _finish(update_metrics(as_of_date(as_of), now=_audit_now()))


def add_incentive_plan(as_of: AsOf, commission_rate: Any = None) -> dict[str, Any]:
    """Add Incentive Plan: commission per salesperson from the period's invoiced revenue and margin."""
    from w365.store.session import session_scope
    from w365.operations.incentives import add_incentive_plans
    from w365.operations.incentives import commission_rate as rate_of

    run_date = as_of_date(as_of)
    rate = rate_of(commission_rate)
    with session_scope() as s:
        report = add_incentive_plans(s, run_date, rate=rate, now=_audit_now())
    return _cap(report, "plans")


# --------------------------------------------------------------------------------------------


def function_for(dag_id: str) -> Callable[..., dict[str, Any]]:
    """The entry point of a catalogue job, ``fn(as_of, **params)`` (the frequency bound for
    invoicing jobs)."""
    job = catalogue.get(dag_id)
    fn = ENTRY_POINTS[job.kind]
    return partial(fn, job.frequency) if job.frequency else fn


def _contract_numbers(value: Any, what: str) -> str:
    from w365.core import limits
    from w365.store.models import BillingContract

    for number in str(value).split(","):
        limits.text(number.strip(), what, limits.column_length(BillingContract.number))
    return str(value)


def _commission_rate(value: Any, what: str) -> Any:
    from decimal import Decimal

    from w365.core import limits

    return limits.decimal(value, what, 6, Decimal(1))


def _short_text(value: Any, what: str) -> str:
    from w365.core import limits

    return limits.text(str(value), what, 4096)


def _channel(value: Any, what: str) -> str:
    from w365.core import limits

    if str(value).strip() not in ("all", "email", "accounting"):
        raise limits.BadValue(what, f"{limits.show(value)} is not all, email or accounting")
    return str(value).strip()


def _param_checks() -> dict[str, Callable[[Any, str], Any]]:
    """How each job param given as text (``w365 run --param KEY=VALUE``) is checked and read."""
    from w365.core import limits

    return {
        "advance_days": limits.advance_days, "dry_run": limits.flag, "bill": limits.flag, "contract": _contract_numbers,
        "day": limits.day, "month": lambda v, w: limits.month(v, w).isoformat()[:7], "commission_rate": _commission_rate,
        "notifier": _short_text, "path": _short_text, "lookback_days": limits.advance_days,
        "channel": _channel,
    }


INTERNAL_PARAMS = ("contract_ids",)  # passed by the DAGs' shards, never typed by people


def param_names(dag_id: str) -> list[str]:
    """The params a job's function takes (besides ``as_of``)."""
    import inspect

    names = list(inspect.signature(function_for(dag_id)).parameters)[1:]
    return [n for n in names if n not in INTERNAL_PARAMS]


def check_params(dag_id: str, pairs: list[tuple[str, str]], prefix: str = "") -> dict[str, Any]:
    """Job params given as text, checked before anything runs (issue 12): an unknown param, one
    given twice or a bad value is a :class:`~w365.errors.UsageError` naming it."""
    from w365.core import limits
    from w365.errors import UsageError

    known = param_names(dag_id)
    checks = _param_checks()
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key not in known:
            takes = f"it takes {', '.join(known)}" if known else "it takes none"
            raise UsageError(f"{prefix}job {dag_id} has no param {limits.show(key)}; {takes}")
        if key in out:
            raise UsageError(f"{prefix}param {key} is given twice")
        check = checks.get(key, _short_text)
        try:
            out[key] = check(value, key)
        except limits.BadValue as exc:
            raise UsageError(f"{prefix}{exc}") from None
    return out


def run(dag_id: str, as_of: AsOf, **params: Any) -> dict[str, Any]:
    """Run one catalogue job's function for ``as_of`` (what ``w365 run`` does)."""
    log.info("running %s as of %s with %s", dag_id, as_of, params or "no params")
    return function_for(dag_id)(as_of, **params)


# Every catalogue kind's entry point, listed (tests/orchestration/test_all_jobs_run.py checks
# that each catalogue job has one and that nothing else is listed).
ENTRY_POINTS: dict[catalogue.JobKind, Callable[..., dict[str, Any]]] = {
    catalogue.JobKind.FULL_CYCLE_INVOICE: full_cycle_invoice,
    catalogue.JobKind.CHANGE_LOG_INVOICE: change_log_invoice,
    catalogue.JobKind.SCHEDULED_UPDATE: scheduled_update,
    catalogue.JobKind.SYNC_SUBSCRIPTIONS_FROM_PROVIDER: sync_subscriptions_from_provider,
    catalogue.JobKind.SYNC_DAILY_USAGE_DATA: sync_daily_usage_data,
    catalogue.JobKind.SYNC_USAGE_DATA: sync_usage_data,
    catalogue.JobKind.AZURE_THRESHOLD_VIOLATION_ALERT: azure_threshold_violation_alert,
    catalogue.JobKind.SYNC_SUBSCRIPTIONS_TO_PROVIDER_MANUAL: sync_subscriptions_to_provider_manual,
    catalogue.JobKind.UPDATE_PAYMENT_STATUS: update_payment_status,
    catalogue.JobKind.UPDATE_PRICING_ON_PRODUCT_PRICE: update_pricing_on_product_price,
    catalogue.JobKind.AUTO_RENEW_BILLING_CONTRACT: auto_renew_billing_contract,
    catalogue.JobKind.UPDATE_METRICS_ON_BILLING_CONTRACT: update_metrics_on_billing_contract,
    catalogue.JobKind.ADD_INCENTIVE_PLAN: add_incentive_plan,
    catalogue.JobKind.SEND_INVOICES: send_invoices,
}
