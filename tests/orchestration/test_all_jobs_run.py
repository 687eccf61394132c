"""`w365 run DAG_ID --as-of DATE` runs every catalogue job without Airflow (SPEC J1, J6): all 18,
on a demo tenant, with the external systems configured the way ops would (Connections in the
environment: a local Partner Center, a file-drop folder, a price list, an accounting file).
A second round for the same date changes nothing."""

import json
from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import func, select

from pc_server import pc, pc_subscription, pc_usage  # noqa: F401 - pc is a fixture
from w365.billing.changes import ChangeRequest, change_subscription
from w365.orchestration import catalogue, jobs
from w365.interfaces.cli import main
from w365.store.models import (
    Base, BillingContract, ContractStatus, Customer, LicenseChangeLog, Product, ProductKind, Provider, ProviderKind, ProvisioningStatus,
    Subscription,
)
from w365.interfaces.demo import DemoSpec, load_demo

AS_OF = date(2026, 1, 1)


class RecordingNotifier:
    """The notifier the jobs load from ``[w365] notifier = test_all_jobs_run:RecordingNotifier``."""

    sent: list = []

    def send(self, alert):
        RecordingNotifier.sent.append(alert)


def configure(store, pc, tmp_path, monkeypatch):
    with store.session() as s:
        load_demo(s, DemoSpec(customers=8, as_of=AS_OF))
        s.commit()
        pc_id = s.scalar(select(Provider.id).where(Provider.kind == ProviderKind.PARTNER_CENTER))
        rows = s.execute(
            select(Customer.provider_tenant_id, Subscription.provider_subscription_id, Product.offer_id, Subscription.quantity,
                   Product.kind, Subscription.id)
            .join(Customer, Customer.id == Subscription.customer_id).join(Product, Product.id == Subscription.product_id)
            .where(Subscription.provider_id == pc_id, Subscription.provider_subscription_id.is_not(None))
            .order_by(Subscription.id)
        ).all()
        some_price = s.scalar(select(Product.sku).where(Product.kind == ProductKind.LICENSE))
    # Partner Center knows the same subscriptions; one has grown by 2 seats
    pc.customers = [{"id": t} for t in sorted({r[0] for r in rows})]
    for n, (tenant, psid, offer, qty, kind, _sid) in enumerate(rows):
        pc.subscriptions.setdefault(tenant, []).append(pc_subscription(psid, offer, quantity=qty + (2 if n == 0 else 0)))
        if getattr(kind, "value", kind) == "usage":
            for k in ("interim", "final"):
                pc.usage.setdefault(("2025-12-31", k), []).append(pc_usage(tenant, psid, "2025-12-31", "vm", "24", "0.5", "12.0000"))
    drop = tmp_path / "drop"
    (drop / "usage" / "final").mkdir(parents=True)
    (drop / "subscriptions.json").write_text('{"items": []}')
    prices = tmp_path / "price_list.csv"
    prices.write_text(f"sku,sales_unit,currency,cost_price,selling_price,effective_from\n{some_price},MONTHLY,USD,5.00,6.50,2026-01-01\n")
    payments = tmp_path / "payments.csv"
    payments.write_text("invoice_number,status,amount_paid,paid_on\nINV-000001,paid,1.00,2026-01-01\n")
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_CENTER", pc.connection_json())
    monkeypatch.setenv("AIRFLOW_CONN_DISTRIBUTOR_FILES", json.dumps({"conn_type": "fs", "extra": {"path": str(drop)}}))
    monkeypatch.setenv("AIRFLOW_CONN_W365_PRICE_LIST", json.dumps({"conn_type": "fs", "extra": {"path": str(prices)}}))
    monkeypatch.setenv("AIRFLOW_CONN_W365_ACCOUNTING", json.dumps({"conn_type": "fs", "extra": {"path": str(payments)}}))
    monkeypatch.setenv("AIRFLOW__W365__NOTIFIER", "test_all_jobs_run:RecordingNotifier")
    monkeypatch.setenv("AIRFLOW__W365__ALERT_EMAIL", "billing-ops@csp.example")
    RecordingNotifier.sent = []


def table_counts(store):
    with store.session() as s:
        return {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


def test_j1_every_catalogue_job_runs_from_the_cli_and_reruns_change_nothing(store, pc, tmp_path, monkeypatch, capsys):
    configure(store, pc, tmp_path, monkeypatch)
    assert len(catalogue.JOBS) == 18
    with store.session() as s:  # one seat more at the manual distributor: a change for people to provision
        manual = s.scalar(select(Subscription).join(Provider, Provider.id == Subscription.provider_id)
                          .where(Provider.kind == ProviderKind.MANUAL, Subscription.status == "active").order_by(Subscription.id))
        change_subscription(s, manual.id, ChangeRequest(quantity=manual.quantity + 1),
                            now=datetime(2025, 12, 31, 18, 0, tzinfo=timezone.utc))
        s.commit()
    with store.session() as s:  # what the renewals and the manual-provisioning alerts must find
        ended = s.execute(select(BillingContract.number, BillingContract.auto_renew).where(
            BillingContract.status == ContractStatus.ACTIVE, BillingContract.end_date < AS_OF)).all()
        awaiting = {f"slcl:{sl}" if sl else f"lcl:{lid}" for lid, sl in s.execute(
            select(LicenseChangeLog.id, LicenseChangeLog.slcl_id)
            .join(Subscription, Subscription.id == LicenseChangeLog.subscription_id)
            .join(Provider, Provider.id == Subscription.provider_id)
            .where(Provider.kind == ProviderKind.MANUAL, LicenseChangeLog.provisioning_status == ProvisioningStatus.PENDING,
                   LicenseChangeLog.effective_date <= AS_OF))}
    first: dict[str, dict] = {}
    for job in catalogue.JOBS:
        code = main(["run", job.dag_id, "--as-of", AS_OF.isoformat(), "--json"])
        out = capsys.readouterr().out
        assert code == 0, f"{job.dag_id}: exit {code}"
        first[job.dag_id] = json.loads(out)
    # each job did its work on the demo tenant
    assert first["generate_full_cycle_invoice_monthly"]["invoices"]
    assert first["sync_subscriptions_from_provider"]["providers"][0]["changed"]
    assert first["sync_usage_data"]["billing"]["month"] == "2025-12"
    assert first["sync_daily_usage_data"]["providers"][0]["rows_loaded"] > 0
    assert first["update_metrics_on_billing_contract"]["contracts"] > 0
    assert first["update_pricing_on_product_price"]["inserted"] == 1
    assert first["update_payment_status"]["records"] == 1
    # I20, I27: every invoice issued on the date exported once to the file drop (no w365_smtp: e-mail not configured)
    assert first["send_invoices"]["accounting"]["sent"] and first["send_invoices"]["email"]["status"].startswith("not configured")
    renewals = first["auto_renew_billing_contract"]  # SPEC B2, C2: every ended term renewed or expired
    assert sorted(r["contract"] for r in renewals["renewed"]) == sorted(n for n, auto in ended if auto)
    assert sorted(r["contract"] for r in renewals["expired"]) == sorted(n for n, auto in ended if not auto)
    assert first["sync_subscriptions_to_provider_manual"]["awaiting"] == len(awaiting) > 0  # SPEC C5: one alert each
    assert sorted(a.dedup_key for a in RecordingNotifier.sent if a.kind == "manual_provisioning") == sorted(awaiting)
    assert all(a.to == ("billing-ops@csp.example",) or a.kind == "manual_provisioning" for a in RecordingNotifier.sent)
    sent = len(RecordingNotifier.sent)
    counts = table_counts(store)
    second = {job.dag_id: jobs.run(job.dag_id, AS_OF.isoformat()) for job in catalogue.JOBS}
    assert table_counts(store) == counts  # SPEC J6: a rerun for the same date adds nothing
    assert len(RecordingNotifier.sent) == sent  # no alert twice
    assert second["sync_subscriptions_from_provider"]["providers"][0]["changed"] == []
    assert second["generate_full_cycle_invoice_monthly"]["invoices"] == []
    assert second["sync_usage_data"]["billing"]["invoices"] == []
    json.dumps(second)  # JSON-serialisable reports (XCom)
    assert Decimal(first["update_metrics_on_billing_contract"]["mrr_by_currency"]["USD"]) > 0


def test_j1_jobs_list_names_exactly_the_runnable_jobs(store, capsys):
    assert main(["jobs", "list", "--json"]) == 0
    listed = [j["dag_id"] for j in json.loads(capsys.readouterr().out)]
    assert sorted(listed) == sorted(j.dag_id for j in catalogue.JOBS)
    for dag_id in listed:
        assert callable(jobs.function_for(dag_id))
    # issue 14: an explicit registry, one entry point per kind of job, none left over
    assert set(jobs.ENTRY_POINTS) == {j.kind for j in catalogue.JOBS}
