"""The job catalogue (SPEC J1): the one source of truth for every scheduled job.

DAG files, ``w365 jobs list``, ``w365 run`` and the Scheduled Jobs page all read this list.
It imports nothing heavy (stdlib only), so DAG files can import it at parse time.

Ops change the tenant time zone and any job's cron in one place, Airflow's configuration,
section ``[w365]`` (``airflow.cfg`` or the equivalent environment variables), never in DAG code:

    [w365]
    timezone = America/Los_Angeles
    schedule_generate_full_cycle_invoice_monthly = 30 0 * * *
    schedule_scheduled_update = 5 0 * * *; 30 23 * * *

Environment form: ``AIRFLOW__W365__TIMEZONE``, ``AIRFLOW__W365__SCHEDULE_<DAG_ID>``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from w365.config import setting, timezone_name

OWNER = "billing-ops"

TAG_INVOICING = "invoicing"
TAG_SYNC = "sync"
TAG_METRICS = "metrics"
TAG_PROVISIONING = "provisioning"

PROVIDER_POOL = "w365_provider_api"


class JobKind(StrEnum):
    """What a job does. ``w365.orchestration.jobs.ENTRY_POINTS`` maps each kind to its entry
    point; the three invoicing frequencies share a kind and differ by ``Job.frequency``."""

    FULL_CYCLE_INVOICE = "full_cycle_invoice"
    CHANGE_LOG_INVOICE = "change_log_invoice"
    SCHEDULED_UPDATE = "scheduled_update"
    ADD_INCENTIVE_PLAN = "add_incentive_plan"
    AUTO_RENEW_BILLING_CONTRACT = "auto_renew_billing_contract"
    AZURE_THRESHOLD_VIOLATION_ALERT = "azure_threshold_violation_alert"
    SYNC_DAILY_USAGE_DATA = "sync_daily_usage_data"
    SYNC_SUBSCRIPTIONS_FROM_PROVIDER = "sync_subscriptions_from_provider"
    SYNC_SUBSCRIPTIONS_TO_PROVIDER_MANUAL = "sync_subscriptions_to_provider_manual"
    SYNC_USAGE_DATA = "sync_usage_data"
    UPDATE_METRICS_ON_BILLING_CONTRACT = "update_metrics_on_billing_contract"
    UPDATE_PAYMENT_STATUS = "update_payment_status"
    UPDATE_PRICING_ON_PRODUCT_PRICE = "update_pricing_on_product_price"
    SEND_INVOICES = "send_invoices"


INVOICING_KINDS = (JobKind.FULL_CYCLE_INVOICE, JobKind.CHANGE_LOG_INVOICE)


@dataclass(frozen=True)
class Job:
    dag_id: str
    name: str  # the catalogue name, shown as the DAG's display name
    description: str  # the catalogue's description
    schedule: str  # default cron(s) in tenant time; several separated by ';'
    recommended: str  # the seed's "Recommended Schedule"
    tags: tuple[str, ...]
    kind: JobKind  # its entry point: w365.orchestration.jobs.ENTRY_POINTS[kind](as_of, **params)
    reads: str
    writes: str
    rerun: str
    paused_at_creation: bool = False
    calls_provider: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    frequency: str | None = None  # invoicing jobs: monthly, quarterly or annual contracts

    @property
    def crons(self) -> list[str]:
        return [c.strip() for c in self.schedule.split(";") if c.strip()]


# ``contract`` defaults to None ("every due contract"): Airflow's trigger form treats a string
# param whose value is "" and whose type does not allow null as required, and would keep
# "Trigger" and "Run Backfill" disabled until someone typed a contract (issue 13).
_FC_PARAMS = {"advance_days": 0, "dry_run": False, "contract": None}
_FC_RERUN = (
    "Safe. One full-cycle invoice per contract and period (a unique key in the store); a rerun "
    "or backfill for the same date finds the invoices made and adds nothing."
)
_CL_RERUN = (
    "Safe. Lines are the difference between what the change logs say and what was billed; a "
    "rerun finds no difference and writes nothing."
)


def _full_cycle(freq: str, extra: str = "") -> Job:
    title = freq.capitalize()
    return Job(
        dag_id=f"generate_full_cycle_invoice_{freq}",
        name=f"Generate Full Cycle Invoice - {title} Contracts",
        description=f"Generates a full cycle Invoice for {title} Contracts",
        schedule="15 0 * * *",
        recommended="Daily",
        tags=(TAG_INVOICING,),
        kind=JobKind.FULL_CYCLE_INVOICE,
        frequency=freq,
        reads=f"{title} billing contracts due on the run date (next invoice date <= date + advance days){extra}, "
        "their subscriptions, license change logs and pending scheduled changes.",
        writes="Invoices (kind full_cycle) with their lines; advances each contract's next invoice date.",
        rerun=_FC_RERUN,
        params=dict(_FC_PARAMS, advance_days=30 if freq == "annual" else 0),
    )


def _change_log(freq: str, paused: bool = False) -> Job:
    title = freq.capitalize()
    return Job(
        dag_id=f"generate_change_log_invoice_{freq}",
        name=f"Generate Change Log Invoice - {title} Contracts",
        description=(
            f"Generates a Change Log Invoice for {title} Contracts"
            if paused
            else f"Generates a Change Log Invoice automatically for {title} Contracts"
        ),
        schedule="30 0 * * 1",
        recommended="Keep this Off" if paused else ("Weekly or Monthly" if freq == "annual" else "Weekly"),
        tags=(TAG_INVOICING,),
        kind=JobKind.CHANGE_LOG_INVOICE,
        frequency=freq,
        reads=f"{title} contracts set to bill changes immediately; license change logs not yet billed "
        "whose effect falls in an already-billed period.",
        writes="Invoices (kind change_log) with charge and credit lines for the remaining days.",
        rerun=_CL_RERUN,
        paused_at_creation=paused,
        params={"dry_run": False, "contract": None},
    )


JOBS: tuple[Job, ...] = (
    Job(
        dag_id="add_incentive_plan",
        name="Add Incentive Plan",
        description="If you are using Incentives for Sales Commission Calculations this job will create the Incentive Plans",
        schedule="0 5 * * *",
        recommended="Daily",
        tags=(TAG_METRICS,),
        kind=JobKind.ADD_INCENTIVE_PLAN,
        reads="Invoices issued in the period, their lines and the subscriptions' cost prices.",
        writes="One incentive plan per salesperson, period and currency.",
        rerun="Safe. A plan is keyed by salesperson and period and recomputed in place.",
    ),
    Job(
        dag_id="auto_renew_billing_contract",
        name="Auto Renew Billing Contract",
        description="Updates the Billing Contract status for renewals to manage the Auto-Renew",
        schedule="0 0 * * *",
        recommended="Daily",
        tags=(TAG_INVOICING,),
        kind=JobKind.AUTO_RENEW_BILLING_CONTRACT,
        reads="Billing contracts whose term ends before the run date.",
        writes="Renewed terms (reopening the quantity-reduction window) or expired contracts with "
        "deactivation change logs for their subscriptions.",
        rerun="Safe. A contract already renewed past the date is left alone.",
    ),
    Job(
        dag_id="azure_threshold_violation_alert",
        name="Azure Threshold Violation Alert",
        description="Sends an Alert when the Azure threshold on usage subscription is breached",
        schedule="0 7 * * *",
        recommended="Daily",
        tags=(TAG_SYNC, TAG_METRICS),
        kind=JobKind.AZURE_THRESHOLD_VIOLATION_ALERT,
        reads="Month-to-date usage of usage subscriptions that have a threshold.",
        writes="Alerts at 80% and 100% of the threshold, once each per month.",
        rerun="Safe. Alerts already sent are recorded and not sent again.",
    ),
    _change_log("annual"),
    _change_log("quarterly"),
    _change_log("monthly", paused=True),
    _full_cycle("annual", extra=" (annual, triennial and custom cadences)"),
    _full_cycle("monthly"),
    _full_cycle("quarterly"),
    Job(
        dag_id="sync_daily_usage_data",
        name="Sync Daily Usage Data From Provider to Tenant",
        description="Syncs the daily (interim) data for Usage based subscriptions",
        schedule="0 4 * * *",
        recommended="Daily",
        tags=(TAG_SYNC,),
        kind=JobKind.SYNC_DAILY_USAGE_DATA,
        reads="Azure usage line items for the day from each provider.",
        writes="Interim usage records for the day (not billed).",
        rerun="Safe. Re-syncing a day replaces that day's records.",
        calls_provider=True,
    ),
    Job(
        dag_id="sync_subscriptions_from_provider",
        name="Sync Subscriptions From Provider to Tenant",
        description="Syncs all Subscription Changes from Partner Center to Work 365",
        schedule="0 2 * * *",
        recommended="Daily",
        tags=(TAG_SYNC, TAG_PROVISIONING),
        kind=JobKind.SYNC_SUBSCRIPTIONS_FROM_PROVIDER,
        reads="Customers' subscriptions at each API provider (Partner Center).",
        writes="Subscription changes as license change logs (source provider); unknown records to "
        "the job's exception list.",
        rerun="Safe. A subscription already matching the provider produces no change log.",
        calls_provider=True,
    ),
    Job(
        dag_id="sync_subscriptions_to_provider_manual",
        name="Sync Subscriptions From Tenant to Provider - Manual",
        description="Sends Alerts for Manual Providers for Subscriptions Awaiting Provisioning",
        schedule="0 8 * * *",
        recommended="Daily",
        tags=(TAG_SYNC, TAG_PROVISIONING),
        kind=JobKind.SYNC_SUBSCRIPTIONS_TO_PROVIDER_MANUAL,
        reads="License change logs awaiting provisioning at manual providers.",
        writes="One alert per change awaiting provisioning (never twice).",
        rerun="Safe. Alerts already sent are recorded and not sent again.",
    ),
    Job(
        dag_id="sync_usage_data",
        name="Sync Usage Data From Provider to Tenant",
        description="Syncs Usage from Provider to Tenant (used for Provider Invoice Sync and Azure usage)",
        schedule="0 3 * * *",
        recommended="Daily",
        tags=(TAG_SYNC, TAG_INVOICING),
        kind=JobKind.SYNC_USAGE_DATA,
        reads="Final (billable) Azure usage line items from each provider.",
        writes="Final usage records; on the first day of a month, usage invoices for the month before.",
        rerun="Safe. A day's records are replaced, and one usage invoice per contract and month.",
        calls_provider=True,
    ),
    Job(
        dag_id="update_metrics_on_billing_contract",
        name="Update Metrics On Billing Contract",
        description="This job will update the metrics(ACV & MRR) on the billing contracts",
        schedule="0 6 * * *",
        recommended="Daily",
        tags=(TAG_METRICS,),
        kind=JobKind.UPDATE_METRICS_ON_BILLING_CONTRACT,
        reads="Active contracts, their subscriptions' state on the date, trailing-month usage.",
        writes="MRR and ACV on each contract and a dated snapshot per contract.",
        rerun="Safe. The snapshot for the date is replaced.",
    ),
    Job(
        dag_id="update_payment_status",
        name="Update Payment Status of Invoice from Accounting System",
        description="Updates Payment status from Accounting System to Work 365 for Invoices that are marked as Paid in the Accounting System",
        schedule="0 9 * * *",
        recommended="Daily",
        tags=(TAG_SYNC, TAG_INVOICING),
        kind=JobKind.UPDATE_PAYMENT_STATUS,
        reads="Payment status by invoice number from the accounting system.",
        writes="Invoices' payment status, amount paid and date; unknown numbers and over-payments "
        "to the job's exception list.",
        rerun="Safe. Payment status is set, not added.",
        calls_provider=True,
    ),
    Job(
        dag_id="update_pricing_on_product_price",
        name="Update Pricing on Product Price",
        description="Job Updates the Product Price Table in the environment on a Scheduled Basis",
        schedule="0 23 * * *",
        recommended="Daily",
        tags=(TAG_SYNC,),
        kind=JobKind.UPDATE_PRICING_ON_PRODUCT_PRICE,
        reads="The price list (product, sales unit, currency, cost, selling price, effective date).",
        writes="New product price rows; history is never rewritten.",
        rerun="Safe. A price already loaded for its effective date is not loaded again.",
    ),
    Job(
        dag_id="scheduled_update",
        name="Scheduled Update",
        description="Merges due scheduled license change logs (SLCLs) into their subscriptions",
        schedule="5 0 * * *; 30 23 * * *",
        recommended="00:05 and 23:30 tenant time",
        tags=(TAG_PROVISIONING,),
        kind=JobKind.SCHEDULED_UPDATE,
        reads="Scheduled license change logs due at the run's time.",
        writes="Updated subscriptions, one license change log per merged change; archived or "
        "Merge Failed (with the reason) scheduled changes.",
        rerun="Safe. A merged change is archived and is never applied twice.",
    ),
    # Last: it sends what the jobs above invoiced (I20).
    Job(
        dag_id="send_invoices",
        name="Send Invoices",
        description="E-mails each new invoice as a PDF to the customer's billing address and exports it to the Accounting System",
        schedule="0 1 * * *",
        recommended="Daily, after the invoicing jobs",
        tags=(TAG_INVOICING, TAG_SYNC),
        kind=JobKind.SEND_INVOICES,
        reads="Invoices issued in the last lookback_days days up to the run date that have not been delivered "
        "(e-mail and accounting export, each on its own), the customers' billing e-mail addresses.",
        writes="One delivery record per invoice and channel (status, attempts, last error, sent at, message id); "
        "invoices without a billing e-mail and failed sends to the job's exception list. Never changes an invoice.",
        rerun="Safe. An invoice is e-mailed at most once (a resend is explicit: w365 invoice send N --resend) and "
        "exported once by invoice number; a rerun sends only what failed before.",
        paused_at_creation=True,
        calls_provider=True,
        params={"lookback_days": 30},
    ),
)

BY_DAG_ID: dict[str, Job] = {j.dag_id: j for j in JOBS}


class UnknownJob(KeyError):
    def __str__(self) -> str:
        return f"no catalogue job {self.args[0]!r}; `w365 jobs list` shows them"


def get(dag_id: str) -> Job:
    try:
        return BY_DAG_ID[dag_id]
    except KeyError:
        raise UnknownJob(dag_id) from None


def schedule_for(job: Job) -> list[str]:
    override = setting(f"schedule_{job.dag_id}")
    if override:
        return [c.strip() for c in override.split(";") if c.strip()]
    return job.crons


def doc_md(job: Job) -> str:
    crons = " and ".join(f"`{c}`" for c in schedule_for(job))
    lines = [
        f"### {job.name}",
        "",
        job.description + ".",
        "",
        f"**Schedule:** {crons} in the tenant time zone (`{timezone_name()}`); recommended: {job.recommended}.",
        "",
        f"**Reads:** {job.reads}",
        "",
        f"**Writes:** {job.writes}",
        "",
        f"**Rerun / backfill:** {job.rerun} Every run is bound to its logical date (SPEC J6).",
        "",
        f"**Debug without Airflow:** `w365 run {job.dag_id} --as-of YYYY-MM-DD`",
    ]
    if job.params:
        lines += ["", "**Params (manual trigger):** " + ", ".join(f"`{k}`" for k in job.params)]
    return "\n".join(lines)


def as_dict(job: Job) -> dict[str, Any]:
    data = asdict(job)
    data["tags"] = list(job.tags)
    data["schedule"] = "; ".join(schedule_for(job))
    data["timezone"] = timezone_name()
    data["paused_at_creation"] = job.paused_at_creation
    return data
