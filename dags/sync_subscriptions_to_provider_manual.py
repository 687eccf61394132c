"""Sync Subscriptions From Tenant to Provider - Manual: alerts for manual providers.

Catalogue job ``sync_subscriptions_to_provider_manual`` (docs/dags.md): settings from
``w365.orchestration.catalogue``, work in ``w365.orchestration.jobs``.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from w365.orchestration.airflow_support import dag_kwargs, run_job

JOB = "sync_subscriptions_to_provider_manual"


@dag(**dag_kwargs(JOB))
def sync_subscriptions_to_provider_manual():
    @task
    def alert_awaiting_provisioning():
        """One alert per change awaiting provisioning at a manual provider, never twice."""
        return run_job(JOB)

    alert_awaiting_provisioning()


sync_subscriptions_to_provider_manual()
