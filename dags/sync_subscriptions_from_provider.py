"""Sync Subscriptions From Provider to Tenant: Partner Center changes as change logs.

Catalogue job ``sync_subscriptions_from_provider`` (docs/dags.md): settings from ``w365.orchestration.catalogue``,
work in ``w365.orchestration.jobs``.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from w365.orchestration.airflow_support import dag_kwargs, outlets, run_job

JOB = "sync_subscriptions_from_provider"


@dag(**dag_kwargs(JOB))
def sync_subscriptions_from_provider():
    @task(outlets=outlets(JOB))
    def sync_subscriptions():
        """Write the provider's subscription changes as license change logs."""
        return run_job(JOB)

    sync_subscriptions()


sync_subscriptions_from_provider()
