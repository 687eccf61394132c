"""Core verbs: db, tenant, demo, import, jobs."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from w365.core import limits
from w365.interfaces.cli import DATE, arg, count_arg, text_arg
from w365.interfaces.cli.output import add_json_flag, emit, print_json


def _zone(value: str, what: str) -> str:
    from w365.core import tenant_time

    try:
        tenant_time.zone(value.strip())
    except tenant_time.TenantTimeError as exc:
        raise limits.BadValue(what, str(exc)) from None
    return value.strip()


# `w365 tenant set` flags for the invoice document's seller block (issue 16, SPEC I11).
TENANT_DOCUMENT_FIELDS = {
    "--legal-name": "legal_name", "--address-line1": "address_line1", "--address-line2": "address_line2", "--city": "city",
    "--postal-code": "postal_code", "--region": "region", "--country": "country", "--tax-id": "tax_id",
}


def _locale(value: str, what: str) -> str:
    from w365.core.local_format import check_locale

    return check_locale(value, what)


def _tenant_field(column: str):  # type: ignore[no-untyped-def]
    """An optional seller field: text no longer than its column ('' clears it); a country is an
    ISO 3166 code."""

    def check(value: str, what: str) -> str:
        from w365.core.local_format import check_country
        from w365.store.models import Tenant

        if not value.strip():
            return ""
        if column == "country":
            return check_country(value, what)
        return limits.text(value.strip(), what, limits.column_length(getattr(Tenant, column)))

    return arg(check)


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="the billing store's schema")
    dbs = db.add_subparsers(dest="db_verb", metavar="ACTION", required=True)
    p = dbs.add_parser("upgrade", help="migrate the billing store to the latest schema (Alembic)")
    p.add_argument("--revision", default="head")
    p.set_defaults(handler=db_upgrade)
    p = dbs.add_parser("current", help="show the store's URL and schema revision")
    add_json_flag(p)
    p.set_defaults(handler=db_current)

    t = sub.add_parser("tenant", help="tenant settings (time zone, invoice numbering)")
    ts = t.add_subparsers(dest="tenant_verb", metavar="ACTION", required=True)
    p = ts.add_parser("show", help="show the tenant settings")
    add_json_flag(p)
    p.set_defaults(handler=tenant_show)
    p = ts.add_parser("set", help="change tenant settings",
                      epilog="The seller block of the invoice document (issue 16): --legal-name (default: --name), the "
                      "address, --country as an ISO 3166 code (US, DE), --tax-id; --locale sets how its amounts and dates "
                      "read (babel/CLDR: en_US, de_DE, fr_FR, ja_JP). An empty value ('') clears an optional field.")
    p.add_argument("--name", type=text_arg("Tenant", "name"))
    p.add_argument("--timezone", type=arg(_zone), help="IANA zone, e.g. America/Los_Angeles (SPEC S4; default UTC)")
    p.add_argument("--invoice-prefix", type=text_arg("Tenant", "invoice_prefix"))
    for flag, column in TENANT_DOCUMENT_FIELDS.items():
        p.add_argument(flag, dest=column, type=_tenant_field(column), metavar="TEXT")
    p.add_argument("--locale", type=arg(_locale), help="how amounts and dates read on invoices (default en_US)")
    p.set_defaults(handler=tenant_set)

    d = sub.add_parser("demo", help="demo data")
    ds = d.add_subparsers(dest="demo_verb", metavar="ACTION", required=True)
    p = ds.add_parser("load", help="load a realistic demo tenant (sizes set by flags), optionally with N days of history",
                      epilog="--history-days N: the demo tenant as it would be after N days of operation. The tenant is "
                      "loaded as of (--as-of or today) - N with fresh contracts (starting in the four weeks after that day), "
                      "then every day up to yesterday is run with that day's logical times, never the wall clock: the "
                      "catalogue's jobs at their times (Auto Renew 00:00, Scheduled Update 00:05 and 23:30, the full-cycle "
                      "jobs 00:15 with Annual 30 days ahead, the change-log jobs on Mondays with Monthly's off, Update "
                      "Metrics 06:00) and ops' changes between 09:00 and 17:00 through the change service (increases, "
                      "decreases inside the reduction window, price changes, scheduled changes and suspensions, "
                      "reactivations, a few cancellations). So invoices span the months, change-log invoices and "
                      "scheduled-change merges have happened, and metrics have a snapshot for every day; a change is only "
                      "entered if a run in the history bills it, so `w365 verify billing` and `w365 verify ledger` find "
                      "nothing. Usage, sync, payment and pricing jobs are not run. Needs a store without invoices; "
                      "deterministic for a --seed. About 20 s for 365 days on SQLite at the default size (docs/dags.md).")
    p.add_argument("--customers", type=count_arg(0, 1_000_000), default=6)
    p.add_argument("--contracts-per-customer", type=count_arg(0, 1000), default=2)
    p.add_argument("--subscriptions-per-contract", type=count_arg(0, 1000), default=4)
    p.add_argument("--changes-per-subscription", type=count_arg(0, 1000), default=2, help="LCLs after the activation one")
    p.add_argument("--slcl-percent", type=count_arg(0, 100), default=20, help="share of licence subscriptions with a pending SLCL")
    p.add_argument("--as-of", type=DATE, default=None, help="tenant date the demo is built around (default: today)")
    p.add_argument("--timezone", type=arg(_zone), help="set the tenant time zone")
    p.add_argument("--seed", type=count_arg(0, 2**63 - 1), default=365)
    p.add_argument("--fresh", action="store_true", help="contracts start on/after --as-of with nothing billed")
    p.add_argument("--history-days", type=arg(limits.history_days), default=None, metavar="N",
                   help=f"run N days of operation up to yesterday (0 to {limits.MAX_HISTORY_DAYS:,}; implies fresh contracts "
                   "starting N days ago): see below")
    add_json_flag(p)
    p.set_defaults(handler=demo_load)

    p = ds.add_parser("provider-files", help="write provider export files matching the demo (file-drop format) for the sync jobs")
    p.add_argument("folder", type=Path)
    p.add_argument("--as-of", type=DATE, default=None, help="usage files for the days before this tenant date (default: today)")
    p.add_argument("--days", type=count_arg(0, 3660), default=35)
    add_json_flag(p)
    p.set_defaults(handler=demo_provider_files)

    p = sub.add_parser("import", help="initial data load from a folder of CSV files (all or nothing)",
                       epilog=f"Bounds (issue 12, docs/import-format.md): quantity {limits.HELP_QUANTITY}; prices "
                       f"{limits.HELP_PRICE}; markup_pct 0 to {limits.MAX_MARKUP_PCT:,} (at most {limits.MARKUP_PLACES} "
                       f"decimals); usage_threshold 0 to {limits.MAX_THRESHOLD:,}; qrw_days 0 to {limits.MAX_QRW_DAYS}; "
                       f"term_months 1 to {limits.MAX_TERM_MONTHS}; dates {limits.HELP_DATE}; text no longer than its "
                       "column. Files are UTF-8; a column named twice or a row with more or fewer values than the "
                       "header is refused. Any problem: every one is listed by file, row and column, nothing is "
                       "written, exit status 1.")
    p.add_argument("folder", type=Path, help="folder with providers/customers/products/prices/contracts/subscriptions.csv")
    add_json_flag(p)
    p.set_defaults(handler=import_cmd)

    j = sub.add_parser("jobs", help="the scheduled-job catalogue")
    js = j.add_subparsers(dest="jobs_verb", metavar="ACTION", required=True)
    p = js.add_parser("list", help="every catalogue job with its schedule and time zone")
    add_json_flag(p)
    p.set_defaults(handler=jobs_list)


def db_upgrade(args: argparse.Namespace) -> int:
    from alembic.util import CommandError

    from w365 import store
    from w365.store.session import database_url, describe_url
    from w365.errors import UsageError

    try:
        store.upgrade(revision=args.revision)
    except CommandError as exc:  # an unknown revision
        raise UsageError(f"argument --revision: {exc}") from None
    print(f"billing store {describe_url(database_url())} is at revision {store.current_revision()}")
    if args.revision == "head":
        from w365.billing.tenant import align_zone
        from w365.store.session import session_scope

        with session_scope() as s:
            print(align_zone(s))
    return 0


def db_current(args: argparse.Namespace) -> int:
    from w365 import store
    from w365.store.session import database_url, describe_url

    info = {"url": describe_url(database_url()), "revision": store.current_revision(), "head": store.head_revision()}
    if args.json:
        print_json(info)
    else:
        print(f"{info['url']}: revision {info['revision']} (head {info['head']})")
    return 0


def _tenant_dict(t) -> dict:  # type: ignore[no-untyped-def]
    return {"name": t.name, "time_zone": t.time_zone, "invoice_prefix": t.invoice_prefix, "next_invoice_number": t.next_invoice_number,
            **{column: getattr(t, column) for column in TENANT_DOCUMENT_FIELDS.values()}, "locale": t.locale}


def tenant_show(args: argparse.Namespace) -> int:
    from w365.store.session import session_scope
    from w365.billing.subscriptions import get_tenant

    with session_scope() as s:
        data = _tenant_dict(get_tenant(s))
    if args.json:
        print_json(data)
    else:
        for k, v in data.items():
            print(f"{k}: {v}")
    return 0


def tenant_set(args: argparse.Namespace) -> int:
    from w365.billing.tenant import set_zone
    from w365.store.session import session_scope
    from w365.billing.subscriptions import get_tenant

    with session_scope() as s:
        t = get_tenant(s)
        if args.timezone:
            set_zone(s, args.timezone)
        if args.name:
            t.name = args.name
        if args.invoice_prefix:
            t.invoice_prefix = args.invoice_prefix
        for column in TENANT_DOCUMENT_FIELDS.values():
            value = getattr(args, column)
            if value is not None:
                setattr(t, column, value or None)
        if args.locale:
            t.locale = args.locale
        data = _tenant_dict(t)
    print(", ".join(f"{k}={v}" for k, v in data.items()))
    return 0


def demo_load(args: argparse.Namespace) -> int:
    if args.history_days is not None:
        return _demo_history(args)
    from w365.core import tenant_time
    from w365.store.session import session_scope
    from w365.interfaces.demo import DemoSpec, load_demo
    from w365.billing.subscriptions import get_tenant
    from w365.billing.tenant import check_schedules_zone

    if args.timezone:
        check_schedules_zone(args.timezone)
    now = datetime.now(timezone.utc)
    with session_scope() as s:
        tz = args.timezone or get_tenant(s).time_zone
        spec = DemoSpec(
            customers=args.customers, contracts_per_customer=args.contracts_per_customer,
            subscriptions_per_contract=args.subscriptions_per_contract, changes_per_subscription=args.changes_per_subscription,
            slcl_percent=args.slcl_percent, as_of=args.as_of or tenant_time.today(tz, now), seed=args.seed,
            timezone=args.timezone, fresh=args.fresh,
        )
        stats = load_demo(s, spec, now=now)
    if args.json:
        print_json(stats)
    else:
        print("demo tenant loaded: " + ", ".join(f"{v} {k}" for k, v in stats.items()))
    return 0


def _demo_history(args: argparse.Namespace) -> int:
    """``demo load --history-days N`` (issue 13): load as of today - N, then run the days."""
    from datetime import timedelta

    from w365.core import tenant_time
    from w365.store.session import session_scope
    from w365.interfaces.demo import DemoSpec, load_demo
    from w365.interfaces.demo_history import check_store, run_history
    from w365.billing.subscriptions import get_tenant
    from w365.billing.tenant import check_schedules_zone

    if args.timezone:
        check_schedules_zone(args.timezone)
    with session_scope() as s:
        check_store(s)
        tz = args.timezone or get_tenant(s).time_zone
        today = args.as_of or tenant_time.today(tz)
        first = today - timedelta(days=args.history_days)
        spec = DemoSpec(
            customers=args.customers, contracts_per_customer=args.contracts_per_customer,
            subscriptions_per_contract=args.subscriptions_per_contract, changes_per_subscription=args.changes_per_subscription,
            slcl_percent=args.slcl_percent, as_of=first, seed=args.seed, timezone=args.timezone, fresh=True,
        )
        stats = load_demo(s, spec, now=tenant_time.start_of_day(first, tz))
    report = run_history(first, today - timedelta(days=1), seed=args.seed)
    if args.json:
        print_json({"demo": stats, "history": report.to_dict()})
    else:
        print("demo tenant loaded as of " + first.isoformat() + ": " + ", ".join(f"{v} {k}" for k, v in stats.items()))
        print(f"history {report.first_day}..{report.last_day} ({report.days} days): {report.invoices} invoices "
              f"({report.change_log_invoices} change-log), {report.merged} scheduled changes merged, {report.renewed} renewed, "
              f"{report.expired} expired, {sum(report.changes.values())} changes entered, {report.metric_snapshots} metric snapshots")
    return 0


def demo_provider_files(args: argparse.Namespace) -> int:
    from w365.core import tenant_time
    from w365.store.session import session_scope
    from w365.interfaces.demo import write_provider_files
    from w365.billing.subscriptions import get_tenant

    with session_scope() as s:
        as_of = args.as_of or tenant_time.today(get_tenant(s).time_zone)
        counts = write_provider_files(s, args.folder, as_of, args.days)
    if args.json:
        print_json(counts)
    else:
        print(f"wrote {counts['subscriptions']} subscriptions and {counts['usage_files']} usage files under {args.folder}")
    return 0


def import_cmd(args: argparse.Namespace) -> int:
    from w365.store.session import session_scope
    from w365.interfaces.importer import import_folder

    with session_scope() as s:
        counts = import_folder(s, args.folder, now=datetime.now(timezone.utc))
    if args.json:
        print_json(counts)
    else:
        print("imported: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0


def jobs_list(args: argparse.Namespace) -> int:
    from w365.orchestration import catalogue

    rows = [catalogue.as_dict(j) for j in catalogue.JOBS]
    if args.json:
        print_json(rows)
    else:
        emit(rows, False, ["dag_id", "name", "schedule", "timezone", "paused_at_creation"])
    return 0
