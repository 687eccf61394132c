"""Update Pricing on Product Price (SPEC P3, S3, M1)."""

import json
from datetime import date
from decimal import Decimal

from sqlalchemy import func, select

import factories as f
from w365.orchestration import jobs
from w365.store.models import JobException, LicenseChangeLog, ProductPrice, Subscription

AS_OF = date(2026, 3, 1)
HEADER = "sku,sales_unit,currency,cost_price,selling_price,effective_from,price_list\n"


def seed(store):
    with store.session() as s:
        basic = f.product(s, sku="BASIC")
        f.product(s, sku="PREM")
        s.add(ProductPrice(product_id=basic.id, sales_unit="MONTHLY", currency="USD", cost_price=Decimal("5.10"),
                           selling_price=Decimal("6.00"), effective_from=date(2025, 1, 1)))
        c = f.contract(s, f.customer(s))
        sub = f.subscription(s, c, prod=basic, price="6.00", cost="5.10", quantity=4)
        s.commit()
        return sub.id


def prices(store):
    with store.session() as s:
        return sorted((p.product_id, p.price_list, p.sales_unit, p.currency, p.effective_from, p.cost_price, p.selling_price)
                      for p in s.scalars(select(ProductPrice)))


def test_p3_new_prices_are_inserted_with_their_dates_history_untouched(store, tmp_path):
    seed(store)
    before = prices(store)
    path = tmp_path / "price_list.csv"
    path.write_text(HEADER + "BASIC,MONTHLY,USD,5.10,6.00,2025-01-01,\n"  # identical: no-op
                    "BASIC,MONTHLY,USD,5.40,6.50,2026-03-01,\n"  # a price change: a new row
                    "PREM,ANNUAL,EUR,200.123456,264,2026-04-01,partner\n")
    report = jobs.run("update_pricing_on_product_price", AS_OF.isoformat(), path=str(path))
    assert (report["inserted"], report["unchanged"], report["conflicts"], report["bad_rows"]) == (2, 1, {}, {})
    after = prices(store)
    assert set(before) < set(after) and len(after) == 3
    assert any(p[1:] == ("partner", "ANNUAL", "EUR", date(2026, 4, 1), Decimal("200.123456"), Decimal("264")) for p in after)
    again = jobs.run("update_pricing_on_product_price", AS_OF.isoformat(), path=str(path))
    assert (again["inserted"], again["unchanged"]) == (0, 3) and prices(store) == after


def test_p3_a_different_price_for_a_published_date_is_a_conflict_not_an_overwrite(store, tmp_path):
    seed(store)
    path = tmp_path / "price_list.csv"
    path.write_text(HEADER + "BASIC,MONTHLY,USD,5.00,7.00,2025-01-01,\n")
    report = jobs.run("update_pricing_on_product_price", AS_OF.isoformat(), path=str(path))
    (key,) = report["conflicts"]
    assert key == "BASIC/default/MONTHLY/USD/2025-01-01" and "Not overwritten" in report["conflicts"][key]
    with store.session() as s:
        pp = s.scalars(select(ProductPrice)).one()
        assert (pp.cost_price, pp.selling_price) == (Decimal("5.10"), Decimal("6.00"))


def test_p3_bad_rows_are_reported_and_the_rest_load(store, tmp_path):
    seed(store)
    path = tmp_path / "price_list.csv"
    path.write_text(HEADER + "NOPE,MONTHLY,USD,1,2,2026-01-01,\n"
                    "BASIC,WEEKLY,USD,1,2,2026-01-01,\n"
                    "BASIC,MONTHLY,XXX,1,2,2026-01-01,\n"
                    "BASIC,MONTHLY,USD,1.1234567,2,2026-01-01,\n"
                    "BASIC,MONTHLY,USD,-1,2,2026-01-01,\n"
                    "BASIC,MONTHLY,USD,1,2,01/02/2026,\n"
                    "PREM,MONTHLY,USD,1,2,2026-01-01,\n"
                    "PREM,MONTHLY,GBP,1,2,2026-01-01,\n"
                    "PREM,MONTHLY,GBP,1,3,2026-01-01,\n"
                    "PREM,MONTHLY,GBP,1,3,2026-02-01,\n")
    report = jobs.run("update_pricing_on_product_price", AS_OF.isoformat(), path=str(path))
    assert report["inserted"] == 2  # PREM USD, PREM GBP Feb
    bad = report["bad_rows"]
    assert "unknown sku 'NOPE'" in bad["price_list.csv line 2"]
    assert "not in the unit mapping" in bad["price_list.csv line 3"]
    assert "unknown currency" in bad["price_list.csv line 4"]
    assert "decimal places" in bad["price_list.csv line 5"]
    assert "negative" in bad["price_list.csv line 6"]
    assert "not a date" in bad["price_list.csv line 7"]
    assert "other prices" in bad["price_list.csv line 9"] and "other prices" in bad["price_list.csv line 10"]
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(JobException).where(JobException.entity_type == "price_row")) == 8
    again = jobs.run("update_pricing_on_product_price", AS_OF.isoformat(), path=str(path))
    assert again["inserted"] == 0 and len(again["bad_rows"]) == 8
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(JobException).where(JobException.entity_type == "price_row")) == 8


def test_p3_subscriptions_priced_from_the_list_are_reported_not_changed(store, tmp_path, monkeypatch):
    sub_id = seed(store)
    path = tmp_path / "list"
    path.mkdir()
    (path / "price_list.csv").write_text(HEADER + "BASIC,MONTHLY,USD,5.40,6.50,2026-03-01,\n")
    # the list location from the connection w365_price_list (a folder holding price_list.csv)
    monkeypatch.setenv("AIRFLOW_CONN_W365_PRICE_LIST", json.dumps({"conn_type": "fs", "extra": {"path": str(path)}}))
    before = jobs.run("update_pricing_on_product_price", "2026-02-28")
    assert before["price_drift"] == []  # the new price is not effective yet
    report = jobs.run("update_pricing_on_product_price", AS_OF.isoformat())
    (drift,) = report["price_drift"]
    assert (drift["subscription_id"], drift["selling_price"], drift["list_selling_price"], drift["list_effective_from"]) == (
        str(sub_id), "6.00", "6.50", "2026-03-01")
    with store.session() as s:
        sub = s.get(Subscription, sub_id)
        assert (sub.selling_price, sub.cost_price) == (Decimal("6.00"), Decimal("5.10"))  # unchanged: only LCLs change prices
        assert s.scalar(select(func.count()).select_from(LicenseChangeLog)) == 1
        reason = s.scalar(select(JobException.reason).where(JobException.entity_type == "subscription_price"))
        assert "the list says 6.50 / 5.40 from 2026-03-01" in reason


def test_p3_unconfigured_price_list_is_reported_not_failed(store):
    seed(store)
    report = jobs.run("update_pricing_on_product_price", AS_OF.isoformat())
    assert report["status"].startswith("not configured")
