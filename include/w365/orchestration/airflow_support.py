"""What every catalogue DAG shares (issue 6, SPEC J1-J6): one place, so each file in ``dags/``
stays a short, readable TaskFlow DAG.

- ``dag_kwargs(dag_id)``: the ``@dag`` settings, all from :mod:`w365.orchestration.catalogue` (display name,
  description, doc_md, tags, owner, paused default, params) and its schedule in the tenant time
  zone (``[w365] timezone``; a job's cron from ``[w365] schedule_<dag_id>``).
- ``run_job`` (the task of most DAGs) and ``full_cycle_tasks`` (list, mapped shards, summary):
  always ``w365.orchestration.jobs.run(dag_id, as_of, **params)`` with ``as_of`` = the run's logical date (or
  ``run_after`` for a run without one), never the wall clock (SPEC J6).
- Retries with exponential backoff, the provider pool (``w365_provider_api``), the failure
  notifier (``[w365] failure_notifier``) and the Assets the sync jobs publish.

Parse-time budget: this module is imported by every DAG file while Airflow parses it, so it
imports only the standard library, pendulum, ``airflow.sdk``, ``w365.orchestration.catalogue``, ``w365.core.limits`` and
``w365.orchestration.trigger_guard`` (stdlib only). The billing code (SQLAlchemy, the store) is imported inside the functions that
tasks call.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import pendulum
from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    BaseNotifier,
    CronTriggerTimetable,
    ExceptionRetryPolicy,
    MultipleCronTriggerTimetable,
    Param,
    RetryAction,
    RetryRule,
    get_current_context,
    task,
)

from w365 import config
from w365.orchestration import catalogue, trigger_guard

from w365.core import limits

log = logging.getLogger(__name__)

PROVIDER_POOL = catalogue.PROVIDER_POOL  # created by scripts/start.sh and docker-compose's airflow-init
DEFAULT_SHARDS = 4
START_YEAR = 2024  # a fixed, tz-aware start date: no now()-based DAG arguments

# --------------------------------------------------------------------------------------------
# Assets (data-aware scheduling). Sync jobs publish what they refreshed; invoicing publishes the
# invoices. Consumers declare them as inlets (lineage in the UI); two consumers are also
# triggered by them, on top of their daily cron (see TRIGGERED_BY).

SUBSCRIPTIONS = Asset(name="w365_provider_subscriptions", uri="w365://provider/subscriptions", group="w365")
DAILY_USAGE = Asset(name="w365_provider_daily_usage", uri="w365://provider/usage/daily", group="w365")
USAGE = Asset(name="w365_provider_usage", uri="w365://provider/usage/final", group="w365")
PAYMENTS = Asset(name="w365_accounting_payments", uri="w365://accounting/payments", group="w365")
PRICES = Asset(name="w365_product_prices", uri="w365://pricelist/product_prices", group="w365")
INVOICES = Asset(name="w365_invoices", uri="w365://store/invoices", group="w365")

PUBLISHES: dict[str, list[Asset]] = {
    "sync_subscriptions_from_provider": [SUBSCRIPTIONS],
    "sync_daily_usage_data": [DAILY_USAGE],
    "sync_usage_data": [USAGE, INVOICES],  # usage invoices on the 1st of the month
    "update_payment_status": [PAYMENTS],
    "update_pricing_on_product_price": [PRICES],
    **{j.dag_id: [INVOICES] for j in catalogue.JOBS if j.kind in catalogue.INVOICING_KINDS},
}
READS: dict[str, list[Asset]] = {
    "update_metrics_on_billing_contract": [SUBSCRIPTIONS, USAGE],
    "azure_threshold_violation_alert": [DAILY_USAGE],
    "add_incentive_plan": [INVOICES], "send_invoices": [INVOICES],
    "update_payment_status": [INVOICES],
}
# Fresh data re-runs these (idempotent) jobs as well as their cron: a late sync still updates
# metrics and alerts the same day. Invoicing stays on its cron only: SPEC J4 bills at the start of
# the tenant's day, whatever the syncs do.
TRIGGERED_BY: dict[str, Any] = {
    "update_metrics_on_billing_contract": SUBSCRIPTIONS | USAGE,
    "azure_threshold_violation_alert": DAILY_USAGE,
}


def outlets(dag_id: str) -> list[Asset]:
    return list(PUBLISHES.get(dag_id, []))


def inlets(dag_id: str) -> list[Asset]:
    return list(READS.get(dag_id, []))


# --------------------------------------------------------------------------------------------
# Failure notification: one notifier, chosen by configuration when a task fails.


class FailureNotifier(BaseNotifier):
    """Tells people a w365 task failed (after its last retry).

    ``[w365] failure_notifier`` (``AIRFLOW__W365__FAILURE_NOTIFIER``): ``log`` (default) writes an
    ERROR line to the task log; ``smtp`` also mails ``[w365] failure_email`` through the SMTP
    provider's ``SmtpNotifier`` (connection ``[email] email_conn_id``, ``smtp_default``). Read at
    failure time, so changing it needs no DAG change and creates no DAG version.
    """

    def notify(self, context: Any) -> None:
        ti = context.get("ti") or context.get("task_instance")
        dag_id = getattr(ti, "dag_id", "?")
        task_id = getattr(ti, "task_id", "?")
        name = catalogue.BY_DAG_ID[dag_id].name if dag_id in catalogue.BY_DAG_ID else dag_id
        subject = f"[w365] {name} failed ({task_id}, as of {as_of_from(context)})"
        body = f"{subject}: {context.get('exception') or context.get('reason') or 'see the task log'}"
        log.error(body)
        kind = (config.setting("failure_notifier") or "log").strip().lower()
        if kind == "smtp":
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            to = config.setting("failure_email")
            if not to:
                log.error("[w365] failure_notifier = smtp but [w365] failure_email is not set: no mail sent")
                return
            SmtpNotifier(to=[a.strip() for a in to.split(",") if a.strip()], subject=subject, html_content=body)(context)
        elif kind != "log":
            log.error("unknown [w365] failure_notifier %r (log or smtp): logged only", kind)


# --------------------------------------------------------------------------------------------
# Retries, one layer per kind of failure (issue 14): a database's transient errors are redone by
# the job itself (w365.store.retry), HTTP 429/5xx and network errors by the HTTP client
# (w365.integrations.http: at most 6 attempts in about 5 minutes per request). The task does not
# retry either again; its own retries (2, from 1 minute) are for what neither layer sees (a worker
# lost, a process killed). A refusal meant for people (bad data, unknown record) fails at once.

FAIL_FAST = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception=["w365.errors.ValidationError", "w365.errors.NotFound", "w365.core.tenant_time.TenantTimeError"],
            action=RetryAction.FAIL,
            reason="a data problem: retrying cannot fix it; fix the data and clear the task",
        ),
        RetryRule(
            # Named by w365.errors, light to import: the policy is built when the DAG files parse.
            exception=["w365.errors.JobFailed", "w365.errors.ExternalError"],
            action=RetryAction.FAIL,
            reason="a provider or system stayed unreachable through the HTTP client's retries (or data needs fixing); "
                   "everything else was done; clear the task when it answers again (reruns are idempotent)",
        ),
    ],
)


def default_args(job: catalogue.Job) -> dict[str, Any]:
    args: dict[str, Any] = {
        "owner": catalogue.OWNER,
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=15),
        "retry_policy": FAIL_FAST,
        "on_failure_callback": FailureNotifier(),
    }
    if job.calls_provider:
        # The provider rate-limits (HTTP 429): every provider-calling task shares one pool; the
        # HTTP client is their retry layer (see FAIL_FAST above).
        args.update(pool=PROVIDER_POOL)
    return args


# --------------------------------------------------------------------------------------------
# The @dag arguments


def timetable(job: catalogue.Job) -> Any:
    """The job's cron(s) from the catalogue (or ``[w365] schedule_<dag_id>``) in the tenant zone.

    Several crons (Scheduled Update: 00:05 and 23:30, SPEC S6) make a MultipleCronTriggerTimetable;
    a named zone follows local wall-clock time across DST changes.
    """
    tz = config.timezone_name()
    crons = catalogue.schedule_for(job)
    if len(crons) == 1:
        table: Any = CronTriggerTimetable(crons[0], timezone=tz)
    else:
        table = MultipleCronTriggerTimetable(*crons, timezone=tz)
    if job.dag_id in TRIGGERED_BY:
        return AssetOrTimeSchedule(timetable=table, assets=TRIGGERED_BY[job.dag_id])
    return table


PARAM_SPECS: dict[str, dict[str, Any]] = {
    "advance_days": {
        "type": "integer", "minimum": 0, "maximum": limits.MAX_ADVANCE_DAYS, "title": "Advance days",
        "description": "Bill contracts whose next invoice date falls within this many days after the run date "
        "(SPEC J5: bill ahead).",
    },
    "dry_run": {
        "type": "boolean", "title": "Dry run (preview)",
        "description": "Plan the invoices and show them in the task log; write nothing.",
    },
    "contract": {
        # Nullable, default None: in Airflow 3's trigger form a param whose type excludes null is
        # required, and "" counts as missing, so a "string" param defaulting to "" kept "Trigger"
        # and "Run Backfill" disabled until a contract was typed (issue 13). Empty or None: every
        # due contract (w365.orchestration.jobs reads both the same way).
        "type": ["null", "string"], "title": "Contracts",
        "description": "Only these billing contracts: numbers separated by commas. Empty: every due contract.",
    },
}


def params(job: catalogue.Job) -> dict[str, Param]:
    """The job's catalogue params as Airflow Params. Every one is valid with its default, so the
    trigger and backfill forms can be submitted as they open (issue 13; tests/orchestration/test_dags.py)."""
    return {key: Param(default, **PARAM_SPECS.get(key, {})) for key, default in job.params.items()}


def dag_kwargs(dag_id: str) -> dict[str, Any]:
    """Everything ``@dag(...)`` needs for a catalogue job; nothing here changes between parses."""
    job = catalogue.get(dag_id)
    tz = config.timezone_name()
    return {
        "dag_id": job.dag_id,
        "dag_display_name": job.name,
        "description": job.description,
        "doc_md": catalogue.doc_md(job),
        "schedule": timetable(job),
        "start_date": pendulum.datetime(START_YEAR, 1, 1, tz=tz),
        "catchup": False,  # backfills are explicit: `airflow backfill create`
        "max_active_runs": 1,  # runs of a job apply in date order (contracts advance, SLCLs merge)
        "is_paused_upon_creation": job.paused_at_creation,
        "tags": list(job.tags),
        "default_args": default_args(job),
        "params": params(job),
    }


# --------------------------------------------------------------------------------------------
# At run time (inside tasks)


def as_of_from(context: Any) -> str:
    """The instant the run is bound to (SPEC J6): its logical date, or ``run_after`` for a run that
    has none (a manual or asset-triggered run). An ISO string; w365 turns it into the tenant date."""
    instant = context.get("logical_date")
    if instant is None:
        dag_run = context.get("dag_run")
        instant = getattr(dag_run, "run_after", None)
    if instant is None:
        raise ValueError("the task context has neither a logical date nor run_after")
    return pendulum.instance(instant).in_timezone("UTC").isoformat() if isinstance(instant, datetime) else str(instant)


def check_timezone(context: Any) -> str:
    """The DAG's schedule zone must be the billing store's tenant zone: otherwise a run at the
    tenant's midnight would fall on the wrong tenant date. Returns the zone."""
    from airflow.sdk.exceptions import AirflowFailException

    from w365.orchestration import jobs

    dag = context["dag"]
    scheduled = getattr(dag.timezone, "name", str(dag.timezone))
    tenant = jobs.tenant_timezone()
    if scheduled != tenant:
        raise AirflowFailException(
            f"time zone mismatch: {dag.dag_id} is scheduled in {scheduled} ([w365] timezone, "
            f"AIRFLOW__W365__TIMEZONE) but the billing store's tenant is in {tenant}. Runs would start at the "
            f"wrong local midnight. Set [w365] timezone = {tenant} (or `w365 tenant set --timezone {scheduled}`), "
            "let the DAGs re-parse, then clear this run."
        )
    return tenant


# A run dated in the future never starts in Airflow and blocks the job (max_active_runs=1): the
# api-server refuses such triggers (w365.orchestration.trigger_guard); a run that gets to its first task anyway
# (`airflow dags test`, dag.test(), a trigger that bypassed the api-server) is refused there.


def check_not_future(context: Any, now: datetime | None = None) -> None:
    """Fail the run at once (no retry) if its logical date is in the future, naming both (issue 13)."""
    from airflow.sdk.exceptions import AirflowFailException

    instant = context.get("logical_date")
    if instant is None:  # bound to run_after, which Airflow waits for before starting the run
        return
    # parse() (not exact) gives a DateTime for a date or a date-time, what a logical date is.
    logical = pendulum.instance(instant) if isinstance(instant, datetime) else cast(datetime, pendulum.parse(str(instant)))
    # The one wall-clock read of a task: a guard, never what is billed (that is the logical date).
    current = pendulum.instance(now) if now is not None else pendulum.now("UTC")
    if trigger_guard.is_future(logical, current):
        dag_id = str(getattr(context.get("dag"), "dag_id", None) or getattr(context.get("ti"), "dag_id", "this job"))
        raise AirflowFailException(trigger_guard.future_refusal(dag_id, logical, current))


def check_run(context: Any) -> str:
    """What the first task of every run checks before any work: a logical date that has come, and
    the schedule's zone equal to the billing store's tenant zone. Returns the zone."""
    check_not_future(context)
    return check_timezone(context)


def job_params(dag_id: str, context: Any) -> dict[str, Any]:
    """The run's values of the job's catalogue params (defaults unless a manual trigger set them)."""
    job = catalogue.get(dag_id)
    given = context.get("params") or {}
    return {k: given[k] if k in given else default for k, default in job.params.items()}


KEEP_INVOICE_NUMBERS = 50


def compact(result: dict[str, Any]) -> dict[str, Any]:
    """A job report small enough for XCom: invoice and draft lists are logged, counted and cut."""
    out = dict(result)
    invoices = out.get("invoices")
    if isinstance(invoices, list):
        for inv in invoices:
            log.info("invoice %s", inv)
        out["invoice_count"] = len(invoices)
        totals: dict[str, Decimal] = {}
        for inv in invoices:
            if isinstance(inv, dict) and inv.get("currency") and inv.get("total") is not None:
                totals[inv["currency"]] = totals.get(inv["currency"], Decimal(0)) + Decimal(str(inv["total"]))
        out["totals"] = {cur: str(t) for cur, t in sorted(totals.items())}
        out["invoices"] = [i.get("number") if isinstance(i, dict) else i for i in invoices[:KEEP_INVOICE_NUMBERS]]
    drafts = out.get("drafts")
    if isinstance(drafts, list):
        for d in drafts:
            log.info("draft (dry run, not written): %s %s %s..%s %s %s", d.get("contract"), d.get("kind"),
                     d.get("period_from"), d.get("period_to"), d.get("currency"), d.get("total"))
            for ln in d.get("lines") or []:
                log.info("    %s: %s x %s = %s", ln.get("description"), ln.get("quantity"), ln.get("unit_price"), ln.get("amount"))
        out["draft_count"] = len(drafts)
        out.pop("drafts")
    return out


def fail_on_skipped(dag_id: str, reports: list[dict[str, Any]]) -> None:
    """An invoicing run that skipped contracts fails loudly (after billing the rest): finance must
    not miss an invoice silently. Reasons are in the log and in the store's job exceptions."""
    from airflow.sdk.exceptions import AirflowFailException

    skipped = [s for r in reports for s in r.get("skipped") or []]
    if not skipped:
        return
    lines = "; ".join(f"{s.get('contract')}: {s.get('reason')}" for s in skipped[:20])
    more = f" (+{len(skipped) - 20} more)" if len(skipped) > 20 else ""
    raise AirflowFailException(
        f"{dag_id}: {len(skipped)} contract(s) not billed: {lines}{more}. The others were billed. Fix the data "
        "(the reasons are also in the billing store's job_exception table), then clear this run: it bills only "
        "what is still due."
    )


def run_job(dag_id: str, **fixed: Any) -> dict[str, Any]:
    """The one task of most catalogue DAGs: ``jobs.run(dag_id, as_of, **params)``; ``fixed`` params win (a task's part)."""
    from w365.orchestration import jobs

    context = get_current_context()
    check_run(context)
    as_of = as_of_from(context)
    result = compact(jobs.run(dag_id, as_of, **{**job_params(dag_id, context), **fixed}))
    if catalogue.get(dag_id).kind in catalogue.INVOICING_KINDS and not result.get("dry_run"):
        fail_on_skipped(dag_id, [result])
    return result


# Full-cycle invoicing, scaled out: list -> one mapped task per shard -> summary.


def full_cycle_tasks(dag_id: str) -> Any:
    """The tasks of a full-cycle invoicing DAG (call it inside the ``@dag`` function):
    ``list_due_contracts`` -> ``invoice_shard.expand(contract_ids=...)`` -> ``summarise``.
    Dynamic task mapping makes one task instance per shard, so on the CeleryExecutor the shards
    run on several workers at once."""

    @task
    def list_due_contracts():  # type: ignore[no-untyped-def]
        """Ids of the contracts due (next invoice date <= run date + advance days), in shards."""
        return list_shards(dag_id)

    @task(map_index_template="{{ w365_shard }}")
    def invoice_shard(contract_ids):  # type: ignore[no-untyped-def]
        """Bill one shard of contracts for their coming period(s); idempotent on its own."""
        return bill_shard(dag_id, contract_ids)

    @task(trigger_rule="none_failed", outlets=outlets(dag_id))
    def summarise(reports):  # type: ignore[no-untyped-def]
        """Invoices, lines and totals per currency; fails if a contract was skipped."""
        return summarise_invoicing(dag_id, reports)

    return summarise(invoice_shard.expand(contract_ids=list_due_contracts()))


def invoice_shards() -> int:
    value = config.setting("invoice_shards")
    return max(1, int(value)) if value else DEFAULT_SHARDS


def list_shards(dag_id: str) -> list[list[int]]:
    """The contracts due for this run, split into ``[w365] invoice_shards`` lists of ids."""
    from w365.orchestration import jobs

    context = get_current_context()
    check_run(context)
    p = job_params(dag_id, context)
    frequency = catalogue.get(dag_id).frequency or ""
    shards = jobs.due_contract_shards(frequency, as_of_from(context), p.get("advance_days", 0), shards=invoice_shards(), contract=p.get("contract", ""))
    log.info("%s: %d contract(s) due in %d shard(s)", dag_id, sum(map(len, shards)), len(shards))
    return shards


def bill_shard(dag_id: str, contract_ids: list[int]) -> dict[str, Any]:
    """Bill one shard. Idempotent on its own: the dispatcher re-checks each contract under a lock
    and the store's unique keys refuse a second invoice for the same contract and period."""
    from w365.orchestration import jobs

    context = get_current_context()
    if contract_ids:
        context["w365_shard"] = f"{len(contract_ids)} contracts #{contract_ids[0]}..#{contract_ids[-1]}"  # type: ignore[typeddict-unknown-key]
    p = job_params(dag_id, context)
    p.pop("contract", None)  # the listing applied it; the shard is the filter now
    return compact(jobs.run(dag_id, as_of_from(context), contract_ids=list(contract_ids), **p))


def summarise_invoicing(dag_id: str, reports: Any) -> dict[str, Any]:
    """Counts and totals per currency over the shards; fails if any contract was skipped."""
    # One slice reads every shard's XCom at once (iterating would probe past the end).
    reports = [r for r in (reports[:] if reports is not None else []) if r]
    totals: dict[str, Decimal] = {}
    for r in reports:
        for cur, total in (r.get("totals") or {}).items():
            totals[cur] = totals.get(cur, Decimal(0)) + Decimal(total)
    summary = {
        "shards": len(reports),
        "contracts_considered": sum(r.get("contracts_considered", 0) for r in reports),
        "invoices": sum(r.get("invoice_count", 0) for r in reports),
        "lines": sum(r.get("lines", 0) for r in reports),
        "totals": {cur: str(t) for cur, t in sorted(totals.items())},
        "drafts": sum(r.get("draft_count", 0) for r in reports),
        "skipped": [s for r in reports for s in r.get("skipped") or []],
        "dry_run": any(r.get("dry_run") for r in reports),
    }
    log.info("%s: %s", dag_id, summary)
    if not summary["dry_run"]:
        fail_on_skipped(dag_id, reports)
    return summary
