"""Operations verbs for the integration jobs: provisioning (manual providers), job exceptions."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any

from w365.core import limits
from w365.interfaces.cli import DATE, ID, arg, count_arg, text_arg
from w365.interfaces.cli.output import add_json_flag, emit, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("provisioning", help="changes awaiting provisioning at manual providers")
    ps = p.add_subparsers(dest="provisioning_verb", metavar="ACTION", required=True)
    q = ps.add_parser("pending", help="LCLs and due scheduled changes awaiting provisioning, with when each was alerted")
    q.add_argument("--as-of", type=DATE, default=None, help="only items due by this tenant date (default: all)")
    add_json_flag(q)
    q.set_defaults(handler=provisioning_pending)
    q = ps.add_parser("done", help="mark a license change log provisioned (after doing it at the provider)")
    q.add_argument("lcl_id", type=ID)
    q.add_argument("--at", type=arg(lambda v, w: limits.instant(v, w, naive_is_utc=True)), default=None,
                   help="when it was provisioned (ISO instant; without a zone: UTC; default now)")
    add_json_flag(q)
    q.set_defaults(handler=provisioning_done)

    p = sub.add_parser("exceptions", help="records a job skipped or quarantined, and why (job_exception)")
    p.add_argument("--job", type=text_arg("JobException", "job"), help="DAG id, e.g. sync_subscriptions_from_provider")
    p.add_argument("--as-of", type=DATE, default=None)
    p.add_argument("--limit", type=count_arg(1, 100_000), default=200)
    add_json_flag(p)
    p.set_defaults(handler=exceptions_list)


def provisioning_pending(args: argparse.Namespace) -> int:
    from w365.store.session import session_scope
    from w365.integrations.provisioning import pending_report

    with session_scope() as s:
        rows = pending_report(s, args.as_of)
    emit(rows, args.json, ["item", "provider", "customer", "subscription", "change", "quantity", "effective", "provision_on", "alerted_at"])
    return 0


def provisioning_done(args: argparse.Namespace) -> int:
    from w365.store.session import session_scope
    from w365.integrations.provisioning import mark_provisioned

    at = args.at or datetime.now(timezone.utc)
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    with session_scope() as s:
        lcl = mark_provisioned(s, args.lcl_id, at=at)
        out: dict[str, Any] = {"lcl_id": lcl.id, "subscription_id": lcl.subscription_id, "provisioning_status": lcl.provisioning_status, "provisioned_at": lcl.provisioned_at}
    if args.json:
        print_json(out)
    else:
        print(f"LCL #{out['lcl_id']} (subscription #{out['subscription_id']}) provisioned at {out['provisioned_at'].isoformat()}")
    return 0


def exceptions_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from w365.store.models import JobException
    from w365.store.session import session_scope

    q = select(JobException).order_by(JobException.as_of.desc(), JobException.job, JobException.entity_type, JobException.entity_key)
    if args.job:
        q = q.where(JobException.job == args.job)
    if args.as_of:
        q = q.where(JobException.as_of == args.as_of)
    with session_scope() as s:
        rows = [
            {"job": e.job, "as_of": e.as_of, "entity_type": e.entity_type, "entity_key": e.entity_key, "reason": e.reason}
            for e in s.scalars(q.limit(args.limit))
        ]
    emit(rows, args.json, ["as_of", "job", "entity_type", "entity_key", "reason"])
    return 0
