"""Generate Full Cycle Invoice - Monthly Contracts: bills every monthly contract due on the run's
date, in shards that run in parallel (SPEC J4, J5, J6).

Catalogue job ``generate_full_cycle_invoice_monthly`` (docs/dags.md): settings and params (advance
days, dry run, contract filter) from ``w365.orchestration.catalogue``, work in ``w365.orchestration.jobs``.
"""

from __future__ import annotations

from airflow.sdk import dag

from w365.orchestration.airflow_support import dag_kwargs, full_cycle_tasks

JOB = "generate_full_cycle_invoice_monthly"


@dag(**dag_kwargs(JOB))
def generate_full_cycle_invoice_monthly():
    # list_due_contracts -> invoice_shard.expand(contract_ids=...) (one per shard) -> summarise
    full_cycle_tasks(JOB)


generate_full_cycle_invoice_monthly()
