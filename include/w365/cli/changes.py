"""Subscription and SLCL verbs: subscription show/change/delete, slcl list/retry/cancel."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone

from w365 import limits
from w365.cli import DATE, ID, PRICE, QUANTITY, count_arg, text_arg
from w365.cli.output import add_json_flag, emit, print_json

PORTAL_DEFAULT_DAYS = 90  # = w365.portal.DEFAULT_TOKEN_DAYS (not imported here: the CLI stays light)
PORTAL_MAX_DAYS = 3660  # = w365.portal.MAX_TOKEN_DAYS
STATUS_ARGS = {"pending": "pending", "awaiting-merge": "awaiting_merge", "merge-failed": "merge_failed", "archived": "archived", "cancelled": "cancelled"}


def register(sub: argparse._SubParsersAction) -> None:
    sb = sub.add_parser("subscription", help="subscriptions: show, change, delete")
    s = sb.add_subparsers(dest="sub_verb", metavar="ACTION", required=True)
    p = s.add_parser("show", help="a subscription and its license change logs")
    p.add_argument("id", type=ID)
    add_json_flag(p)
    p.set_defaults(handler=sub_show)
    p = s.add_parser("change", help="change quantity/price/status now, on a date, or on renewal",
                     epilog=f"Bounds (issue 12): quantity {limits.HELP_QUANTITY}; prices {limits.HELP_PRICE}; "
                     f"dates {limits.HELP_DATE}. A value out of bounds is refused before anything is written.")
    p.add_argument("id", type=ID)
    p.add_argument("--quantity", type=QUANTITY, help=limits.HELP_QUANTITY)
    p.add_argument("--selling-price", type=PRICE, help=limits.HELP_PRICE)
    p.add_argument("--cost-price", type=PRICE, help=limits.HELP_PRICE)
    p.add_argument("--sales-unit", type=text_arg("UnitMapping", "code"), help="a code of the unit mapping, e.g. MONTHLY")
    p.add_argument("--provider-id", type=ID)
    act = p.add_mutually_exclusive_group()
    for a in ("activate", "deactivate", "suspend", "reactivate"):
        act.add_argument(f"--{a}", dest="action", action="store_const", const=a)
    p.add_argument("--effective", choices=("immediately", "custom", "on-renewal"), default="immediately")
    p.add_argument("--date", type=DATE, help=f"effective date for --effective custom (tenant date; {limits.HELP_DATE})")
    p.add_argument("--provision-on", type=DATE, help=f"when to provision it (SPEC C5; {limits.HELP_DATE})")
    p.add_argument("--refund", action="store_true", help="Apply Refund on a cancellation (SPEC C4)")
    p.add_argument("--force", action="store_true", help="allow a sales unit/provider change after billing (SPEC S9)")
    p.add_argument("--by", type=text_arg("LicenseChangeLog", "created_by"), help="who asks (recorded on the change)")
    add_json_flag(p)
    p.set_defaults(handler=sub_change, action="change")
    p = s.add_parser("delete", help="refused for billed subscriptions (SPEC S8); otherwise deactivates")
    p.add_argument("id", type=ID)
    p.set_defaults(handler=sub_delete)

    pt = sub.add_parser("portal", help="end-customer portal API (SPEC C13)")
    s = pt.add_subparsers(dest="portal_verb", metavar="ACTION", required=True)
    p = s.add_parser("token", help="issue a customer's portal token (shown once; replaces the old one)",
                     epilog="The token is printed alone on stdout, its expiry on stderr (issue 12).")
    p.add_argument("--customer", type=ID, required=True, help="customer id")
    p.add_argument("--days", type=count_arg(1, PORTAL_MAX_DAYS), default=PORTAL_DEFAULT_DAYS,
                   help=f"how long it works (default {PORTAL_DEFAULT_DAYS}; 1 to {PORTAL_MAX_DAYS})")
    p.set_defaults(handler=portal_token)
    p = s.add_parser("revoke", help="revoke a customer's portal token now (answered 401 \"revoked\" from then on)")
    p.add_argument("--customer", type=ID, required=True, help="customer id")
    p.set_defaults(handler=portal_revoke)

    sl = sub.add_parser("slcl", help="scheduled license change logs: list, retry, cancel")
    s = sl.add_subparsers(dest="slcl_verb", metavar="ACTION", required=True)
    p = s.add_parser("list", help="scheduled changes by status, with Scheduled For in tenant time")
    p.add_argument("--status", action="append", choices=list(STATUS_ARGS), help="default: pending, awaiting-merge, merge-failed")
    add_json_flag(p)
    p.set_defaults(handler=slcl_list)
    p = s.add_parser("retry", help="retry a Merge Failed change (merged now if due)")
    p.add_argument("id", type=ID)
    add_json_flag(p)
    p.set_defaults(handler=slcl_retry)
    p = s.add_parser("cancel", help="cancel a pending, awaiting-merge or failed change")
    p.add_argument("id", type=ID)
    add_json_flag(p)
    p.set_defaults(handler=slcl_cancel)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def sub_show(args: argparse.Namespace) -> int:
    from w365.db.models import Subscription
    from w365.db.session import session_scope
    from w365.errors import NotFound

    with session_scope() as s:
        sub = s.get(Subscription, args.id)
        if sub is None:
            raise NotFound(f"subscription #{args.id} does not exist")
        data = {
            "id": sub.id, "name": sub.name, "contract_id": sub.contract_id, "status": sub.status.value, "quantity": sub.quantity,
            "selling_price": sub.selling_price, "cost_price": sub.cost_price, "sales_unit": sub.sales_unit, "currency": sub.currency,
            "qrb": sub.qrb.value, "qrw_days": sub.qrw_days,
            "change_logs": [
                {"id": l.id, "kind": l.kind.value, "change": l.change_type.value, "quantity": f"{l.quantity_before}->{l.quantity_after}",
                 "selling_price": f"{l.selling_price_before}->{l.selling_price_after}", "effective_at": l.effective_at,
                 "bill_from": l.bill_from, "source": l.source.value, "provisioning": l.provisioning_status.value}
                for l in sub.change_logs
            ],
        }
    if args.json:
        print_json(data)
    else:
        for k, v in data.items():
            if k != "change_logs":
                print(f"{k}: {v}")
        emit(data["change_logs"], False)
    return 0


def sub_change(args: argparse.Namespace) -> int:
    from w365.db.models import ChangeEffective
    from w365.db.session import session_scope
    from w365.subscriptions import ChangeRequest, change_subscription

    req = ChangeRequest(
        action=args.action or "change", quantity=args.quantity, selling_price=args.selling_price, cost_price=args.cost_price,
        sales_unit=args.sales_unit, provider_id=args.provider_id, effective=ChangeEffective(args.effective.replace("-", "_")),
        effective_date=args.date, provision_on=args.provision_on, apply_refund=args.refund, force=args.force, requested_by=args.by,
    )
    with session_scope() as s:
        result = change_subscription(s, args.id, req, now=_now())
        if result.lcl is not None:
            out = {"lcl_id": result.lcl.id, "kind": result.lcl.kind.value, "bill_from": result.lcl.bill_from, "scheduled_for": result.lcl.effective_at}
        else:
            assert result.slcl is not None
            out = {"slcl_id": result.slcl.id, "status": result.slcl.status.value, "effective_date": result.slcl.effective_date, "scheduled_for": result.slcl.scheduled_for}
    if args.json:
        print_json(out)
    else:
        print(", ".join(f"{k}={v}" for k, v in out.items()))
    return 0


def sub_delete(args: argparse.Namespace) -> int:
    from w365.db.session import session_scope
    from w365.subscriptions import delete_subscription

    with session_scope() as s:
        result = delete_subscription(s, args.id, now=_now())
        print(f"subscription #{args.id} was never billed: deactivated instead of deleted (LCL #{result.lcl.id if result.lcl else '-'})")
    return 0


def slcl_list(args: argparse.Namespace) -> int:
    from w365.db.models import SLCLStatus
    from w365.db.session import session_scope
    from w365.slcl import list_slcls

    statuses = [SLCLStatus(STATUS_ARGS[x]) for x in (args.status or ["pending", "awaiting-merge", "merge-failed"])]
    with session_scope() as s:
        rows = list_slcls(s, statuses)
    emit(rows, args.json, ["id", "status", "subscription_id", "subscription", "contract", "action", "quantity", "selling_price", "effective_date", "scheduled_for", "reason"])
    return 0


def slcl_retry(args: argparse.Namespace) -> int:
    from w365.slcl import retry_slcl

    out = retry_slcl(None, args.id, now=_now())
    print_json(out) if args.json else print(f"scheduled change #{out['id']}: {out['status']}: {out['message']}")
    return 0 if out["status"] != "merge_failed" else 1


def slcl_cancel(args: argparse.Namespace) -> int:
    from w365.db.session import session_scope
    from w365.slcl import cancel_slcl

    with session_scope() as s:
        out = cancel_slcl(s, args.id, now=_now())
    print_json(out) if args.json else print(f"scheduled change #{out['id']}: {out['message']}")
    return 0


def portal_token(args: argparse.Namespace) -> int:
    from w365.db.session import session_scope
    from w365.portal import issue_token

    now = _now()
    with session_scope() as s:
        token = issue_token(s, args.customer, days=args.days, now=now)
    print(token)
    print(f"customer #{args.customer}: portal token valid for {args.days} day{'' if args.days == 1 else 's'}, until "
          f"{now + timedelta(days=args.days):%Y-%m-%d %H:%M} UTC", file=sys.stderr)
    return 0


def portal_revoke(args: argparse.Namespace) -> int:
    from w365.db.session import session_scope
    from w365.portal import revoke_token

    now = _now()
    with session_scope() as s:
        when = revoke_token(s, args.customer, now=now)
    if when is None:
        print(f"customer #{args.customer} has no portal token: nothing to revoke")
    elif when < now:
        print(f"customer #{args.customer}: portal token already revoked on {when:%Y-%m-%d %H:%M} UTC")
    else:
        print(f"customer #{args.customer}: portal token revoked")
    return 0
