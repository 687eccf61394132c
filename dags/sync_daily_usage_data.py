"""Sync Daily Usage Data From Provider to Tenant: interim (daily) Azure usage.

Catalogue job ``sync_daily_usage_data`` (docs/dags.md): settings from ``w365.orchestration.catalogue``, work in
``w365.orchestration.jobs``.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from w365.orchestration.airflow_support import dag_kwargs, outlets, run_job

JOB = "sync_daily_usage_data"


@dag(**dag_kwargs(JOB))
def sync_daily_usage_data():
    @task(outlets=outlets(JOB))
    def sync_daily_usage():
        """Replace the day's interim usage records from each provider (not billed)."""
        return run_job(JOB)

    sync_daily_usage()


sync_daily_usage_data()
