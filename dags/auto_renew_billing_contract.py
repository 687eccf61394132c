"""Auto Renew Billing Contract: renews auto-renewing contracts at their end date, expires the rest.

Catalogue job ``auto_renew_billing_contract`` (docs/dags.md): settings from ``w365.orchestration.catalogue``, work
in ``w365.orchestration.jobs``.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from w365.orchestration.airflow_support import dag_kwargs, run_job

JOB = "auto_renew_billing_contract"


@dag(**dag_kwargs(JOB))
def auto_renew_billing_contract():
    @task
    def renew_or_expire_contracts():
        """Renew (reopening the reduction window) or expire the contracts whose term ended."""
        return run_job(JOB)

    renew_or_expire_contracts()


auto_renew_billing_contract()
