"""Subscription and SLCL verbs: subscription show/change/delete, slcl list/retry/cancel."""

from __future__ import annotations

import argparse
from datetime import date, datetime, timezone
from decimal import Decimal

from w365.cli.output import add_json_flag, emit, print_json

STATUS_ARGS = {"pending": "pending", "awaiting-merge": "awaiting_merge", "merge-failed": "merge_failed", "archived": "archived", "cancelled": "cancelled"}


def register(sub: argparse._SubParsersAction) -> None:
    sb = sub.add_parser("subscription", help="subscriptions: show, change, delete")
    s = sb.add_subparsers(dest="sub_verb", metavar="ACTION", required=True)
    p = s.add_parser("show", help="a subscription and its license change logs")
    p.add_argument("id", type=int)
    add_json_flag(p)
    p.set_defaults(handler=sub_show)
    p = s.add_parser("change", help="change quantity/price/status now, on a date, or on renewal")
    p.add_argument("id", type=int)
    p.add_argument("--quantity", type=int)
    p.add_argument("--selling-price", type=Decimal)
    p.add_argument("--cost-price", type=Decimal)
    p.add_argument("--sales-unit")
    p.add_argument("--provider-id", type=int)
    act = p.add_mutually_exclusive_group()
    for a in ("activate", "deactivate", "suspend", "reactivate"):
        act.add_argument(f"--{a}", dest="action", action="store_const", const=a)
    p.add_argument("--effective", choices=("immediately", "custom", "on-renewal"), default="immediately")
    p.add_argument("--date", type=date.fromisoformat, help="effective date for --effective custom (tenant date)")
    p.add_argument("--provision-on", type=date.fromisoformat)
    p.add_argument("--refund", action="store_true", help="Apply Refund on a cancellation (SPEC C4)")
    p.add_argument("--force", action="store_true", help="allow a sales unit/provider change after billing (SPEC S9)")
    p.add_argument("--by", help="who asks (recorded on the change)")
    add_json_flag(p)
    p.set_defaults(handler=sub_change, action="change")
    p = s.add_parser("delete", help="refused for billed subscriptions (SPEC S8); otherwise deactivates")
    p.add_argument("id", type=int)
    p.set_defaults(handler=sub_delete)

    pt = sub.add_parser("portal", help="end-customer portal API (SPEC C13)")
    s = pt.add_subparsers(dest="portal_verb", metavar="ACTION", required=True)
    p = s.add_parser("token", help="issue a customer's portal token (shown once; replaces the old one)")
    p.add_argument("--customer", type=int, required=True, help="customer id")
    p.set_defaults(handler=portal_token)

    sl = sub.add_parser("slcl", help="scheduled license change logs: list, retry, cancel")
    s = sl.add_subparsers(dest="slcl_verb", metavar="ACTION", required=True)
    p = s.add_parser("list", help="scheduled changes by status, with Scheduled For in tenant time")
    p.add_argument("--status", action="append", choices=list(STATUS_ARGS), help="default: pending, awaiting-merge, merge-failed")
    add_json_flag(p)
    p.set_defaults(handler=slcl_list)
    p = s.add_parser("retry", help="retry a Merge Failed change (merged now if due)")
    p.add_argument("id", type=int)
    add_json_flag(p)
    p.set_defaults(handler=slcl_retry)
    p = s.add_parser("cancel", help="cancel a pending, awaiting-merge or failed change")
    p.add_argument("id", type=int)
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

    with session_scope() as s:
        token = issue_token(s, args.customer)
    print(token)
    return 0
