"""Scheduled Update: merges due scheduled license change logs (SPEC C6, S6).

Catalogue job ``scheduled_update`` (docs/dags.md): settings from ``w365.orchestration.catalogue``, work in
``w365.orchestration.jobs``.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from w365.orchestration.airflow_support import dag_kwargs, run_job

JOB = "scheduled_update"


@dag(**dag_kwargs(JOB))
def scheduled_update():
    @task
    def merge_due_slcls():
        """Merge the SLCLs due at the run's time: archived, or Merge Failed with the reason."""
        return run_job(JOB)

    merge_due_slcls()


scheduled_update()
