"""Subscription and SLCL verbs: subscription show/change/delete, slcl list/retry/cancel."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

from w365.core import limits
from w365.interfaces.cli import DATE, ID, PRICE, QUANTITY, count_arg, text_arg, word_arg
from w365.interfaces.cli.output import add_json_flag, emit, print_json

PORTAL_DEFAULT_DAYS = 90  # = w365.interfaces.portal.DEFAULT_TOKEN_DAYS (not imported here: the CLI stays light)
PORTAL_MAX_DAYS = 3660  # = w365.interfaces.portal.MAX_TOKEN_DAYS
STATUS_ARGS = {"pending": "pending", "awaiting-merge": "awaiting_merge", "merge-failed": "merge_failed", "archived": "archived", "cancelled": "cancelled"}


def register(sub: argparse._SubParsersAction) -> None:
    sb = sub.add_parser("subscription", help="subscriptions: add, list, show, change, delete")
    s = sb.add_subparsers(dest="sub_verb", metavar="ACTION", required=True)
    _register_add_list(s)
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
    effective = ("immediately", "custom", "on-renewal")
    p.add_argument("--effective", type=word_arg(effective), choices=effective, default="immediately",
                   help="also on_renewal, On Renewal: any spelling (issue 13)")
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
    p.add_argument("--status", action="append", type=word_arg(STATUS_ARGS), choices=list(STATUS_ARGS),
                   help="default: pending, awaiting-merge, merge-failed; any spelling: merge_failed, 'Merge Failed' (issue 13)")
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


SUB_STATUSES = ("active", "suspended", "deactivated", "pending")


def _register_add_list(s: argparse._SubParsersAction) -> None:
    """subscription add / list (issue 13)."""
    p = s.add_parser(
        "add", help="add a subscription on a contract (its activation LCL bills it from --start)",
        epilog="The checks of a subscriptions.csv row in `w365 import` (docs/import-format.md): the contract must be active "
        "and --start inside it (not before its start; not after its end unless it auto-renews); the product, provider "
        "and sales unit must exist; quantity and prices within bounds. Defaults: --provider the product's, --currency "
        "the contract's, --sales-unit MONTHLY (ONE_TIME for a one-time product), prices from the contract's price "
        "list on --start, --name \"product - customer\". A start today or earlier is billed by the next change-log "
        "(or full-cycle) run for days already invoiced. Bounds (issue 12): quantity "
        f"{limits.HELP_QUANTITY}; prices {limits.HELP_PRICE}; dates {limits.HELP_DATE}. Any error: one line, nothing "
        "written (exit 2: a name that finds nothing or a value out of bounds; 1: a rule).")
    p.add_argument("--contract", required=True, type=text_arg("BillingContract", "number"), help="contract number, e.g. BC-000001")
    p.add_argument("--product", required=True, type=text_arg("Product", "sku"), help="product SKU")
    p.add_argument("--quantity", required=True, type=QUANTITY, help=limits.HELP_QUANTITY)
    p.add_argument("--start", required=True, type=DATE, help=f"first day billed, tenant date ({limits.HELP_DATE})")
    p.add_argument("--provider", type=text_arg("Provider", "name"), help="provider name or id (default: the product's)")
    p.add_argument("--selling-price", type=PRICE, help=limits.HELP_PRICE)
    p.add_argument("--cost-price", type=PRICE, help=limits.HELP_PRICE)
    p.add_argument("--sales-unit", type=text_arg("UnitMapping", "code"), help="a unit code (`w365 unit list`)")
    p.add_argument("--currency", type=text_arg("Subscription", "currency"), help="ISO 4217 (default: the contract's)")
    p.add_argument("--name", type=text_arg("Subscription", "name"))
    p.add_argument("--provider-subscription-id", type=text_arg("Subscription", "provider_subscription_id"))
    p.add_argument("--by", type=text_arg("LicenseChangeLog", "created_by"), help="who asks (recorded on the activation)")
    add_json_flag(p)
    p.set_defaults(handler=sub_add)
    p = s.add_parser("list", help="subscriptions, by contract, customer or status")
    p.add_argument("--contract", type=text_arg("BillingContract", "number"), help="only this contract number")
    p.add_argument("--customer", type=ID, help="only this customer id")
    p.add_argument("--status", action="append", type=word_arg(SUB_STATUSES), choices=SUB_STATUSES, help="repeatable; default: all")
    p.add_argument("--limit", type=count_arg(1, 1_000_000), default=None)
    add_json_flag(p)
    p.set_defaults(handler=sub_list)


def sub_add(args: argparse.Namespace) -> int:
    from w365.store.session import session_scope
    from w365.interfaces.importer import add_subscription

    with session_scope() as s:
        sub = add_subscription(
            s, contract=args.contract, product=args.product, quantity=args.quantity, start_date=args.start, now=_now(),
            provider=args.provider, name=args.name, selling_price=args.selling_price, cost_price=args.cost_price,
            sales_unit=args.sales_unit, currency=args.currency, provider_subscription_id=args.provider_subscription_id,
            created_by=args.by,
        )
        out = {"id": sub.id, "name": sub.name, "contract_id": sub.contract_id, "quantity": sub.quantity,
               "selling_price": sub.selling_price, "cost_price": sub.cost_price, "sales_unit": sub.sales_unit,
               "currency": sub.currency, "start_date": sub.start_date, "lcl_id": sub.change_logs[-1].id}
    if args.json:
        print_json(out)
    else:
        print(f"subscription #{out['id']} ({out['name']}): {out['quantity']} x {out['selling_price']} {out['currency']} "
              f"per {out['sales_unit']}, billed from {out['start_date']} (activation LCL #{out['lcl_id']})")
    return 0


def sub_list(args: argparse.Namespace) -> int:
    from w365.store.models import SubscriptionStatus
    from w365.store.session import read_scope
    from w365.billing.subscriptions import list_subscriptions

    with read_scope() as s:
        rows = list_subscriptions(s, contract=args.contract, customer_id=args.customer, limit=args.limit,
                                  statuses=[SubscriptionStatus(x) for x in args.status or []])
    emit(rows, args.json, ["id", "name", "contract", "customer", "product", "status", "quantity", "selling_price", "sales_unit", "currency",
                           "start_date", "scheduled_change"])
    return 0


def sub_show(args: argparse.Namespace) -> int:
    from w365.store.models import Subscription
    from w365.store.session import session_scope
    from w365.errors import NotFound
    from w365.core.money import plain_price as price  # 12.00, not 12.000000 (issue 13)

    with session_scope() as s:
        sub = s.get(Subscription, args.id)
        if sub is None:
            raise NotFound(f"subscription #{args.id} does not exist")
        data: dict[str, Any] = {
            "id": sub.id, "name": sub.name, "contract_id": sub.contract_id, "status": sub.status.value, "quantity": sub.quantity,
            "selling_price": price(sub.selling_price), "cost_price": None if sub.cost_price is None else price(sub.cost_price),
            "sales_unit": sub.sales_unit, "currency": sub.currency,
            "qrb": sub.qrb.value, "qrw_days": sub.qrw_days,
            "change_logs": [
                {"id": l.id, "kind": l.kind.value, "change": l.change_type.value, "quantity": f"{l.quantity_before}->{l.quantity_after}",
                 "selling_price": f"{price(l.selling_price_before)}->{price(l.selling_price_after)}", "effective_at": l.effective_at,
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
    from w365.store.models import ChangeEffective
    from w365.store.session import session_scope
    from w365.billing.changes import ChangeRequest, change_subscription

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
    from w365.store.session import session_scope
    from w365.billing.changes import delete_subscription

    with session_scope() as s:
        result = delete_subscription(s, args.id, now=_now())
        print(f"subscription #{args.id} was never billed: deactivated instead of deleted (LCL #{result.lcl.id if result.lcl else '-'})")
    return 0


def slcl_list(args: argparse.Namespace) -> int:
    from w365.store.models import SLCLStatus
    from w365.store.session import session_scope
    from w365.billing.scheduled_changes import list_slcls

    statuses = [SLCLStatus(STATUS_ARGS[x]) for x in (args.status or ["pending", "awaiting-merge", "merge-failed"])]
    from w365.core.money import plain_price

    with session_scope() as s:
        rows = [{**r, "selling_price": None if r["selling_price"] is None else plain_price(r["selling_price"])} for r in list_slcls(s, statuses)]
    emit(rows, args.json, ["id", "status", "subscription_id", "subscription", "contract", "action", "quantity", "selling_price", "effective_date", "scheduled_for", "reason"])
    return 0


def slcl_retry(args: argparse.Namespace) -> int:
    from w365.billing.scheduled_changes import retry_slcl

    out = retry_slcl(None, args.id, now=_now())
    print_json(out) if args.json else print(f"scheduled change #{out['id']}: {out['status']}: {out['message']}")
    return 0 if out["status"] != "merge_failed" else 1


def slcl_cancel(args: argparse.Namespace) -> int:
    from w365.store.session import session_scope
    from w365.billing.scheduled_changes import cancel_slcl

    with session_scope() as s:
        out = cancel_slcl(s, args.id, now=_now())
    print_json(out) if args.json else print(f"scheduled change #{out['id']}: {out['message']}")
    return 0


def portal_token(args: argparse.Namespace) -> int:
    from w365.store.session import session_scope
    from w365.interfaces.portal import issue_token

    now = _now()
    with session_scope() as s:
        token = issue_token(s, args.customer, days=args.days, now=now)
    print(token)
    print(f"customer #{args.customer}: portal token valid for {args.days} day{'' if args.days == 1 else 's'}, until "
          f"{now + timedelta(days=args.days):%Y-%m-%d %H:%M} UTC", file=sys.stderr)
    return 0


def portal_revoke(args: argparse.Namespace) -> int:
    from w365.store.session import session_scope
    from w365.interfaces.portal import revoke_token

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
