"""Benchmark: load one day of 1,000,000 Azure usage lines into PostgreSQL (issue 5).

    .venv/bin/python bench/usage_load.py --url postgresql://postgres@127.0.0.1:5432/test

Creates a scratch database on that server (dropped afterwards unless --keep), migrates it, adds
one Partner Center provider with --subscriptions usage subscriptions, writes a file-drop CSV of
--lines usage line items for one day (--meters per subscription; --dup-share of the lines repeat
a meter, so they are summed), then times, in this run:

* read:   the file-drop provider reading the CSV (pandas, every column as text);
* load:   ``w365.usage.load_usage`` (checks, aggregation, delete of the day, COPY) + commit;
* resync: the same day loaded again (replaces every row: delete + COPY) + commit;
* baseline: a raw ``COPY usage_record FROM STDIN`` of exactly the rows ``load`` inserts (COPY text,
  prepared beforehand, untimed) + commit, into the same (emptied) table with the same indexes and
  foreign keys; run once before and once after the loads, the mean is the baseline.

Prints seconds, rows/s, the ratio load / baseline and the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "include"))
from _common import final_json  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s") if os.environ.get("BENCH_LOG") else None
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="PostgreSQL server URL; a scratch database is created on it")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--subscriptions", type=int, default=2000)
    ap.add_argument("--dup-share", type=float, default=0.0, help="share of lines repeating a (subscription, meter) of the day")
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd
    from sqlalchemy import create_engine, func, insert, select, text
    from sqlalchemy.engine import make_url

    from w365 import store as w365_store
    from w365.store.models import BillingContract, Customer, Product, ProductKind, Provider, ProviderKind, Subscription, UsageRecord
    from w365.store.session import _normalise, dispose_engines, get_engine, session_scope
    from w365.integrations.providers.file_drop import FileDropProvider
    from w365.integrations.usage_sync import COLUMNS, copy_cells, load_usage, prepare, provider_usage_subscriptions

    base = _normalise(args.url)
    name = f"w365_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    day = date(2026, 1, 14)
    now = datetime(2026, 1, 15, 4, 0, tzinfo=timezone.utc)
    try:
        w365_store.upgrade(url)
        engine = get_engine(url)
        n_subs = args.subscriptions
        with session_scope(engine) as s:
            prov = Provider(name="Microsoft Partner Center", kind=ProviderKind.PARTNER_CENTER, connection_id="partner_center")
            prod = Product(sku="DZH318Z0BPS6", name="Azure plan", kind=ProductKind.USAGE, offer_id="DZH318Z0BPS6")
            s.add_all([prov, prod])
            s.flush()
            s.execute(insert(Customer), [{"id": i, "name": f"Customer {i}", "provider_tenant_id": f"tenant-{i:05d}", "created_at": now}
                                         for i in range(1, n_subs + 1)])
            s.execute(insert(BillingContract), [{"id": i, "number": f"BC-{i:06d}", "customer_id": i, "frequency": "MONTHLY",
                                                 "currency": "USD", "start_date": date(2025, 1, 1), "next_invoice_date": date(2026, 2, 1),
                                                 "created_at": now} for i in range(1, n_subs + 1)])
            s.execute(insert(Subscription), [{
                "id": i, "name": f"Azure plan {i}", "product_id": prod.id, "provider_id": prov.id, "customer_id": i, "contract_id": i,
                "quantity": 1, "selling_price": 0, "cost_price": 0, "sales_unit": "MONTHLY", "currency": "USD",
                "provider_subscription_id": f"az-{i:05d}", "start_date": date(2025, 1, 1), "created_at": now, "updated_at": now,
            } for i in range(1, n_subs + 1)])
            for t in ("customer", "billing_contract", "subscription"):
                s.execute(text(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT MAX(id) FROM {t}))"))
            provider_id = prov.id

        # A day of usage as a file-drop CSV (Partner Center's column names).
        rng = np.random.default_rng(365)
        n = args.lines
        unique = n - int(n * args.dup_share)
        sub_idx = np.arange(unique) % n_subs + 1
        meter_idx = np.arange(unique) // n_subs
        if n > unique:  # repeat some (subscription, meter) pairs: they are summed into one row
            pick = rng.integers(0, unique, n - unique)
            sub_idx, meter_idx = np.concatenate([sub_idx, sub_idx[pick]]), np.concatenate([meter_idx, meter_idx[pick]])
        cents = rng.integers(1, 5_000_000, n)  # pre-tax total in 1/10000
        qty = rng.integers(1, 10_000_000, n)  # quantity in 1/1000000
        frame = pd.DataFrame({
            "customerId": pd.Series(sub_idx).map(lambda i: f"tenant-{i:05d}"),
            "subscriptionId": pd.Series(sub_idx).map(lambda i: f"az-{i:05d}"),
            "meterId": pd.Series(meter_idx).map(lambda m: f"meter-{m:04d}"),
            "meterName": "Virtual Machines D2s v5",
            "unitOfMeasure": "1 Hour",
            "usageDate": day.isoformat(),
            "quantity": pd.Series(qty // 1_000_000).astype(str) + "." + pd.Series(qty % 1_000_000).astype(str).str.zfill(6),
            "unitPrice": "0.096000",
            "preTaxTotal": pd.Series(cents // 10_000).astype(str) + "." + pd.Series(cents % 10_000).astype(str).str.zfill(4),
            "currency": "USD",
        })
        folder = Path(os.environ.get("TMPDIR", "/tmp")) / name
        (folder / "usage" / "final").mkdir(parents=True)
        csv_path = folder / "usage" / "final" / f"{day.isoformat()}.csv"
        frame.to_csv(csv_path, index=False)
        del frame
        size_mb = csv_path.stat().st_size / 1e6
        print(f"usage file: {n:,} lines ({args.dup_share:.0%} repeating a meter), {n_subs:,} subscriptions, {size_mb:.0f} MB")

        t0 = time.perf_counter()
        usage = FileDropProvider(folder).usage(day, "final")
        t_read = time.perf_counter() - t0

        # The baseline's input: exactly the rows load_usage will insert, as COPY text (untimed).
        with session_scope(engine) as s:
            subs = provider_usage_subscriptions(s, provider_id)
        prepared, _problems, _held = prepare(usage, kind="final", day=day, subs=subs)
        baseline_text = "\n".join(map("\t".join, zip(*copy_cells(prepared, now)))) + "\n"
        del prepared

        def baseline() -> float:
            raw = engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute("TRUNCATE usage_record")
                raw.commit()
                t0 = time.perf_counter()
                cur.copy_expert(f"COPY usage_record ({', '.join(COLUMNS)}) FROM STDIN", io.StringIO(baseline_text))
                raw.commit()
                took = time.perf_counter() - t0
                cur.execute("TRUNCATE usage_record")
                raw.commit()
                return took
            finally:
                raw.close()

        t_base_1 = baseline()  # before our loads (cold)

        t0 = time.perf_counter()
        with session_scope(engine) as s:
            res = load_usage(s, provider_id, "final", day, usage, now=now, provider_name="bench")
        t_load = time.perf_counter() - t0
        assert not res.held_back, res.held_back

        t0 = time.perf_counter()
        with session_scope(engine) as s:
            again = load_usage(s, provider_id, "final", day, usage, now=now, provider_name="bench")
        t_resync = time.perf_counter() - t0
        with session_scope(engine) as s:
            stored = s.scalar(select(func.count()).select_from(UsageRecord))
        assert stored == res.rows_loaded == again.rows_loaded == again.rows_replaced, (stored, res, again)

        t_base_2 = baseline()  # after them (warm)
        t_base = (t_base_1 + t_base_2) / 2

        rows = res.rows_loaded
        print(f"read CSV (file drop)      {t_read:7.2f} s  {n / t_read:12,.0f} lines/s")
        print(f"load (check+sum+COPY)     {t_load:7.2f} s  {rows / t_load:12,.0f} rows/s   -> {rows:,} rows")
        print(f"read + load               {t_read + t_load:7.2f} s  {n / (t_read + t_load):12,.0f} lines/s")
        print(f"re-sync (delete+COPY)     {t_resync:7.2f} s  {rows / t_resync:12,.0f} rows/s   replaced {again.rows_replaced:,}")
        print(f"baseline raw COPY         {t_base:7.2f} s  {rows / t_base:12,.0f} rows/s   (runs: {t_base_1:.2f} s before, {t_base_2:.2f} s after)")
        print(f"ratio load / baseline     {t_load / t_base:7.2f}")
        print(f"ratio read+load / baseline{(t_read + t_load) / t_base:7.2f}")
        print(f"peak RSS                  {peak_rss_mb():7.0f} MB")
        final_json("usage_load", lines=n, rows=rows, read_s=round(t_read, 2), load_s=round(t_load, 2), resync_s=round(t_resync, 2),
                   floor_s=round(t_base, 2), ratio_to_floor=round(t_load / t_base, 2), peak_rss_mb=round(peak_rss_mb()))
    finally:
        dispose_engines()
        if not args.keep:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            import shutil

            shutil.rmtree(Path(os.environ.get("TMPDIR", "/tmp")) / name, ignore_errors=True)
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
