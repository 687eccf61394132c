"""Sync Usage Data From Provider to Tenant: final (billable) Azure usage.

Catalogue job ``sync_usage_data`` (docs/dags.md): settings from ``w365.orchestration.catalogue``, work in
``w365.orchestration.jobs``.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from w365.orchestration.airflow_support import dag_kwargs, outlets, run_job

JOB = "sync_usage_data"


@dag(**dag_kwargs(JOB))
def sync_usage_data():
    @task(outlets=outlets(JOB))
    def sync_final_usage():
        """Final usage records; on the 1st, usage invoices for the month before."""
        return run_job(JOB)

    sync_final_usage()


sync_usage_data()
