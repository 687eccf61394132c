"""Shared bench helpers: a throw-away PostgreSQL database and peak-RSS measurement."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator


DEFAULT_URL = os.environ.get("W365_BENCH_DATABASE_URL") or os.environ.get("W365_TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def scratch_database(base_url: str, keep: bool = False) -> Iterator[str]:
    """A new, migrated billing store on the server of ``base_url``; dropped afterwards."""
    from w365 import store as w365_store
    from w365.store.admin import create_scratch_database, drop_database
    from w365.store.session import dispose_engines

    url = create_scratch_database(base_url, "w365_bench")
    try:
        w365_store.upgrade(url)
        yield url
    finally:
        dispose_engines()
        if not keep:
            drop_database(url)


def peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM. Not ru_maxrss, which Linux carries over from the
    parent through fork and exec, so a child started by a parent holding generated data would
    report the parent's size (issue 15: the usage bench's 1.4 GB was mostly that)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # KiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(module_file: str, *args: str) -> dict:
    """Run a measured step in a fresh interpreter, so its peak RSS is its own."""
    out = subprocess.run([sys.executable, module_file, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


class Timer:
    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def final_json(bench: str, **figures: object) -> None:
    """Every bench's last line: its figures as one JSON object, dated (bench/RESULTS.md keeps a
    dated row per run)."""
    from datetime import date

    print(json.dumps({"bench": bench, "date": date.today().isoformat(), **figures}, default=str))


def books_digest(url: str) -> str:
    """A digest of what the run billed (every line's contract, period, quantity, unit price and
    amount; every invoice's total): two versions of w365 that bill alike print the same digest."""
    import hashlib

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg2"))
    h = hashlib.sha256()
    with engine.connect() as conn:
        for row in conn.execute(text(
            "SELECT c.number, i.kind, i.period_from, i.total, l.subscription_id, l.kind, l.period_from, l.period_to, l.quantity, "
            "l.unit_price, l.days, l.period_days, l.proration_factor, l.amount FROM invoice i JOIN billing_contract c ON c.id = i.contract_id "
            "JOIN invoice_line l ON l.invoice_id = i.id ORDER BY c.number, i.kind, i.period_from, l.subscription_id, l.kind, l.period_from, l.amount"
        )):
            h.update(repr(tuple(str(v) for v in row)).encode())
    engine.dispose()
    return h.hexdigest()[:16]


def run_full_cycles(as_of: Any) -> dict:
    """The three full-cycle invoicing runs (monthly, quarterly, annual) for ``as_of``, timed
    together, with per-group figures: what a day's invoicing jobs do, for every bench that times it."""
    from w365.billing.invoicing.dispatcher import generate_full_cycle_invoices

    out: dict = {"invoices": 0, "lines": 0, "skipped": 0, "by_job": {}}
    with Timer() as t:
        for group in ("monthly", "quarterly", "annual"):
            r = generate_full_cycle_invoices(group, as_of)
            out["by_job"][group] = {"contracts": r.contracts_considered, "invoices": len(r.invoices), "lines": r.lines, "seconds": r.seconds}
            out["invoices"] += len(r.invoices)
            out["lines"] += r.lines
            out["skipped"] += len(r.skipped)
    out.update(seconds=t.seconds, peak_rss_mb=peak_rss_mb())
    return out
