"""Azure Threshold Violation Alert: usage over a subscription's threshold.

Catalogue job ``azure_threshold_violation_alert`` (docs/dags.md): settings from ``w365.orchestration.catalogue``,
work in ``w365.orchestration.jobs``.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from w365.orchestration.airflow_support import dag_kwargs, inlets, run_job

JOB = "azure_threshold_violation_alert"


@dag(**dag_kwargs(JOB))
def azure_threshold_violation_alert():
    @task(inlets=inlets(JOB))
    def alert_threshold_violations():
        """Alert at 80% and 100% of each usage subscription's threshold, once each a month."""
        return run_job(JOB)

    alert_threshold_violations()


azure_threshold_violation_alert()
