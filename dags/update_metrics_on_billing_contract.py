"""Update Metrics On Billing Contract: MRR and ACV on every contract.

Catalogue job ``update_metrics_on_billing_contract`` (docs/dags.md): settings from
``w365.orchestration.catalogue``, work in ``w365.orchestration.jobs``.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from w365.orchestration.airflow_support import dag_kwargs, inlets, run_job

JOB = "update_metrics_on_billing_contract"


@dag(**dag_kwargs(JOB))
def update_metrics_on_billing_contract():
    @task(inlets=inlets(JOB))
    def update_metrics():
        """MRR and ACV on each contract and the dated snapshot (replaced on rerun)."""
        return run_job(JOB)

    update_metrics()


update_metrics_on_billing_contract()
