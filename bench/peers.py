"""Bench (issue 15): w365's full-cycle invoicing against a peer open-source billing engine, django-silver 0.11.1.

    .venv/bin/python bench/peers.py [--url postgresql://postgres@127.0.0.1:5432/test]
        [--venv /tmp/w365-peers-venv] [--subscriptions 1000] [--per-contract 5] [--billing-date YYYY-MM-DD]

Both engines bill the same tenant on the same PostgreSQL server, each in its own scratch database
(dropped at the end): ``--subscriptions`` licence subscriptions in groups of ``--per-contract``
(one w365 billing contract, one silver customer with consolidated billing); every fourth group
is annual (a quarter of the subscriptions), the others
monthly. Periods are calendar-aligned, as silver's always are: monthly groups start on the 1st of
the month before the billing date D, annual ones on 1 January of D's year (of the year before D
when D is 1 January). Every subscription starts mid-cycle (a random day strictly after its
period's start and before D), so the first bill prorates. Nothing was billed before.

What is timed, each in a fresh process whose peak RSS is reported:

* silver: ``silver.documents_generator.DocumentsGenerator().generate(billing_date=D)`` and
  nothing else, in a child running in silver's own virtualenv; the Django settings module is
  written to a temp dir, ``migrate`` and the tenant (product codes, a provider with the invoice
  flow and issued documents, plans, customers, subscriptions activated with past start dates,
  all through silver's ORM) come before the clock starts. Its SQL statements are counted
  (Django's execute_wrapper).
* w365: ``generate_full_cycle_invoices(group, D)`` for the monthly, quarterly and annual groups
  (as bench/full_cycle.py does); the tenant is written through w365's models and
  ``create_subscription`` beforehand, and the engine is connected before the clock starts.

Why a past date: silver bills nothing for a billing date after today
(``Subscription.should_be_billed``), so D defaults to the first day of the current month.

What each run includes: both write numbered, issued documents with one entry/line per billed
period of each subscription (for a monthly subscription, the prorated stub of the previous month
and the current month billed in advance; for an annual one, the prorated stub of the year).
w365 writes one invoice per contract and period, silver one document per customer and run (both
periods on it). silver also writes a BillingLog row per subscription and document, a PDF row per issued document
(marked dirty: rendering is a separate celery task, not timed) and renders each entry's
description and unit from Django templates; it commits statement by statement (autocommit, no
run-level transaction). w365 writes per batch of 500 contracts in one transaction, with gapless
numbering, the lines' links to their change logs and the contracts' next invoice dates. No
payment transactions on either side (SILVER_AUTOMATICALLY_CREATE_TRANSACTIONS = False; the
customers have no payment method anyway), no metered features / usage.

silver's virtualenv: created with ``python3.11 -m venv`` at ``--venv`` when missing (never the
project's), then ``pip install`` of the pins below, which are what works on Python 3.11 with
PostgreSQL 15: django-silver 0.11.1 requires Django >=3.1,<3.3 (3.2.25, the last 3.2) and
psycopg2-binary 2.9.13 works with Django 3.2.25; typing_extensions is imported by django-annoying
0.10.8 (a silver requirement) without being declared; the rest comes from silver's own ranges.

The amounts billed are printed too, per plan interval: the monthly ones agree within cents (silver
rounds its proration factor to 4 decimals); silver prorates an annual plan by the length of the
stub's first month, not the year's, so its annual amounts are about 12 times w365's.

Prints both rates (subscriptions billed per second; documents and entries / invoices and lines
per second), the ratio w365/silver (the issue's aim: >= 100x silver's subscriptions per second)
and, last, one line of JSON with every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

sys.path.insert(0, os.path.dirname(__file__))
from _common import DEFAULT_URL, Timer, peak_rss_mb, run_child, run_full_cycles, scratch_database  # noqa: E402

SILVER_PINS = ("django-silver==0.11.1", "Django==3.2.25", "psycopg2-binary==2.9.13", "typing_extensions==4.16.0")
DEFAULT_VENV = os.path.join(tempfile.gettempdir(), "w365-peers-venv")
AIM = 100  # issue 15: w365 bills at least 100x as many subscriptions per second as silver

# (code, name, monthly USD price): the demo tenant's licence catalogue (w365.interfaces.demo.PRODUCTS).
LICENCES = (
    ("CFQ7TTC0LH18", "Microsoft 365 Business Basic", "6.00"),
    ("CFQ7TTC0LDPB", "Microsoft 365 Business Standard", "12.50"),
    ("CFQ7TTC0LCHC", "Microsoft 365 Business Premium", "22.00"),
    ("CFQ7TTC0LFLZ", "Microsoft 365 E3", "36.00"),
    ("CFQ7TTC0LFK5", "Microsoft 365 E5", "57.00"),
    ("CFQ7TTC0LH16", "Exchange Online (Plan 1)", "4.00"),
    ("CFQ7TTC0LGZW", "Dynamics 365 Business Central Essentials", "70.00"),
)


# --------------------------------------------------------------------------------------------
# The tenant, the same for both engines


def tenant_shape(subscriptions: int, per_contract: int, billing_date: date, seed: int = 365) -> list[dict]:
    """Groups (w365 contracts, silver customers) of subscriptions: ``annual``, the period start
    and, per subscription, (index in LICENCES, start date strictly inside the first period)."""
    rng = random.Random(seed)
    last = billing_date - timedelta(days=1)
    month0, year0 = last.replace(day=1), date(last.year, 1, 1)
    groups = []
    for g in range(math.ceil(subscriptions / per_contract)):
        annual = g % 4 == 3
        start = year0 if annual else month0
        span = (billing_date - start).days  # >= 2: a start day after the period's first and before D
        n = min(per_contract, subscriptions - g * per_contract)
        subs = [(rng.randrange(len(LICENCES)), start + timedelta(days=rng.randrange(1, span))) for _ in range(n)]
        groups.append({"annual": annual, "start": start, "subs": subs})
    return groups


def describe(groups: list[dict]) -> dict:
    subs = [s for g in groups for s in g["subs"]]
    annual = sum(len(g["subs"]) for g in groups if g["annual"])
    return {"groups": len(groups), "subscriptions": len(subs), "annual": annual, "monthly": len(subs) - annual,
            "first_start": min(s[1] for s in subs).isoformat(), "last_start": max(s[1] for s in subs).isoformat()}


def shape_of(args: argparse.Namespace) -> list[dict]:
    return tenant_shape(args.subscriptions, args.per_contract, date.fromisoformat(args.billing_date))


# --------------------------------------------------------------------------------------------
# silver: its virtualenv, and the child that runs in it


def ensure_venv(path: str) -> str:
    """silver's own virtualenv (never the project's): created and filled when missing or stale."""
    python = os.path.join(path, "bin", "python")
    if os.path.abspath(path) == os.path.abspath(sys.prefix):
        raise SystemExit(f"--venv {path} is the virtualenv running this script: silver needs its own")
    if not os.path.exists(python):
        base = shutil.which("python3.11") or sys.executable
        subprocess.run([base, "-m", "venv", path], check=True)
    check = ("import importlib.metadata as m, sys; "
             f"sys.exit(any(m.version(p.split('==')[0]) != p.split('==')[1] for p in {list(SILVER_PINS)!r}))")
    if subprocess.run([python, "-c", check], capture_output=True).returncode != 0:
        print(f"installing {' '.join(SILVER_PINS)} into {path} ...", flush=True)
        out = subprocess.run([python, "-m", "pip", "install", "--quiet", *SILVER_PINS], capture_output=True, text=True)
        if out.returncode != 0:
            sys.stderr.write(out.stdout + out.stderr)
            raise SystemExit(f"pip install into {path} failed")
    return python


SETTINGS = """\
SECRET_KEY = "w365-peers-bench"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_fsm", "rest_framework", "django_filters", "silver"]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.postgresql", "NAME": {name!r}, "HOST": {host!r}, "PORT": {port!r},
                         "USER": {user!r}, "PASSWORD": {password!r}}}}}
TEMPLATES = [{{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True, "DIRS": [], "OPTIONS": {{}}}}]
MEDIA_ROOT = {media!r}
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
PAYMENT_PROCESSORS = {{}}
PAYMENT_METHOD_SECRET = b"w365-peers-bench"
SILVER_AUTOMATICALLY_CREATE_TRANSACTIONS = False
"""


def silver_child(url: str, args: argparse.Namespace) -> None:
    """In silver's virtualenv: settings, migrate, the tenant through silver's ORM, then the timed
    bill run; prints one JSON line."""
    from urllib.parse import unquote, urlsplit

    billing_date = date.fromisoformat(args.billing_date)
    u = urlsplit(url)
    tmp = tempfile.mkdtemp(prefix="w365-peers-silver-")
    try:
        with open(os.path.join(tmp, "peers_silver_settings.py"), "w") as fh:
            fh.write(SETTINGS.format(name=u.path.lstrip("/"), host=u.hostname or "", port=str(u.port or ""),
                                     user=unquote(u.username or ""), password=unquote(u.password or ""), media=tmp))
        sys.path.insert(0, tmp)
        os.environ["DJANGO_SETTINGS_MODULE"] = "peers_silver_settings"
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection
        from django.db.models import Sum
        from django.utils import translation

        from importlib.metadata import version

        from silver.documents_generator import DocumentsGenerator
        from silver.models import PDF, BillingLog, Customer, DocumentEntry, Invoice, Plan, ProductCode, Provider, Subscription

        with Timer() as t_migrate:
            call_command("migrate", verbosity=0)
        with Timer() as t_setup:
            provider = Provider.objects.create(
                name="Contoso Cloud Partners", company="Contoso Cloud Partners", address_1="1 Microsoft Way", city="Redmond",
                country="US", flow=Provider.FLOWS.INVOICE, invoice_series="INV", invoice_starting_number=1,
                default_document_state=Provider.DEFAULT_DOC_STATE.ISSUED,
            )
            plans = {}
            for i, (code, name, monthly) in enumerate(LICENCES):
                for annual in (False, True):
                    pc = ProductCode.objects.create(value=f"{code}-{'Y' if annual else 'M'}")
                    plans[i, annual] = Plan.objects.create(
                        name=f"{name} ({'annual' if annual else 'monthly'})", interval=Plan.INTERVALS.YEAR if annual else Plan.INTERVALS.MONTH,
                        interval_count=1, amount=Decimal(monthly) * (12 if annual else 1), currency="USD", product_code=pc, provider=provider,
                    )
            for g, group in enumerate(shape_of(args)):
                customer = Customer.objects.create(first_name="Customer", last_name=str(g + 1), company=f"Customer {g + 1}",
                                                   address_1="1 Main Street", city="Seattle", country="US", consolidated_billing=True,
                                                   payment_due_days=30)
                for product, start in group["subs"]:
                    sub = Subscription(plan=plans[product, group["annual"]], customer=customer, start_date=start)
                    sub.activate(start_date=start)
                    sub.save()
        translation.activate("en-us")  # as silver's generate_docs command does
        queries = [0]

        def count(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
            queries[0] += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(count), Timer() as t:
            DocumentsGenerator().generate(billing_date=billing_date)
        invoices = Invoice.objects.all()
        out = {
            "silver_version": version("django-silver"), "django_version": django.get_version(),
            "seconds": t.seconds, "peak_rss_mb": peak_rss_mb(), "queries": queries[0],
            "migrate_seconds": t_migrate.seconds, "setup_seconds": t_setup.seconds,
            "subscriptions": Subscription.objects.filter(state=Subscription.STATES.ACTIVE).count(),
            "subscriptions_billed": BillingLog.objects.values("subscription").distinct().count(),
            "documents": invoices.count(), "issued": invoices.filter(state="issued").count(),
            "numbered": invoices.exclude(number=None).count(), "entries": DocumentEntry.objects.count(),
            "prorated_entries": DocumentEntry.objects.filter(prorated=True).count(), "billing_logs": BillingLog.objects.count(),
            "pdf_rows": PDF.objects.count(), "pdf_rendered": PDF.objects.exclude(pdf_file="").exclude(pdf_file=None).count(),
            "total": str(invoices.aggregate(s=Sum("_total"))["s"] or 0),
        }
        for unit, suffix in (("monthly", "-M"), ("annual", "-Y")):  # what the entries of each plan interval add up to
            entries = DocumentEntry.objects.filter(product_code__value__endswith=suffix)
            out[f"total_{unit}"] = str(sum((e.total for e in entries), Decimal("0.00")))
        connection.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))


def run_silver(python: str, base_url: str, args: argparse.Namespace) -> dict:
    from w365.store.admin import create_scratch_database, drop_database

    url = create_scratch_database(base_url, "w365_peers_silver")
    try:
        cmd = [python, os.path.abspath(__file__), "--silver-child", url, "--billing-date", args.billing_date,
               "--subscriptions", str(args.subscriptions), "--per-contract", str(args.per_contract)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.stderr.write(out.stdout + out.stderr)
            raise SystemExit("the silver child failed")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        drop_database(url)


# --------------------------------------------------------------------------------------------
# w365


def setup_w365(args: argparse.Namespace) -> dict:
    from w365.billing.subscriptions import create_subscription
    from w365.core.calendar import add_months
    from w365.store.models import BillingContract, ChangeBilling, Customer, Product, ProductKind, Provider, ProviderKind
    from w365.store.session import session_scope

    groups = shape_of(args)
    now = datetime.combine(min(g["start"] for g in groups), time.min, tzinfo=timezone.utc)
    with session_scope() as s:
        prov = Provider(name="Microsoft Partner Center", kind=ProviderKind.PARTNER_CENTER, connection_id="partner_center")
        s.add(prov)
        s.flush()
        products = []
        for code, name, _ in LICENCES:
            p = Product(sku=code, name=name, kind=ProductKind.LICENSE, provider_id=prov.id, offer_id=code)
            s.add(p)
            products.append(p)
        s.flush()
        for g, group in enumerate(groups):
            cust = Customer(name=f"Customer {g + 1}", created_at=now)
            s.add(cust)
            s.flush()
            freq = "ANNUAL" if group["annual"] else "MONTHLY"
            c = BillingContract(number=f"BC-{g + 1:06d}", customer_id=cust.id, frequency=freq, currency="USD", start_date=group["start"],
                                end_date=add_months(group["start"], 12) - timedelta(days=1), term_months=12, next_invoice_date=group["start"],
                                auto_renew=True, change_billing=ChangeBilling.IMMEDIATE, payment_terms_days=30, created_at=now)
            s.add(c)
            s.flush()
            for product, start in group["subs"]:
                code, name, monthly = LICENCES[product]
                price = Decimal(monthly) * (12 if group["annual"] else 1)
                create_subscription(s, contract=c, product=products[product], provider=prov, name=f"{name} - Customer {g + 1}", quantity=1,
                                    selling_price=price, cost_price=price * Decimal("0.85"), sales_unit=freq, currency="USD",
                                    start_date=start, now=now)
    return describe(groups)


def w365_child(url: str, args: argparse.Namespace) -> None:
    os.environ["W365_DATABASE_URL"] = url
    from sqlalchemy import create_engine, text

    from w365.store.session import get_engine

    billing_date = date.fromisoformat(args.billing_date)
    with get_engine().connect():  # connected before the clock starts, as silver's child is
        pass
    out = run_full_cycles(billing_date)
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT (SELECT count(*) FROM subscription), (SELECT count(DISTINCT subscription_id) FROM invoice_line), "
            "(SELECT count(*) FROM invoice_line WHERE days < period_days), (SELECT count(*) FROM invoice WHERE number IS NOT NULL), "
            "(SELECT coalesce(sum(total), 0) FROM invoice), "
            "(SELECT coalesce(sum(amount), 0) FROM invoice_line WHERE sales_unit = 'MONTHLY'), "
            "(SELECT coalesce(sum(amount), 0) FROM invoice_line WHERE sales_unit = 'ANNUAL')"
        )).one()
    engine.dispose()
    out.update(subscriptions=row[0], subscriptions_billed=row[1], prorated_lines=row[2], numbered=row[3], total=str(row[4]),
               total_monthly=str(row[5]), total_annual=str(row[6]))
    print(json.dumps(out))


# --------------------------------------------------------------------------------------------


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=DEFAULT_URL, help="PostgreSQL server (scratch databases are created on it and dropped)")
    ap.add_argument("--venv", default=DEFAULT_VENV, help="silver's own virtualenv (created and filled when missing)")
    ap.add_argument("--subscriptions", type=int, default=1000)
    ap.add_argument("--per-contract", type=int, default=5, help="subscriptions per w365 contract / silver customer")
    ap.add_argument("--billing-date", default=date.today().replace(day=1).isoformat(),
                    help="D, in the past (silver bills nothing after today); default: the 1st of this month")
    ap.add_argument("--silver-child", help=argparse.SUPPRESS)
    ap.add_argument("--w365-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.silver_child:
        silver_child(args.silver_child, args)
        return
    if args.w365_child:
        w365_child(args.w365_child, args)
        return
    if date.fromisoformat(args.billing_date) > date.today():
        raise SystemExit(f"--billing-date {args.billing_date} is after today: silver would bill nothing")

    shape = describe(shape_of(args))
    print(f"tenant: {shape['subscriptions']:,} subscriptions ({shape['monthly']:,} monthly, {shape['annual']:,} annual) in "
          f"{shape['groups']:,} contracts/customers of {args.per_contract}, mid-cycle starts {shape['first_start']} .. {shape['last_start']}")
    print(f"billing date D = {args.billing_date} (a past date: silver bills nothing for dates after today, {date.today()})")
    python = ensure_venv(args.venv)

    load_silver = load()
    s = run_silver(python, args.url, args)
    with scratch_database(args.url) as url:
        os.environ["W365_DATABASE_URL"] = url
        setup_w365(args)
        load_w365 = load()
        w = run_child(__file__, "--w365-child", url, "--billing-date", args.billing_date)

    s_rate, w_rate = s["subscriptions_billed"] / s["seconds"], w["subscriptions_billed"] / w["seconds"]
    ratio = w_rate / s_rate
    print(f"silver {s['silver_version']} (Django {s['django_version']}): {s['documents']:,} documents ({s['issued']:,} issued), "
          f"{s['entries']:,} entries ({s['prorated_entries']:,} prorated), {s['subscriptions_billed']:,}/{s['subscriptions']:,} subscriptions "
          f"billed in {s['seconds']:.2f}s, {s['queries']:,} SQL statements; peak RSS {s['peak_rss_mb']:.0f} MB; load {load_silver}")
    print(f"  -> {s_rate:,.1f} subscriptions/s, {s['documents'] / s['seconds']:,.1f} documents/s, {s['entries'] / s['seconds']:,.1f} entries/s; "
          f"billed USD {s['total']} (monthly plans {s['total_monthly']}, annual {s['total_annual']})")
    print(f"w365: {w['invoices']:,} invoices, {w['lines']:,} lines ({w['prorated_lines']:,} prorated), {w['subscriptions_billed']:,}/"
          f"{w['subscriptions']:,} subscriptions billed in {w['seconds']:.2f}s; peak RSS {w['peak_rss_mb']:.0f} MB; load {load_w365}")
    for g, v in w["by_job"].items():
        print(f"  {g:9s} {v['contracts']:5,} contracts {v['invoices']:5,} invoices {v['lines']:6,} lines {v['seconds']:6.2f}s")
    print(f"  -> {w_rate:,.1f} subscriptions/s, {w['invoices'] / w['seconds']:,.1f} invoices/s, {w['lines'] / w['seconds']:,.1f} lines/s; "
          f"billed USD {w['total']} (monthly {w['total_monthly']}, annual {w['total_annual']})")
    print(f"ratio w365/silver (subscriptions per second): {ratio:,.1f}x (aim >= {AIM}x: {'met' if ratio >= AIM else 'NOT met'})")
    print(json.dumps({
        "bench": "peers", "billing_date": args.billing_date, "tenant": shape, "per_contract": args.per_contract,
        "silver": {**s, "subscriptions_per_s": s_rate, "documents_per_s": s["documents"] / s["seconds"],
                   "entries_per_s": s["entries"] / s["seconds"], "load_before": load_silver},
        "w365": {**w, "subscriptions_per_s": w_rate, "invoices_per_s": w["invoices"] / w["seconds"],
                 "lines_per_s": w["lines"] / w["seconds"], "load_before": load_w365},
        "ratio_subscriptions_per_s": ratio, "aim": AIM, "aim_met": ratio >= AIM,
    }))


if __name__ == "__main__":
    main()
