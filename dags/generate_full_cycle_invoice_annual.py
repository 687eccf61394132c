"""Generate Full Cycle Invoice - Annual Contracts: bills every annual contract due on the run's date
(annual, triennial and custom cadences such as semi-annual; 30 days ahead by default), in shards
that run in parallel (SPEC J4, J5, J6).

Catalogue job ``generate_full_cycle_invoice_annual`` (docs/dags.md): settings and params (advance
days, dry run, contract filter) from ``w365.orchestration.catalogue``, work in ``w365.orchestration.jobs``.
"""

from __future__ import annotations

from airflow.sdk import dag

from w365.orchestration.airflow_support import dag_kwargs, full_cycle_tasks

JOB = "generate_full_cycle_invoice_annual"


@dag(**dag_kwargs(JOB))
def generate_full_cycle_invoice_annual():
    # list_due_contracts -> invoice_shard.expand(contract_ids=...) (one per shard) -> summarise
    full_cycle_tasks(JOB)


generate_full_cycle_invoice_annual()
