"""Overlapping Scheduled Update and full-cycle runs bill what sequential runs bill (issue 11).

On a demo tenant (default 1,500 customers x 5 contracts x 8 subscriptions), run date 2026-12-15:

1. the reference: ``w365 run scheduled_update`` then ``w365 run generate_full_cycle_invoice_monthly``,
   one after the other, on a copy of the tenant;
2. five overlapping runs, each on a fresh copy: both jobs started as separate processes, the
   merge started ``offset`` seconds after the invoice run (a negative offset starts the merge
   first), as the report that filed the issue did with ``&``.

Each copy is then checked: invoices, lines and totals per currency equal the reference's, the
scheduled changes end in the same statuses (no Merge Failed beyond those a C10 rule refuses in
the reference too), and ``w365 verify billing`` (the independent auditor) exits 0. Copies are PostgreSQL databases cloned from a template, so every run starts from the same
state. Prints one line per run and a last line of JSON.

    python bench/overlap.py [--customers 1500] [--offsets=-1,0,0.5,1,2] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from _common import DEFAULT_URL, scratch_database  # noqa: E402

RUN_DATE = "2026-12-15"
JOBS = ("generate_full_cycle_invoice_monthly", "scheduled_update")


def _clone(template_url: str, name: str) -> str:
    """A copy of the template database (PostgreSQL's CREATE DATABASE ... TEMPLATE)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from w365.store.session import dispose_engines

    dispose_engines()  # no connection may stay open on a template
    url = make_url(template_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{url.database}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def _drop(url_text: str) -> None:
    from w365.store.admin import drop_database
    from w365.store.session import dispose_engines

    dispose_engines()
    drop_database(url_text)


def _w365(url: str, *args: str) -> subprocess.Popen:  # type: ignore[type-arg]
    env = {**os.environ, "W365_DATABASE_URL": url}
    return subprocess.Popen([sys.executable, "-m", "w365", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(p: subprocess.Popen, what: str) -> str:  # type: ignore[type-arg]
    out, err = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"{what} failed ({p.returncode}): {err.strip().splitlines()[-1] if err.strip() else out}")
    return out


def _books(url: str) -> dict:
    """What was billed: invoices, lines and totals per currency; SLCL statuses."""
    from sqlalchemy import create_engine, text

    eng = create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with eng.connect() as c:
        totals = {cur: str(t) for cur, t in c.execute(text("SELECT currency, sum(total) FROM invoice GROUP BY currency ORDER BY currency"))}
        invoices = c.scalar(text("SELECT count(*) FROM invoice"))
        lines = c.scalar(text("SELECT count(*) FROM invoice_line"))
        failed = c.scalar(text("SELECT count(*) FROM scheduled_license_change_log WHERE status = 'merge_failed'"))
        slcls = {s: n for s, n in c.execute(text("SELECT status, count(*) FROM scheduled_license_change_log GROUP BY status"))}
        # Why merges failed: a rule at merge time (C10), never a lock conflict (issue 11).
        reasons = {r: n for r, n in c.execute(text(
            "SELECT regexp_replace(regexp_replace(reason, '^subscription #[0-9]+ \\([^)]*\\): ', ''), "
            "'[0-9]{4}-[0-9]{2}-[0-9]{2}|BC-[0-9]+', '…', 'g'), count(*) FROM scheduled_license_change_log "
            "WHERE status = 'merge_failed' GROUP BY 1 ORDER BY 2 DESC"))}
    eng.dispose()
    return {"invoices": invoices, "lines": lines, "totals": totals, "merge_failed": failed, "slcls": slcls, "merge_failed_reasons": reasons}


def _verify(url: str) -> tuple[int, str]:
    p = _w365(url, "verify", "billing")
    out, err = p.communicate()
    last = (out.strip().splitlines() or [""])[-1]
    return p.returncode, last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1500)
    ap.add_argument("--contracts-per-customer", type=int, default=5)
    ap.add_argument("--subscriptions-per-contract", type=int, default=8)
    ap.add_argument("--offsets", default="-1,0,0.5,1,2", help="seconds between starting the invoice run and the merge")
    ap.add_argument("--url", default=DEFAULT_URL)
    args = ap.parse_args()
    offsets = [float(x) for x in args.offsets.split(",")]

    from w365.store.session import get_engine, session_scope
    from w365.interfaces.demo import DemoSpec, load_demo

    with scratch_database(args.url) as template:
        t0 = time.perf_counter()
        with session_scope(get_engine(template)) as s:
            stats = load_demo(s, DemoSpec(customers=args.customers, contracts_per_customer=args.contracts_per_customer,
                                          subscriptions_per_contract=args.subscriptions_per_contract, as_of=date(2026, 11, 20),
                                          slcl_percent=30))
        print(f"demo tenant: {stats} in {time.perf_counter() - t0:.1f} s", flush=True)
        results = []

        ref_url = _clone(template, "w365_overlap_ref")
        try:
            t0 = time.perf_counter()
            _wait(_w365(ref_url, "run", "scheduled_update", "--as-of", RUN_DATE), "scheduled_update")
            _wait(_w365(ref_url, "run", JOBS[0], "--as-of", RUN_DATE), JOBS[0])
            reference = _books(ref_url)
            code, verdict = _verify(ref_url)
            print(f"sequential: {reference['invoices']} invoices, {reference['lines']} lines in {time.perf_counter() - t0:.1f} s; "
                  f"SLCLs {reference['slcls']} (merge failed by a rule: {reference['merge_failed_reasons']}); "
                  f"verify billing exit {code}: {verdict}", flush=True)
            results.append({"run": "sequential", **reference, "verify_exit": code})
        finally:
            _drop(ref_url)

        for k, offset in enumerate(offsets):
            url = _clone(template, f"w365_overlap_{k}")
            try:
                t0 = time.perf_counter()
                first, second = (JOBS[0], JOBS[1]) if offset >= 0 else (JOBS[1], JOBS[0])
                a = _w365(url, "run", first, "--as-of", RUN_DATE)
                time.sleep(abs(offset))  # a bench of real overlaps: the offset is the experiment, not a synchronisation
                b = _w365(url, "run", second, "--as-of", RUN_DATE)
                _wait(a, first)
                _wait(b, second)
                seconds = time.perf_counter() - t0
                books = _books(url)
                code, verdict = _verify(url)
                keys = ("invoices", "lines", "totals", "slcls", "merge_failed_reasons")
                same = {k2: books[k2] for k2 in keys} == {k2: reference[k2] for k2 in keys}
                print(f"overlap {offset:+.1f} s: {books['invoices']} invoices, {books['lines']} lines in {seconds:.1f} s; "
                      f"same as sequential (invoices, lines, totals, SLCL statuses): {same}; verify billing exit {code}: {verdict}", flush=True)
                results.append({"run": f"overlap {offset:+.1f}s", **books, "same_as_sequential": same, "verify_exit": code, "seconds": round(seconds, 1)})
            finally:
                _drop(url)

    # Merge failures by a rule (C10) are the data's, the same in every run; the overlap must add none.
    ok = all(r.get("same_as_sequential", True) and r["verify_exit"] == 0 for r in results)
    print(json.dumps({"bench": "overlap", "customers": args.customers, "ok": ok, "runs": results}, default=str))


if __name__ == "__main__":
    main()
