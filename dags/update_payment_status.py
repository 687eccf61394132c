"""Update Payment Status of Invoice from Accounting System.

Catalogue job ``update_payment_status`` (docs/dags.md): settings from ``w365.orchestration.catalogue``, work in
``w365.orchestration.jobs``.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from w365.orchestration.airflow_support import dag_kwargs, inlets, outlets, run_job

JOB = "update_payment_status"


@dag(**dag_kwargs(JOB))
def update_payment_status():
    @task(inlets=inlets(JOB), outlets=outlets(JOB))
    def update_payment_status():
        """Set paid / partially paid / unpaid on invoices from the accounting system."""
        return run_job(JOB)

    update_payment_status()


update_payment_status()
