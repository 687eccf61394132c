"""Update Pricing on Product Price: the product price table from the price list.

Catalogue job ``update_pricing_on_product_price`` (docs/dags.md): settings from ``w365.orchestration.catalogue``,
work in ``w365.orchestration.jobs``.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from w365.orchestration.airflow_support import dag_kwargs, outlets, run_job

JOB = "update_pricing_on_product_price"


@dag(**dag_kwargs(JOB))
def update_pricing_on_product_price():
    @task(outlets=outlets(JOB))
    def update_prices():
        """Load new product prices by effective date; history is never rewritten."""
        return run_job(JOB)

    update_prices()


update_pricing_on_product_price()
