"""Benchmark: load one day of 1,000,000 Azure usage lines into PostgreSQL (issue 5).

    .venv/bin/python bench/usage_load.py --url postgresql://postgres@127.0.0.1:5432/test

Creates a scratch database on that server (dropped afterwards unless --keep), migrates it, adds
one Partner Center provider with --subscriptions usage subscriptions, writes a file-drop CSV of
--lines usage line items for one day (--meters per subscription; --dup-share of the lines repeat
a meter, so they are summed), then times, in this run:

* load:   ``w365.integrations.usage_day.load_usage`` fed by the file-drop provider's chunks
          (read the CSV in chunks, checks, aggregation, delete of the day, COPY) + commit, in a
          fresh child process, so its peak RSS is the load's own (not this script's data making);
          the time spent reading the CSV inside it is reported too ("read");
* resync: the same day loaded again (replaces every row: delete + COPY) + commit, same child;
* baseline: a raw ``COPY usage_record FROM STDIN`` of exactly the rows ``load`` inserts (COPY text,
  prepared beforehand, untimed) + commit, into the same (emptied) table with the same indexes and
  foreign keys; run once before and once after the loads, the mean is the baseline.

Prints seconds, rows/s, the ratios load / baseline (with and without the CSV reading) and
the loading process's peak RSS.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "include"))
from _common import final_json, peak_rss_mb  # noqa: E402


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
    from w365.integrations.usage_day import COLUMNS, copy_cells, prepare, provider_usage_subscriptions

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

        # The baseline's input: exactly the rows load_usage will insert, as COPY text (untimed).
        usage = FileDropProvider(folder).usage(day, "final")
        with session_scope(engine) as s:
            subs = provider_usage_subscriptions(s, provider_id)
        prepared, _problems, _held = prepare(usage, kind="final", day=day, subs=subs)
        baseline_text = "\n".join(map("\t".join, zip(*copy_cells(prepared, now)))) + "\n"
        del prepared, usage

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
        child = subprocess.run(
            [sys.executable, __file__, "--load-child", url, str(folder), str(provider_id), day.isoformat(), now.isoformat()],
            check=True, stdout=subprocess.PIPE, text=True)
        res = json.loads(child.stdout.strip().splitlines()[-1])
        t_read, t_load, t_resync = res["read_s"], res["load_s"], res["resync_s"]
        with session_scope(engine) as s:
            stored = s.scalar(select(func.count()).select_from(UsageRecord))
        assert stored == res["rows"] == res["replaced"], (stored, res)

        t_base_2 = baseline()  # after them (warm)
        t_base = (t_base_1 + t_base_2) / 2

        rows = res["rows"]
        rss = res["peak_rss_mb"]
        print(f"load (read+check+sum+COPY){t_load:7.2f} s  {rows / t_load:12,.0f} rows/s   -> {rows:,} rows")
        print(f"  of which reading the CSV{t_read:7.2f} s  {n / t_read:12,.0f} lines/s")
        print(f"re-sync (delete+COPY)     {t_resync:7.2f} s  {rows / t_resync:12,.0f} rows/s   replaced {res['replaced']:,}")
        print(f"baseline raw COPY         {t_base:7.2f} s  {rows / t_base:12,.0f} rows/s   (runs: {t_base_1:.2f} s before, {t_base_2:.2f} s after)")
        print(f"ratio load / baseline     {t_load / t_base:7.2f}   (without the CSV reading: {(t_load - t_read) / t_base:.2f})")
        print(f"peak RSS of the load      {rss:7.0f} MB")
        final_json("usage_load", lines=n, rows=rows, read_s=round(t_read, 2), load_s=round(t_load, 2), resync_s=round(t_resync, 2),
                   floor_s=round(t_base, 2), ratio_to_floor=round(t_load / t_base, 2),
                   ratio_to_floor_without_read=round((t_load - t_read) / t_base, 2), peak_rss_mb=round(rss))
    finally:
        dispose_engines()
        if not args.keep:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            import shutil

            shutil.rmtree(Path(os.environ.get("TMPDIR", "/tmp")) / name, ignore_errors=True)
        admin.dispose()
    return 0


def load_child(url: str, folder: str, provider_id: int, day: date, now: datetime) -> int:
    """The timed loads, in a fresh process: its peak RSS is what loading a day costs."""
    from w365.integrations.providers.file_drop import FileDropProvider
    from w365.integrations.usage_day import load_usage
    from w365.store.session import get_engine, session_scope

    engine = get_engine(url)
    read = [0.0]

    def timed(chunks: Iterator[Any]) -> Iterator[Any]:
        while True:
            t0 = time.perf_counter()
            chunk = next(chunks, None)
            read[0] += time.perf_counter() - t0
            if chunk is None:
                return
            yield chunk

    def load() -> tuple[float, Any]:
        chunks = FileDropProvider(Path(folder)).usage_batches(day, "final")
        assert chunks is not None
        t0 = time.perf_counter()
        with session_scope(engine) as s:
            res = load_usage(s, provider_id, "final", day, timed(chunks), now=now, provider_name="bench")
        assert not res.held_back, res.held_back
        return time.perf_counter() - t0, res

    t_load, res = load()
    t_read = read[0]
    t_resync, again = load()
    print(json.dumps({"read_s": t_read, "load_s": t_load, "resync_s": t_resync, "rows": res.rows_loaded,
                      "replaced": again.rows_replaced, "peak_rss_mb": peak_rss_mb()}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load-child":
        _, _, c_url, c_folder, c_provider, c_day, c_now = sys.argv
        sys.exit(load_child(c_url, c_folder, int(c_provider), date.fromisoformat(c_day), datetime.fromisoformat(c_now)))
    sys.exit(main())
