"""Billing verbs: run, invoice, verify."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from w365.core import limits
from w365.interfaces.cli import DATE, arg, count_arg, text_arg, word_arg
from w365.interfaces.cli.output import add_json_flag, emit, print_json, print_table


def _job(value: str, what: str) -> str:
    from w365.orchestration import catalogue

    try:
        return catalogue.get(value.strip()).dag_id
    except catalogue.UnknownJob as exc:
        raise limits.BadValue(what, str(exc)) from None


def _pair(value: str, what: str) -> tuple[str, str]:
    if "=" not in value:
        raise limits.BadValue(what, f"{limits.show(value)} is not KEY=VALUE")
    key, val = value.split("=", 1)
    return key.strip(), val.strip()


EXPORT_FORMATS = ("csv", "html", "pdf")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run one catalogue job's function without Airflow (ops debugging)",
                       epilog="Params (a job takes only its own; unknown ones are refused): advance_days 0 to "
                       f"{limits.MAX_ADVANCE_DAYS}; dry_run, bill true/false; contract numbers separated by commas; "
                       f"day {limits.HELP_DATE}; month YYYY-MM; commission_rate 0 to 1. The jobs commit per batch: "
                       "after a failure, rerun the same command (same --as-of) to complete the work.")
    p.add_argument("dag_id", metavar="DAG_ID", type=arg(_job), help="as `w365 jobs list` shows it")
    p.add_argument("--as-of", required=True, type=arg(limits.day_or_instant),
                   help=f"tenant date YYYY-MM-DD, or an ISO instant with zone ({limits.MIN_DATE} to {limits.MAX_DATE})")
    p.add_argument("--param", action="append", type=arg(_pair), metavar="KEY=VALUE", help="job params, e.g. advance_days=30, dry_run=true")
    add_json_flag(p)
    p.set_defaults(handler=run_cmd, commits="per_batch")

    inv = sub.add_parser("invoice", help="invoices: list, show, preview, export, send")
    s = inv.add_subparsers(dest="invoice_verb", metavar="ACTION", required=True)
    p = s.add_parser("list", help="recent invoices with totals and payment status")
    p.add_argument("--contract", type=text_arg("BillingContract", "number"))
    p.add_argument("--limit", type=count_arg(1, 100_000), default=50)
    add_json_flag(p)
    p.set_defaults(handler=invoice_list)
    p = s.add_parser("show", help="an invoice's lines, with their periods and sources")
    p.add_argument("number", type=text_arg("Invoice", "number"))
    add_json_flag(p)
    p.set_defaults(handler=invoice_show)
    p = s.add_parser("preview", help="the invoice that would be produced; writes nothing")
    p.add_argument("--contract", required=True, type=text_arg("BillingContract", "number"), help="contract number")
    p.add_argument("--as-of", type=DATE, default=None, help=f"tenant date (default today; {limits.HELP_DATE})")
    add_json_flag(p)
    p.set_defaults(handler=invoice_preview)
    p = s.add_parser("export", help="export an invoice as CSV (data), or as its document in HTML or PDF")
    p.add_argument("number", type=text_arg("Invoice", "number"))
    p.add_argument("--format", type=word_arg(EXPORT_FORMATS), choices=EXPORT_FORMATS, default="csv")
    p.add_argument("-o", "--output", type=Path,
                   help="file to write (default: stdout for csv and html; NUMBER.pdf in the current folder for pdf, '-' for stdout)")
    p.set_defaults(handler=invoice_export)
    p = s.add_parser("send", help="e-mail an invoice (PDF attached) to its customer's billing address, once",
                     epilog="Through the Airflow connection w365_smtp. An invoice already sent is not sent again "
                     "unless --resend is given; the delivery record says when, to whom and with which Message-ID.")
    p.add_argument("number", type=text_arg("Invoice", "number"))
    p.add_argument("--resend", action="store_true", help="send it again although it was sent (or its send was interrupted)")
    add_json_flag(p)
    p.set_defaults(handler=invoice_send)

    v = sub.add_parser("verify", help="prove the books: ledger folds and billing invariant")
    s = v.add_subparsers(dest="verify_verb", metavar="ACTION", required=True)
    p = s.add_parser("ledger", help="every subscription equals the fold of its license change logs")
    add_json_flag(p)
    p.set_defaults(handler=verify_ledger)
    p = s.add_parser("billing", help="independent audit: billed days, line amounts, totals, numbering, links, bill-from days")
    p.add_argument("--contract", action="append", type=text_arg("BillingContract", "number"), help="only these contract numbers")
    add_json_flag(p)
    p.set_defaults(handler=verify_billing)


def run_cmd(args: argparse.Namespace) -> int:
    from w365.orchestration import jobs

    result = jobs.run(args.dag_id, args.as_of, **jobs.check_params(args.dag_id, args.param or [], "argument --param: "))
    if args.json:
        print_json(result)
    else:
        summary = {k: v for k, v in result.items() if not isinstance(v, (list, dict))}
        for k, v in summary.items():
            print(f"{k}: {v}")
        for k, v in result.items():
            if isinstance(v, (list, dict)) and v:
                print(f"{k}: {len(v)}")
    return 0


def invoice_list(args: argparse.Namespace) -> int:
    from w365.store.session import session_scope
    from w365.billing.invoicing.export import list_invoices

    with session_scope() as s:
        rows = list_invoices(s, contract=args.contract, limit=args.limit)
    emit(rows, args.json, ["number", "document", "kind", "contract", "customer", "issue_date", "period_from", "period_to", "currency",
                           "subtotal", "tax_total", "total", "payment_status"])
    return 0


def invoice_show(args: argparse.Namespace) -> int:
    from w365.store.session import session_scope
    from w365.billing.invoicing.export import invoice_document

    with session_scope() as s:
        doc = invoice_document(s, args.number)
    if args.json:
        print_json(doc)
        return 0
    what = "Credit note" if doc["document"] == "credit_note" else "Invoice"
    print(f"{what} {doc['number']} ({doc['kind']}) for {doc['customer']}, contract {doc['contract']}"
          + (f", corrects {doc['corrects']}" if doc["corrects"] else ""))
    print(f"period {doc['period_from']} to {doc['period_to']}, issued {doc['issue_date']}, due {doc['due_date']}, {doc['payment_status']}")
    print_table(
        [{**l, "lcls": " ".join(map(str, l["lcl_ids"])), "slcls": " ".join(map(str, l["slcl_ids"]))} for l in doc["lines"]],
        ["line", "kind", "description", "period_from", "period_to", "quantity", "unit_price", "days", "period_days", "amount",
         "tax_code", "tax_rate", "tax_amount", "lcls", "slcls"],
    )
    for r in doc["tax_summary"]:
        print(f"tax {r['code'] or 'none'} {r['rate']} % on {r['taxable']}: {r['tax']}")
    if doc["tax_exempt_reference"]:
        print(f"tax exempt: {doc['tax_exempt_reference']}")
    print(f"subtotal {doc['subtotal']}, tax {doc['tax_total']}, total {doc['total']} {doc['currency']} (prices exclude tax)")
    return 0


def invoice_preview(args: argparse.Namespace) -> int:
    from w365.core import tenant_time
    from w365.store.session import session_scope
    from w365.billing.invoicing.preview import preview_invoice
    from w365.billing.subscriptions import get_tenant

    with session_scope() as s:
        as_of = args.as_of or tenant_time.today(get_tenant(s).time_zone)
        drafts = preview_invoice(s, args.contract, as_of)
        s.rollback()
    if args.json:
        print_json(drafts)
        return 0
    if not drafts:
        print(f"contract {args.contract}: nothing to invoice")
    for d in drafts:
        print(f"[preview, not saved] {d['kind']} invoice for contract {d['contract']}, period {d['period_from']} to {d['period_to']}")
        print_table(d["lines"], ["kind", "description", "quantity", "unit_price", "days", "period_days", "amount", "lcl_ids", "slcl_ids"])
        print(f"total {d['total']} {d['currency']}\n")
    return 0


def invoice_export(args: argparse.Namespace) -> int:
    """CSV for finance's tools; HTML and PDF are the invoice document (SPEC I10, I15): the same
    template as the invoice page. The store is read in one transaction; the file is written
    after it, whole (a failed render writes nothing)."""
    from w365.store.session import session_scope
    from w365.billing.invoicing import document
    from w365.billing.invoicing.export import invoice_document, to_csv

    with session_scope() as s:
        text = to_csv(invoice_document(s, args.number)) if args.format == "csv" else document.render_html(s, args.number)
    if args.format == "pdf":
        pdf = document.html_to_pdf(text, args.number)  # after the transaction: it takes a second or two
        if args.output is not None and str(args.output) == "-":
            sys.stdout.buffer.write(pdf)
            sys.stdout.flush()
            return 0
        target = args.output or Path("".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in args.number) + ".pdf")
        partial = target.with_name(target.name + ".part")  # never a half-written PDF under the real name
        partial.write_bytes(pdf)
        partial.replace(target)
        print(f"wrote {target}")
        return 0
    if args.output:
        args.output.write_text(text, encoding="utf-8", newline="")  # the CSV's CRLF as written (issue 12)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def invoice_send(args: argparse.Namespace) -> int:
    """I20, I25: one invoice by hand; the same claim-send-record steps as the Send Invoices job."""
    from datetime import datetime, timezone

    from w365.errors import ExternalError
    from w365.integrations.delivery import email_invoice
    from w365.integrations.mail import Mailer
    from w365.store.session import session_scope

    out = email_invoice(session_scope, Mailer.from_connection(), args.number, now=datetime.now(timezone.utc), resend=args.resend)
    if args.json:
        print_json(out.__dict__)
    elif out.status == "sent":
        print(f"{out.invoice}: {out.detail} (Message-ID {out.message_id})")
    elif out.status == "already_sent":
        print(f"{out.invoice}: already {out.detail}; not sent again (--resend sends it again)")
    if out.status in ("failed", "uncertain", "in_progress"):
        raise ExternalError(f"invoice {out.invoice} not sent: {out.detail}")
    return 0


def verify_ledger(args: argparse.Namespace) -> int:
    from w365.store.session import session_scope
    from w365.operations.ledger_check import verify_ledger as check

    with session_scope() as s:
        count, drifts = check(s)
    if args.json:
        print_json({"subscriptions": count, "drift": [d.__dict__ for d in drifts]})
    else:
        for d in drifts:
            print(f"subscription #{d.subscription_id}, LCL #{d.lcl_id}: {d.problem}")
        print(f"{count} subscription(s) checked, {len(drifts)} drift(s)")
    return 1 if drifts else 0


def verify_billing(args: argparse.Namespace) -> int:
    """The independent audit (w365.operations.audit): every difference on one line, a summary, and exit
    status 1 on any difference, even one a coming run is due to settle."""
    from w365.operations.audit import audit_billing
    from w365.store.session import get_engine, read_scope

    engine = get_engine()
    if engine.dialect.name == "postgresql":  # one snapshot, however long the audit reads
        engine = engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    with read_scope(engine) as s:
        report = audit_billing(s, args.contract)
    if args.json:
        print_json(report.to_dict())
    else:
        for d in report.differences:
            print(d)
        print(report.summary())
    return 1 if report.differences else 0
