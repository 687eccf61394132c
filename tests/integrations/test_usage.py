"""Azure usage (SPEC P1, B3, M1, M2): daily and final sync, monthly usage invoices, threshold alerts."""

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pandas as pd
import pytest
from sqlalchemy import func, select

import factories as f
from pc_server import Fault, pc, pc_usage  # noqa: F401 - pc is a fixture
from w365.orchestration import jobs
from w365.notify import Alert
from w365.store.models import (
    ExchangeRate,
    Invoice,
    InvoiceKind,
    JobException,
    ProductKind,
    ProviderKind,
    UsageKind,
    UsageRecord,
)
from w365.operations.usage_alerts import alert_thresholds
from w365.integrations.usage_day import load_usage
from w365.integrations.usage_sync import sync_final_usage, sync_usage

NOW = datetime(2026, 2, 1, 6, 0, tzinfo=timezone.utc)
DAY = date(2026, 1, 14)


def seed(store, pc, monkeypatch):
    """Three usage subscriptions at Partner Center: USD on a USD contract (12.5% markup, threshold
    100), USD on a EUR contract (rate 0.92), USD on a GBP contract (no rate)."""
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_CENTER", pc.connection_json())
    with store.session() as s:
        prov = f.provider(s, ProviderKind.PARTNER_CENTER, name="Partner Center")
        azure = f.product(s, sku="DZH318Z0BPS6", kind=ProductKind.USAGE)
        cust = f.customer(s, "Fabrikam", provider_tenant_id="tenant-A", salesperson="Avery")
        ids = {}
        for psid, cur, markup, threshold in (("az-1", "USD", "12.5", "100.00"), ("az-2", "EUR", "10", None), ("az-3", "GBP", "0", None)):
            c = f.contract(s, cust, currency=cur, start=date(2025, 12, 1), number=f"BC-{cur}")
            sub = f.subscription(s, c, prov=prov, prod=azure, quantity=1, price="0", cost="0", currency="USD", name=f"Azure {psid}",
                                 provider_subscription_id=psid, markup_pct=Decimal(markup),
                                 usage_threshold=Decimal(threshold) if threshold else None)
            ids[psid] = sub.id
        lic = f.subscription(s, c, prov=prov, quantity=3, name="licence", provider_subscription_id="lic-1")
        ids["lic-1"] = lic.id
        s.add(ExchangeRate(from_currency="USD", to_currency="EUR", rate=Decimal("0.92"), effective_from=date(2025, 1, 1)))
        s.commit()
    return ids


def lines(day, sub, n, total="1.0000", meter="m"):
    return [pc_usage("tenant-A", sub, day.isoformat(), f"{meter}{i}", "2.500000", "0.400000", total) for i in range(n)]


def usage_rows(store, kind="interim", day=DAY):
    with store.session() as s:
        return sorted(
            (r.subscription_id, r.meter_id, r.quantity, r.pre_tax_total, r.currency)
            for r in s.scalars(select(UsageRecord).where(UsageRecord.kind == UsageKind(kind), UsageRecord.usage_date == day))
        )


def test_p1_daily_usage_loads_and_resync_replaces_never_duplicates(store, pc, monkeypatch):
    ids = seed(store, pc, monkeypatch)
    pc.usage[(DAY.isoformat(), "interim")] = lines(DAY, "az-1", 3) + [
        # two lines of one meter on one day (two resources): one row, summed exactly
        pc_usage("tenant-A", "az-2", DAY.isoformat(), "vm", "1.000001", "0.100000", "0.1001"),
        pc_usage("tenant-A", "az-2", DAY.isoformat(), "vm", "2.000002", "0.100000", "0.2002"),
    ]
    report = sync_usage("interim", DAY, as_of=DAY + timedelta(days=1), now=NOW)
    (p,) = report["providers"]
    assert (p["lines"], p["rows_loaded"], p["subscriptions"], p["held_back"]) == (5, 4, 2, {})
    rows = usage_rows(store)
    assert (ids["az-2"], "vm", Decimal("3.000003"), Decimal("0.3003"), "USD") in rows
    assert [r for r in rows if r[0] == ids["az-1"]] == [(ids["az-1"], f"m{i}", Decimal("2.5"), Decimal("1"), "USD") for i in range(3)]
    # the provider corrects the day: re-syncing replaces it
    pc.usage[(DAY.isoformat(), "interim")] = lines(DAY, "az-1", 2, total="5.5000")
    again = sync_usage("interim", DAY, as_of=DAY + timedelta(days=1), now=NOW)
    assert again["providers"][0]["rows_replaced"] == 4
    assert usage_rows(store) == [(ids["az-1"], f"m{i}", Decimal("2.5"), Decimal("5.5"), "USD") for i in range(2)]
    sync_usage("interim", DAY, as_of=DAY + timedelta(days=1), now=NOW)  # rerun: same rows
    assert len(usage_rows(store)) == 2


def test_p1_bad_usage_lines_are_reported_and_hold_back_only_their_subscription(store, pc, monkeypatch):
    ids = seed(store, pc, monkeypatch)
    pc.usage[(DAY.isoformat(), "interim")] = lines(DAY, "az-1", 2) + lines(DAY, "az-2", 2)
    sync_usage("interim", DAY, as_of=DAY + timedelta(days=1), now=NOW)
    bad = lines(DAY, "az-1", 2, total="9.0000")
    bad[1]["billingPreTaxTotal"] = "12,50"  # malformed number
    pc.usage[(DAY.isoformat(), "interim")] = bad + lines(DAY, "az-2", 1, total="3.0000") + [
        pc_usage("tenant-A", "az-999", DAY.isoformat(), "m", "1", "1", "1"),  # unknown subscription
        pc_usage("tenant-A", "lic-1", DAY.isoformat(), "m", "1", "1", "1"),  # a licence, not usage
        pc_usage("tenant-A", "az-3", "2026-01-13", "m", "1", "1", "1"),  # another day
    ]
    report = sync_usage("interim", DAY, as_of=DAY + timedelta(days=1), now=NOW)
    held = report["providers"][0]["held_back"]
    assert set(held) == {"az-1", "az-999", "lic-1", "az-3"}
    assert "pre_tax_total is not a decimal number" in held["az-1"] and "line 2" in held["az-1"]
    assert "unknown subscription" in held["az-999"]
    assert "not a usage subscription" in held["lic-1"]
    assert "usage date is not 2026-01-14" in held["az-3"]
    rows = usage_rows(store)
    # az-1 held back: yesterday's good rows for the day stay (nothing lost); az-2 replaced
    assert [r for r in rows if r[0] == ids["az-1"]] == [(ids["az-1"], f"m{i}", Decimal("2.5"), Decimal("1"), "USD") for i in range(2)]
    assert [r for r in rows if r[0] == ids["az-2"]] == [(ids["az-2"], "m0", Decimal("2.5"), Decimal("3"), "USD")]
    with store.session() as s:
        keys = set(s.scalars(select(JobException.entity_key).where(JobException.job == "sync_daily_usage_data")))
    assert keys == {f"Partner Center:{DAY}:{k}" for k in held}


def test_m1_usage_frame_amounts_never_become_float(store, monkeypatch):
    with store.session() as s:
        prov = f.provider(s, ProviderKind.FILE, name="Files")
        c = f.contract(s, f.customer(s, provider_tenant_id="t-1"))
        sub = f.subscription(s, c, prov=prov, prod=f.product(s, sku="AZ", kind=ProductKind.USAGE), provider_subscription_id="az")
        odd = "Compute\tD2s \\v5\nline, \"quoted\""  # tab, backslash, newline, comma, quotes
        frame = pd.DataFrame([
            {"customer": "t-1", "subscription": "az", "meter_id": "m", "meter_name": None, "unit": None,
             "usage_date": DAY.isoformat(), "quantity": "0.000001", "unit_price": "123456789012.123456",
             "pre_tax_total": "99999999999999.9999", "currency": "usd"},
            {"customer": "t-1", "subscription": "az", "meter_id": "n", "meter_name": odd, "unit": "\\N",
             "usage_date": f"{DAY.isoformat()}T00:00:00Z", "quantity": " 1.5 ", "unit_price": "2", "pre_tax_total": "-3.0000",
             "currency": "USD"},
        ])
        res = load_usage(s, prov.id, "final", DAY, frame, now=NOW)
        s.commit()
        rows = {r.meter_id: r for r in s.scalars(select(UsageRecord))}
    assert res.rows_loaded == 2 and rows["m"].subscription_id == sub.id
    assert (rows["m"].quantity, rows["m"].unit_price, rows["m"].pre_tax_total, rows["m"].currency, rows["m"].meter_name) == (
        Decimal("0.000001"), Decimal("123456789012.123456"), Decimal("99999999999999.9999"), "USD", None)
    assert (rows["n"].meter_name, rows["n"].unit, rows["n"].quantity, rows["n"].pre_tax_total) == (odd, "\\N", Decimal("1.5"), Decimal("-3"))


def _file_drop_usage(tmp_path, text):
    folder = tmp_path / "drop"
    (folder / "usage" / "final").mkdir(parents=True)
    (folder / "usage" / "final" / f"{DAY.isoformat()}.csv").write_text(text)
    return folder


USAGE_HEADER = "customerId,subscriptionId,meterId,meterName,unitOfMeasure,usageDate,quantity,unitPrice,preTaxTotal,currency\n"


def _usage_csv(*rows):
    return USAGE_HEADER + "".join(f"t-1,{sub},{meter},VM,1 Hour,{DAY.isoformat()},{qty},0.5,{total},USD\n" for sub, meter, qty, total in rows)


def test_p1_a_day_read_in_chunks_sums_and_holds_back_across_chunks(store, tmp_path, monkeypatch):
    """Issue 15 (SPEC P1, M1): a day streamed two lines at a time (and written two rows per COPY
    block) loads exactly what the whole day would: a meter repeating in a later chunk is summed
    into one row, and a bad line in a later chunk holds back its subscription's earlier lines too."""
    from w365.integrations import usage_day
    from w365.integrations.providers.file_drop import FileDropProvider

    monkeypatch.setattr(usage_day, "USAGE_BATCH_LINES", 2)
    monkeypatch.setattr(usage_day, "WRITE_BLOCK_ROWS", 2)
    with store.session() as s:
        prov = f.provider(s, ProviderKind.FILE, name="Files")
        azure = f.product(s, sku="AZ", kind=ProductKind.USAGE)
        c = f.contract(s, f.customer(s, provider_tenant_id="t-1"))
        a, b = (f.subscription(s, c, prov=prov, prod=azure, provider_subscription_id=p).id for p in ("az-a", "az-b"))
        s.commit()
    folder = _file_drop_usage(tmp_path, _usage_csv(
        ("az-a", "vm", "1.000001", "0.1001"),  # chunk 1, line 1
        ("az-b", "vm", "5", "5.0000"),          # chunk 1, line 2: az-b's good line ...
        ("az-a", "db", "2", "2.0000"),          # chunk 2, line 3
        ("az-a", "vm", "2.000002", "0.2002"),  # chunk 2, line 4: az-a/vm again -> summed with line 1
        ("az-b", "db", "1.5e3", "1.0000"),      # chunk 3, line 5: ... held back by this bad line
        ("az-a", "sql", "3", "3.0000"),         # chunk 3, line 6
    ))
    with store.session() as s:
        res = load_usage(s, prov.id, "final", DAY, FileDropProvider(folder).usage_batches(DAY, "final"), now=NOW)
        s.commit()
    assert (res.lines, res.rows_loaded, res.subscriptions) == (6, 3, 1)
    assert res.held_back == {"az-b": "1 line(s) rejected, e.g. line 5: quantity is not a decimal number within the stored precision"}
    assert usage_rows(store, "final") == [
        (a, "db", Decimal("2"), Decimal("2"), "USD"),
        (a, "sql", Decimal("3"), Decimal("3"), "USD"),
        (a, "vm", Decimal("3.000003"), Decimal("0.3003"), "USD"),
    ]


def test_p1_an_export_that_breaks_off_mid_file_changes_nothing(store, tmp_path, monkeypatch):
    """Issue 15 (SPEC P1): a streamed export that turns unreadable after its first chunk (here an
    unclosed quote) is one provider failure; the day already stored stays whole."""
    from w365.integrations import usage_day

    monkeypatch.setattr(usage_day, "USAGE_BATCH_LINES", 2)
    with store.session() as s:
        prov = f.provider(s, ProviderKind.FILE, name="Files")
        prov.connection_id = "drop"
        c = f.contract(s, f.customer(s, provider_tenant_id="t-1"))
        sub = f.subscription(s, c, prov=prov, prod=f.product(s, sku="AZ", kind=ProductKind.USAGE), provider_subscription_id="az-a").id
        s.commit()
    folder = _file_drop_usage(tmp_path, _usage_csv(("az-a", "vm", "1", "1.0000")))
    monkeypatch.setenv("AIRFLOW_CONN_DROP", f'{{"conn_type": "fs", "extra": {{"path": "{folder}"}}}}')
    first = sync_usage("final", DAY, as_of=DAY + timedelta(days=1), now=NOW)
    assert first["failed_providers"] == {} and usage_rows(store, "final") == [(sub, "vm", Decimal("1"), Decimal("1"), "USD")]
    broken = _usage_csv(("az-a", "vm", "7", "7.0000"), ("az-a", "db", "7", "7.0000"), ("az-a", "sql", "7", "7.0000"))
    (folder / "usage" / "final" / f"{DAY.isoformat()}.csv").write_text(broken + 't-1,az-a,"unclosed,VM\n')
    report = sync_usage("final", DAY, as_of=DAY + timedelta(days=1), now=NOW)
    (reason,) = report["failed_providers"].values()
    assert "unreadable after 2 line(s)" in reason and f"{DAY.isoformat()}.csv" in reason
    assert usage_rows(store, "final") == [(sub, "vm", Decimal("1"), Decimal("1"), "USD")]  # yesterday's load, whole
    with store.session() as s:
        assert s.scalars(select(JobException.entity_key).where(JobException.job == "sync_usage_data")).all() == ["Files"]


def test_b3_usage_invoice_for_last_month_on_the_first_with_markup_and_conversion(store, pc, monkeypatch):
    ids = seed(store, pc, monkeypatch)
    for d in (date(2026, 1, 5), date(2026, 1, 31)):
        pc.usage[(d.isoformat(), "final")] = (
            lines(d, "az-1", 2, total="10.0001") + lines(d, "az-2", 1, total="33.3333") + lines(d, "az-3", 1, total="7.0000")
        )
    sync_usage("final", date(2026, 1, 5), as_of=date(2026, 1, 6), now=NOW)
    report = sync_final_usage(date(2026, 2, 1), now=NOW)  # loads Jan 31, then bills January
    billing = report["billing"]
    assert billing["month"] == "2026-01"
    assert "no USD->GBP exchange rate" in billing["skipped"]["BC-GBP"]
    with store.session() as s:
        invs = {i.contract.number: i for i in s.scalars(select(Invoice).where(Invoice.kind == InvoiceKind.USAGE))}
        assert set(invs) == {"BC-USD", "BC-EUR"}
        usd = invs["BC-USD"]
        (line,) = usd.lines
        # 4 lines x 10.0001 = 40.0004 USD cost; x 1.125 = 45.00045 -> 45.00 (half up, once)
        assert (line.quantity, line.unit_price, line.amount, line.days, line.period_days) == (
            Decimal("40.0004"), Decimal("1.125"), Decimal("45.00"), 31, 31)
        assert (usd.period_from, usd.period_to, usd.issue_date, usd.total) == (date(2026, 1, 1), date(2026, 1, 31), date(2026, 2, 1), Decimal("45.00"))
        (eur,) = invs["BC-EUR"].lines
        # 66.6666 USD x 1.10 x 0.92 = 67.4666 EUR (unit price 1.012 EUR per USD of cost)
        assert (eur.quantity, eur.unit_price, eur.amount, eur.source_currency, eur.fx_rate) == (
            Decimal("66.6666"), Decimal("1.012"), Decimal("67.47"), "USD", Decimal("0.92"))
        assert eur.subscription_id == ids["az-2"]
        numbers = sorted(i.sequence for i in invs.values())
        assert numbers == list(range(numbers[0], numbers[0] + 2))  # gapless
    rerun = sync_final_usage(date(2026, 2, 1), now=NOW)
    assert rerun["billing"]["invoices"] == [] and rerun["billing"]["already_invoiced"] == 2
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Invoice)) == 2


def test_b3_no_usage_invoice_on_other_days_unless_a_month_is_asked(store, pc, monkeypatch):
    seed(store, pc, monkeypatch)
    pc.usage[("2026-01-05", "final")] = lines(date(2026, 1, 5), "az-1", 1, total="2.0000")
    report = jobs.run("sync_usage_data", "2026-01-06")
    assert "billing" not in report
    report = jobs.run("sync_usage_data", "2026-01-06", month="2026-01")
    assert [i["total"] for i in report["billing"]["invoices"]] == ["2.25"]


class Recorder:
    def __init__(self):
        self.sent: list[Alert] = []

    def send(self, alert):
        self.sent.append(alert)


def test_azure_threshold_alerts_at_80_and_100_percent_once_each_per_month(store, pc, monkeypatch):
    ids = seed(store, pc, monkeypatch)
    monkeypatch.setenv("AIRFLOW__W365__ALERT_EMAIL", "billing@csp.example")
    # 70 USD of cost x 1.125 = 78.75 of a 100 threshold: below 80%
    pc.usage[("2026-01-10", "interim")] = lines(date(2026, 1, 10), "az-1", 1, total="70.0000")
    sync_usage("interim", date(2026, 1, 10), as_of=date(2026, 1, 11), now=NOW)
    rec = Recorder()
    assert alert_thresholds(date(2026, 1, 11), notifier=rec, now=NOW)["sent"] == []
    # the final figure for the day is higher (72 -> 81.00): the 80% alert, once
    pc.usage[("2026-01-10", "final")] = lines(date(2026, 1, 10), "az-1", 1, total="72.0000")
    sync_usage("final", date(2026, 1, 10), as_of=date(2026, 1, 11), now=NOW)
    assert alert_thresholds(date(2026, 1, 12), notifier=rec, now=NOW)["sent"] == [f"{ids['az-1']}:2026-01:80"]
    assert alert_thresholds(date(2026, 1, 12), notifier=rec, now=NOW)["sent"] == []
    assert rec.sent[0].to == ("billing@csp.example",) and "81.00 USD (81.0%" in rec.sent[0].body
    pc.usage[("2026-01-12", "interim")] = lines(date(2026, 1, 12), "az-1", 1, total="20.0000")
    sync_usage("interim", date(2026, 1, 12), as_of=date(2026, 1, 13), now=NOW)
    assert alert_thresholds(date(2026, 1, 13), notifier=rec, now=NOW)["sent"] == [f"{ids['az-1']}:2026-01:100"]
    assert alert_thresholds(date(2026, 1, 14), notifier=rec, now=NOW)["sent"] == []
    assert len(rec.sent) == 2
    # a new month starts again from zero
    assert alert_thresholds(date(2026, 2, 2), notifier=rec, now=NOW)["subscriptions_checked"] == 1
    assert len(rec.sent) == 2


def test_p1_usage_provider_down_fails_the_job_and_keeps_the_day(store, pc, monkeypatch):
    seed(store, pc, monkeypatch)
    pc.usage[(DAY.isoformat(), "interim")] = lines(DAY, "az-1", 2)
    jobs.run("sync_daily_usage_data", (DAY + timedelta(days=1)).isoformat())
    pc.faults.append(Fault("/v1/usage", 500, 99))
    with pytest.raises(jobs.JobFailed):
        jobs.run("sync_daily_usage_data", (DAY + timedelta(days=1)).isoformat())
    assert len(usage_rows(store)) == 2  # nothing deleted


def test_azure_threshold_in_another_currency_without_a_rate_is_reported(store, pc, monkeypatch):
    ids = seed(store, pc, monkeypatch)
    with store.session() as s:
        from w365.store.models import Subscription

        sub = s.get(Subscription, ids["az-2"])
        sub.currency, sub.usage_threshold = "GBP", Decimal("10.00")  # threshold in GBP, usage in USD: no rate
        s.commit()
    pc.usage[("2026-01-10", "interim")] = lines(date(2026, 1, 10), "az-2", 1, total="70.0000")
    sync_usage("interim", date(2026, 1, 10), as_of=date(2026, 1, 11), now=NOW)
    rec = Recorder()
    report = alert_thresholds(date(2026, 1, 11), notifier=rec, now=NOW)
    assert "no USD->GBP exchange rate" in report["problems"][f"subscription #{ids['az-2']}"]
    assert rec.sent == []
    with store.session() as s:
        assert s.scalar(select(JobException.reason).where(JobException.job == "azure_threshold_violation_alert")).startswith("no USD->GBP")


def test_b3_usage_job_fails_loudly_when_a_contract_cannot_be_invoiced(store, pc, monkeypatch):
    seed(store, pc, monkeypatch)
    pc.usage[("2026-01-31", "final")] = lines(date(2026, 1, 31), "az-3", 1, total="7.0000") + lines(date(2026, 1, 31), "az-1", 1)
    with pytest.raises(jobs.JobFailed, match="1 contract\\(s\\) not invoiced for usage \\(BC-GBP: no USD->GBP"):
        jobs.run("sync_usage_data", "2026-02-01")
    with store.session() as s:  # the others were invoiced and the day loaded
        assert [i.contract.number for i in s.scalars(select(Invoice))] == ["BC-USD"]
        assert s.scalar(select(func.count()).select_from(UsageRecord)) == 2
    with store.session() as s:
        s.add(ExchangeRate(from_currency="USD", to_currency="GBP", rate=Decimal("0.79"), effective_from=date(2025, 1, 1)))
        s.commit()
    report = jobs.run("sync_usage_data", "2026-02-01")  # fixed: the rerun bills only what is missing
    assert [i["contract"] for i in report["billing"]["invoices"]] == ["BC-GBP"]
    assert report["billing"]["already_invoiced"] == 1
