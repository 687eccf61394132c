"""Add Incentive Plan: sales-commission incentive plans from invoiced revenue.

Catalogue job ``add_incentive_plan`` (docs/dags.md): settings from ``w365.orchestration.catalogue``, work in
``w365.orchestration.jobs``.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from w365.orchestration.airflow_support import dag_kwargs, inlets, run_job

JOB = "add_incentive_plan"


@dag(**dag_kwargs(JOB))
def add_incentive_plan():
    @task(inlets=inlets(JOB))
    def create_incentive_plans():
        """One plan per salesperson, period and currency, recomputed in place."""
        return run_job(JOB)

    create_incentive_plans()


add_incentive_plan()
