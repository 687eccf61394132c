"""Send Invoices.

Catalogue job ``send_invoices`` (docs/dags.md): settings from ``w365.orchestration.catalogue``, work in
``w365.integrations.delivery`` through ``w365.orchestration.jobs``. Two tasks, side by side: the
e-mail to customers and the export to the accounting system fail, retry and are cleared each on
its own (an SMTP outage does not hold the export back, nor the other way round).
"""

from __future__ import annotations

from airflow.sdk import dag, task

from w365.orchestration.airflow_support import dag_kwargs, inlets, outlets, run_job

JOB = "send_invoices"


@dag(**dag_kwargs(JOB))
def send_invoices():
    @task(inlets=inlets(JOB), outlets=outlets(JOB))
    def email_invoices():
        """E-mail each undelivered invoice, PDF attached, to its customer's billing address (at most once)."""
        return run_job(JOB, channel="email")

    @task(inlets=inlets(JOB), outlets=outlets(JOB))
    def export_invoices():
        """Export each invoice not yet exported to the accounting system (idempotent by invoice number)."""
        return run_job(JOB, channel="accounting")

    email_invoices()
    export_invoices()


send_invoices()
