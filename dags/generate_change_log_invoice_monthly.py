"""Generate Change Log Invoice - Monthly Contracts: charges and credits for changes in billed
periods. Paused at creation ("Keep this Off").

Catalogue job ``generate_change_log_invoice_monthly`` (docs/dags.md): settings from
``w365.orchestration.catalogue``, work in ``w365.orchestration.jobs``.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from w365.orchestration.airflow_support import dag_kwargs, outlets, run_job

JOB = "generate_change_log_invoice_monthly"


@dag(**dag_kwargs(JOB))
def generate_change_log_invoice_monthly():
    @task(outlets=outlets(JOB))
    def invoice_changes():
        """Bill the difference between the change logs and what was billed (SPEC B4)."""
        return run_job(JOB)

    invoice_changes()


generate_change_log_invoice_monthly()
