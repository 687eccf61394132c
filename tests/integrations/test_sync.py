"""Sync Subscriptions From Provider (SPEC P1, S3, S6) and the manual provisioning alerts (P1, C5),
against the local Partner Center look-alike."""

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

import factories as f
from pc_server import Fault, pc, pc_subscription  # noqa: F401 - pc is a fixture
from w365.orchestration import jobs
from w365.notify import Alert
from w365.store.models import (
    AlertSent,
    ChangeEffective,
    ChangeSource,
    JobException,
    LicenseChangeLog,
    ProductPrice,
    ProviderKind,
    ProvisioningStatus,
    Subscription,
)
from w365.integrations.provisioning import alert_pending, mark_provisioned, pending_report
from w365.billing.changes import ChangeRequest, change_subscription
from w365.integrations.sync import sync_subscriptions
from w365.operations.ledger_check import verify_ledger

AS_OF = date(2026, 1, 20)
NOW = datetime(2026, 1, 20, 10, 0, tzinfo=timezone.utc)
TZ = "America/Los_Angeles"


def seed(store, pc, monkeypatch):
    """Fabrikam (tenant-A) with a monthly contract and three Partner Center subscriptions."""
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_CENTER", pc.connection_json())
    with store.session() as s:
        f.set_timezone(s, TZ)
        prov = f.provider(s, ProviderKind.PARTNER_CENTER, name="Partner Center")
        basic = f.product(s, sku="CFQ7TTC0LH18")
        prem = f.product(s, sku="CFQ7TTC0LCHC")
        s.add(ProductPrice(product_id=prem.id, sales_unit="MONTHLY", currency="USD", cost_price=Decimal("18.70"),
                           selling_price=Decimal("22.00"), effective_from=date(2025, 1, 1)))
        cust = f.customer(s, "Fabrikam", provider_tenant_id="tenant-A")
        c = f.contract(s, cust, start=date(2025, 12, 1), number="BC-A")
        subs = {}
        for psid, qty in (("sub-1", 10), ("sub-2", 5), ("sub-3", 8)):
            subs[psid] = f.subscription(s, c, prov=prov, prod=basic, quantity=qty, name=psid, provider_subscription_id=psid,
                                        start=date(2025, 12, 1)).id
        s.commit()
    pc.customers = [{"id": "tenant-A"}, {"id": "tenant-X"}]
    pc.subscriptions["tenant-A"] = [
        pc_subscription("sub-1", "CFQ7TTC0LH18", quantity=12),  # up
        pc_subscription("sub-2", "CFQ7TTC0LH18", quantity=5, status="suspended"),  # suspended
        pc_subscription("sub-3", "CFQ7TTC0LH18", quantity=8),  # unchanged
        pc_subscription("sub-new", "CFQ7TTC0LCHC:0001:CFQ7TTC0LCHC", quantity=3),  # new, known product
        pc_subscription("sub-bad", "CFQ7TTC0LH18", quantity="lots"),  # malformed
        pc_subscription("sub-noprod", "NOPE", quantity=1),  # unknown product
        pc_subscription("sub-annual", "CFQ7TTC0LH18", quantity=1, cycle="annual"),  # no annual contract
        pc_subscription("sub-gone", "CFQ7TTC0LH18", quantity=1, status="deleted"),  # new but deleted: ignored
    ]
    pc.subscriptions["tenant-X"] = [pc_subscription("sub-x", "CFQ7TTC0LH18", quantity=2)]  # unknown customer
    return subs


def counts(store):
    with store.session() as s:
        return (s.scalar(select(func.count()).select_from(LicenseChangeLog)), s.scalar(select(func.count()).select_from(Subscription)),
                s.scalar(select(func.count()).select_from(JobException)))


def test_p1_s3_sync_turns_provider_differences_into_lcls_and_quarantines_the_rest(store, pc, monkeypatch):
    subs = seed(store, pc, monkeypatch)
    report = sync_subscriptions(AS_OF, now=NOW)
    (res,) = report["providers"]
    assert res["records"] == 9 and res["unchanged"] == 1 and res["ignored"] == 1
    assert {c["provider_subscription_id"] for c in res["changed"]} == {"sub-1", "sub-2"}
    assert [c["provider_subscription_id"] for c in res["created"]] == ["sub-new"]
    q = res["quarantined"]
    assert set(q) == {"sub-bad", "sub-noprod", "sub-annual", "sub-x"}
    assert "not a whole number" in q["sub-bad"]
    assert "unknown product" in q["sub-noprod"]
    assert "no active ANNUAL billing contract" in q["sub-annual"]
    assert "unknown customer" in q["sub-x"] and "tenant-X" in q["sub-x"]
    with store.session() as s:
        up = s.scalars(select(LicenseChangeLog).where(LicenseChangeLog.subscription_id == subs["sub-1"]).order_by(LicenseChangeLog.id)).all()[-1]
        # SPEC S6: an increase observed on D bills from D, effective 00:05 tenant time
        assert (up.source, up.quantity_before, up.quantity_after, up.direction, up.bill_from) == (
            ChangeSource.PROVIDER, 10, 12, "positive", AS_OF)
        assert up.effective_at == datetime(2026, 1, 20, 8, 5, tzinfo=timezone.utc)
        assert up.provisioning_status == ProvisioningStatus.PROVISIONED
        susp = s.scalars(select(LicenseChangeLog).where(LicenseChangeLog.subscription_id == subs["sub-2"]).order_by(LicenseChangeLog.id)).all()[-1]
        # a suspension is negative: old values billed through D, effective 23:30
        assert (susp.change_type.value, susp.status_after.value, susp.bill_from) == ("suspension", "suspended", AS_OF + timedelta(days=1))
        new = s.scalars(select(Subscription).where(Subscription.provider_subscription_id == "sub-new")).one()
        # billed from its effectiveStartDate as a tenant-local date: 2026-01-10T00:00Z is Jan 9 in Los Angeles
        assert (new.quantity, new.selling_price, new.cost_price, new.sales_unit, new.start_date) == (
            3, Decimal("22.000000"), Decimal("18.700000"), "MONTHLY", date(2026, 1, 9))
        assert new.change_logs[0].source == ChangeSource.PROVIDER
        reasons = dict(s.execute(select(JobException.entity_key, JobException.reason).where(JobException.job == "sync_subscriptions_from_provider")).all())
        assert set(reasons) == {"sub-bad", "sub-noprod", "sub-annual", "sub-x"}
        assert verify_ledger(s)[1] == []  # every subscription is still the fold of its LCLs


def test_p1_rerun_for_the_same_date_changes_nothing(store, pc, monkeypatch):
    seed(store, pc, monkeypatch)
    sync_subscriptions(AS_OF, now=NOW)
    before = counts(store)
    report = sync_subscriptions(AS_OF, now=NOW)
    assert counts(store) == before
    (res,) = report["providers"]
    assert res["changed"] == [] and res["created"] == [] and res["unchanged"] == 4
    assert len(res["quarantined"]) == 4  # reported again, not duplicated in job_exception


def test_s6_provider_decrease_is_recorded_even_outside_the_reduction_window(store, pc, monkeypatch):
    subs = seed(store, pc, monkeypatch)
    pc.subscriptions["tenant-A"] = [pc_subscription("sub-3", "CFQ7TTC0LH18", quantity=2)]
    sync_subscriptions(AS_OF, now=NOW)
    with store.session() as s:
        lcl = s.scalars(select(LicenseChangeLog).where(LicenseChangeLog.subscription_id == subs["sub-3"]).order_by(LicenseChangeLog.id)).all()[-1]
        assert (lcl.quantity_after, lcl.direction, lcl.bill_from) == (2, "negative", AS_OF + timedelta(days=1))
        assert lcl.effective_at == datetime(2026, 1, 21, 7, 30, tzinfo=timezone.utc)  # 23:30 PST on D


def test_p1_one_customer_failing_does_not_stop_the_others(store, pc, monkeypatch):
    seed(store, pc, monkeypatch)
    pc.faults.append(Fault("/v1/customers/tenant-X/", 500, 99))
    report = sync_subscriptions(AS_OF, now=NOW)
    (res,) = report["providers"]
    assert "HTTP 500" in res["customers_failed"]["tenant-X"]
    assert len(res["changed"]) == 2 and len(res["created"]) == 1


def test_p1_unreachable_provider_fails_the_job_after_recording(store, pc, monkeypatch):
    seed(store, pc, monkeypatch)
    pc.faults.append(Fault("/v1/customers", 503, 99))
    with pytest.raises(jobs.JobFailed, match="could not be read"):
        jobs.run("sync_subscriptions_from_provider", AS_OF.isoformat())
    with store.session() as s:
        assert s.scalar(select(JobException.reason).where(JobException.entity_type == "provider")).startswith("Partner Center customer list")


# ------------------------------------------------------------------------------------------
# Manual provider: alerts for changes awaiting provisioning


class Recorder:
    def __init__(self, fail_on: set[str] | None = None):
        self.sent: list[Alert] = []
        self.fail_on = fail_on or set()

    def send(self, alert: Alert) -> None:
        if alert.dedup_key in self.fail_on:
            raise ConnectionError("SMTP server down")
        self.sent.append(alert)


def manual_seed(store):
    with store.session() as s:
        man = f.provider(s, ProviderKind.MANUAL, name="Distributor")
        man.alert_email = "ops@distributor.example"
        c = f.contract(s, f.customer(s), start=date(2025, 12, 1))
        a = f.subscription(s, c, prov=man, quantity=4, name="Manual A", now=datetime(2025, 12, 1, tzinfo=timezone.utc))
        b = f.subscription(s, c, prov=man, quantity=2, name="Manual B", now=datetime(2025, 12, 1, tzinfo=timezone.utc))
        # a scheduled increase, to be provisioned from Jan 25 (SPEC C5 Provision On)
        change_subscription(s, b.id, ChangeRequest(quantity=6, effective=ChangeEffective.CUSTOM, effective_date=date(2026, 2, 1),
                                                    provision_on=date(2026, 1, 25)), now=NOW)
        s.commit()
        return a.id, b.id


def test_p1_manual_provider_one_alert_per_item_not_again_next_day(store):
    a, b = manual_seed(store)
    rec = Recorder()
    first = alert_pending(AS_OF, notifier=rec, now=NOW)
    assert first["awaiting"] == 2 and len(rec.sent) == 2  # the two activation LCLs
    assert {x.to for x in rec.sent} == {("ops@distributor.example",)}
    assert all("awaits provisioning" in x.body for x in rec.sent)
    again = alert_pending(AS_OF + timedelta(days=1), notifier=rec, now=NOW)
    assert again["sent"] == [] and again["already_sent"] == 2 and len(rec.sent) == 2
    later = alert_pending(date(2026, 1, 25), notifier=rec, now=NOW)  # the SLCL is now due for provisioning
    assert len(later["sent"]) == 1 and rec.sent[-1].dedup_key.startswith("slcl:")


def test_p1_failed_send_is_not_recorded_and_retried_next_run(store):
    manual_seed(store)
    with store.session() as s:
        keys = [i["key"] for i in pending_report(s, AS_OF)]
    broken = Recorder(fail_on={keys[0]})
    report = alert_pending(AS_OF, notifier=broken, now=NOW)
    assert list(report["failed"]) == [keys[0]] and len(report["sent"]) == 1
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(AlertSent)) == 1
    fixed = Recorder()
    retry = alert_pending(AS_OF + timedelta(days=1), notifier=fixed, now=NOW)
    assert retry["sent"] == [keys[0]] and [x.dedup_key for x in fixed.sent] == [keys[0]]


def test_p1_provisioning_pending_lists_and_done_marks(store, capsys):
    from w365.interfaces.cli import main

    manual_seed(store)
    alert_pending(AS_OF, notifier=Recorder(), now=NOW)
    assert main(["provisioning", "pending", "--json"]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)
    assert [r["item"].split(" #")[0] for r in rows] == ["LCL", "LCL", "SLCL"]
    assert rows[0]["alerted_at"] and rows[2]["alerted_at"] is None
    lcl_id = rows[0]["lcl_id"]
    assert main(["provisioning", "done", str(lcl_id)]) == 0
    with store.session() as s:
        assert s.get(LicenseChangeLog, lcl_id).provisioning_status == ProvisioningStatus.PROVISIONED
        assert len(pending_report(s, AS_OF)) == 1
        with pytest.raises(Exception, match="not pending"):
            mark_provisioned(s, lcl_id, at=NOW)


def test_s3_cancelled_on_both_sides_writes_nothing_more(store, pc, monkeypatch):
    subs = seed(store, pc, monkeypatch)
    pc.subscriptions["tenant-A"] = [pc_subscription("sub-3", "CFQ7TTC0LH18", quantity=8, status="deleted")]
    sync_subscriptions(AS_OF, now=NOW)
    pc.subscriptions["tenant-A"] = [pc_subscription("sub-3", "CFQ7TTC0LH18", quantity=0, status="deleted")]
    report = sync_subscriptions(AS_OF + timedelta(days=1), now=NOW)
    assert report["providers"][0]["changed"] == [] and report["providers"][0]["unchanged"] == 1
    with store.session() as s:
        sub = s.get(Subscription, subs["sub-3"])
        assert (sub.status.value, sub.quantity, len(sub.change_logs)) == ("deactivated", 8, 2)
        assert sub.change_logs[-1].bill_from == AS_OF + timedelta(days=1)  # billed through the day it was seen deleted


def test_p1_smtp_is_the_default_notifier_and_goes_through_airflows_smtp_notifier(monkeypatch):
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    from w365.notify import SmtpNotifierAdapter, get_notifier

    monkeypatch.delenv("AIRFLOW__W365__NOTIFIER", raising=False)
    monkeypatch.setenv("AIRFLOW__W365__ALERT_FROM", "w365@csp.example")
    monkeypatch.setenv("AIRFLOW__W365__SMTP_CONN_ID", "smtp_billing")
    calls = []
    monkeypatch.setattr(SmtpNotifier, "notify", lambda self, context: calls.append((self, context)))  # no real SMTP
    notifier = get_notifier()
    assert isinstance(notifier, SmtpNotifierAdapter)
    alert = Alert("manual_provisioning", "lcl:1", ("ops@x.example",), "Provision {{ x }}", "a < b")
    notifier.send(alert)
    (sent, context), = calls
    assert (sent.to, sent.from_email, sent.subject, sent.smtp_conn_id) == (["ops@x.example"], "w365@csp.example", "Provision {{ x }}", "smtp_billing")
    assert sent.html_content == "<pre>a &lt; b</pre>" and context["w365_alert"] is alert


def test_p1_notifier_is_configurable_and_accepts_airflow_notifiers(monkeypatch):
    from w365.notify import LogNotifier, get_notifier

    assert isinstance(get_notifier("log"), LogNotifier)
    import sys
    import types

    from airflow.sdk import BaseNotifier

    got = []

    class Chat(BaseNotifier):
        def notify(self, context):
            got.append(context["subject"])

    module = types.ModuleType("w365_test_notifiers")
    module.Chat = Chat
    monkeypatch.setitem(sys.modules, "w365_test_notifiers", module)
    monkeypatch.setenv("AIRFLOW__W365__NOTIFIER", "w365_test_notifiers:Chat")
    get_notifier().send(Alert("k", "d", ("a@b.c",), "hello", "body"))
    assert got == ["hello"]
    with pytest.raises(Exception, match="cannot be loaded"):
        get_notifier("no_such_module:thing")
