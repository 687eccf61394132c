"""The embedded default's demo (issue 2 quick start): the demo tenant obeys the ledger, and its
provider export files let every sync job run end to end without a provider account."""

import json
from datetime import date

from sqlalchemy import func, select

from w365.orchestration import jobs
from w365.store.models import LicenseChangeLog, UsageRecord
from w365.interfaces.demo import DemoSpec, load_demo, write_provider_files
from w365.operations.ledger_check import verify_ledger

AS_OF = date(2026, 11, 21)


def test_demo_tenant_obeys_the_ledger(store, session):
    stats = load_demo(session, DemoSpec(customers=8, as_of=AS_OF, timezone="America/Los_Angeles"))
    session.commit()
    assert stats["contracts"] == 16 and stats["slcls"] > 0
    assert verify_ledger(session) == (stats["subscriptions"], [])


def test_i11_demo_invoices_have_a_seller_and_bill_to_addresses(store, session):
    """issue 16, SPEC I11: the demo tenant has a seller block and each demo customer a bill-to
    address in the country of its contracts' currency (CURRENCY_MIX: USD, USD, USD, EUR, ...)."""
    from w365.store.models import Customer, Tenant

    load_demo(session, DemoSpec(customers=5, as_of=AS_OF))
    session.commit()
    t = session.get(Tenant, 1)
    assert (t.legal_name, t.city, t.country, t.tax_id) == ("Contoso Cloud Partners LLC", "Redmond", "US", "US-91-1234567")
    rows = [(c.billing_address_line1, c.billing_city, c.billing_country) for c in session.scalars(select(Customer).order_by(Customer.id))]
    assert rows == [("1 Pine Street", "Seattle", "US"), ("2 Pine Street", "Seattle", "US"), ("3 Pine Street", "Seattle", "US"),
                    ("Hauptstraße 4", "Berlin", "DE"), ("5 Chancery Lane", "London", "GB")]


def test_demo_provider_files_feed_the_sync_jobs(store, session, tmp_path, monkeypatch):
    load_demo(session, DemoSpec(customers=6, as_of=AS_OF))
    counts = write_provider_files(session, tmp_path / "files", AS_OF, days=3)
    session.commit()
    assert counts["subscriptions"] > 0 and (tmp_path / "files" / ".w365-demo").exists()
    for conn in ("partner_center", "distributor_files"):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn.upper()}", json.dumps({"conn_type": "fs", "extra": {"path": str(tmp_path / "files" / conn)}}))
    lcls = session.scalar(select(func.count()).select_from(LicenseChangeLog))
    report = jobs.run("sync_subscriptions_from_provider", AS_OF.isoformat())
    assert report["failed_providers"] == {} and report["problems"] == {}
    session.commit()
    assert session.scalar(select(func.count()).select_from(LicenseChangeLog)) == lcls  # the files match the store
    usage = jobs.run("sync_daily_usage_data", AS_OF.isoformat())
    assert usage["failed_providers"] == {}
    session.commit()
    assert session.scalar(select(func.count()).select_from(UsageRecord)) > 0
