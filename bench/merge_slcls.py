"""Bench (issue 3): merge 20,000 due SLCLs on PostgreSQL; merges per second and peak RSS.

    .venv/bin/python bench/merge_slcls.py [--url postgresql://postgres@127.0.0.1:5432/test] [--count 20000]

Baseline, measured in the same run on the same data: the same writes done as two set-based SQL
statements with no checks at all (UPDATE subscriptions from the SLCLs, INSERT the LCL rows),
rolled back: the floor any merge with per-row validation is compared with.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date, datetime, timezone

sys.path.insert(0, os.path.dirname(__file__))
from _common import DEFAULT_URL, Timer, final_json, peak_rss_mb, run_child, scratch_database  # noqa: E402

BASELINE_SQL = [
    """UPDATE subscription s SET quantity = COALESCE(l.quantity, s.quantity)
       FROM scheduled_license_change_log l WHERE l.subscription_id = s.id AND l.status = 'pending'""",
    """INSERT INTO license_change_log (subscription_id, kind, change_type, direction, quantity_before, quantity_after,
         selling_price_before, selling_price_after, cost_price_before, cost_price_after, sales_unit_before, sales_unit_after,
         status_before, status_after, effective_date, effective_at, bill_from, apply_refund, source, slcl_id,
         provisioning_status, created_at)
       SELECT s.id, 'standard', 'quantity', l.direction, s.quantity, COALESCE(l.quantity, s.quantity), s.selling_price,
         s.selling_price, s.cost_price, s.cost_price, s.sales_unit, s.sales_unit, s.status, s.status, l.effective_date,
         l.scheduled_for, l.bill_from, true, 'slcl', l.id, 'provisioned', now()
       FROM scheduled_license_change_log l JOIN subscription s ON s.id = l.subscription_id WHERE l.status = 'pending'""",
]


def setup(url: str, count: int) -> int:
    from sqlalchemy import delete, func, select, update

    from w365.store.models import BillingContract, ScheduledLicenseChangeLog
    from w365.store.session import session_scope
    from w365.interfaces.demo import DemoSpec, load_demo

    customers = count // 15 + 10
    with session_scope() as s:
        load_demo(s, DemoSpec(customers=customers, contracts_per_customer=2, subscriptions_per_contract=12, slcl_percent=100,
                              changes_per_subscription=1, as_of=date(2026, 1, 1)))
    with session_scope() as s:
        ids = list(s.scalars(select(ScheduledLicenseChangeLog.id).order_by(ScheduledLicenseChangeLog.id)))
        if len(ids) < count:
            raise SystemExit(f"demo produced only {len(ids)} SLCLs")
        s.execute(delete(ScheduledLicenseChangeLog).where(ScheduledLicenseChangeLog.id.in_(ids[count:])))
        # Every change valid at merge time: no contract term ends before its change (C10).
        s.execute(update(BillingContract).values(auto_renew=True))
        return s.scalar(select(func.count()).select_from(ScheduledLicenseChangeLog))


def baseline(url: str) -> float:
    from sqlalchemy import text

    from w365.store.session import get_engine

    with get_engine(url).connect() as c:
        t = c.begin()
        with Timer() as timer:
            for sql in BASELINE_SQL:
                c.execute(text(sql))
        t.rollback()
    return timer.seconds


def child(url: str) -> None:
    os.environ["W365_DATABASE_URL"] = url
    from w365.billing.scheduled_changes import merge_due_slcls

    with Timer() as t:
        report = merge_due_slcls(datetime(2026, 6, 1, tzinfo=timezone.utc))
    print(json.dumps({"merged": len(report.merged), "failed": len(report.failed), "seconds": t.seconds, "peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=DEFAULT_URL)
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    with scratch_database(args.url) as url:
        os.environ["W365_DATABASE_URL"] = url
        with Timer() as t:
            n = setup(url, args.count)
        print(f"setup: {n} due SLCLs loaded in {t.seconds:.1f}s")
        floor = baseline(url)
        r = run_child(__file__, "--child", url)
        rate = r["merged"] / r["seconds"]
        print(f"merge_due_slcls: {r['merged']} merged, {r['failed']} failed, {r['seconds']:.2f}s -> {rate:,.0f} merges/s, peak RSS {r['peak_rss_mb']:.0f} MB")
        print(f"baseline (same writes as 2 set-based SQL statements, no checks): {floor:.2f}s -> {n / floor:,.0f} rows/s")
        print(f"ratio merge/baseline: {r['seconds'] / floor:.1f}x; target >= 5,000 merges/s: {'met' if rate >= 5000 else 'NOT met'}")
        final_json("merge_slcls", slcls=n, merged=r["merged"], failed=r["failed"], seconds=round(r["seconds"], 2),
                   merges_per_s=round(rate), peak_rss_mb=round(r["peak_rss_mb"]), floor_s=round(floor, 2),
                   ratio_to_floor=round(r["seconds"] / floor, 2))


if __name__ == "__main__":
    main()
