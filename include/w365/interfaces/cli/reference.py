"""Reference-data verbs (issue 13): unit add/list (billing and sales units), rate add/list
(exchange rates); tax add/list (issue 16: tax codes and their rates). The rules are in
``w365.billing.reference`` and ``w365.billing.tax_codes``."""

from __future__ import annotations

import argparse
from decimal import Decimal

from w365.core import limits
from w365.interfaces.cli import DATE, arg, text_arg
from w365.interfaces.cli.output import add_json_flag, emit, print_json


def _unit_code(value: str, what: str) -> str:
    from w365.store.models import UnitMapping

    return limits.unit_code(value, what, limits.column_length(UnitMapping.code))


def _currency(value: str, what: str) -> str:
    from w365.core.money import MoneyError, check_currency

    code = value.strip().upper()
    try:
        return check_currency(limits.text(code, what, 3))
    except MoneyError as exc:
        raise limits.BadValue(what, str(exc)) from None


CURRENCY = arg(_currency)


def _tax_code(value: str, what: str) -> str:
    from w365.core.tax import check_code

    return check_code(value, what)


def _tax_rate(value: str, what: str) -> Decimal:
    from w365.core.tax import check_rate

    return check_rate(value, what)

RATE_EPILOG = (
    "A subscription priced in another currency than its contract is converted at the rate effective on each billing "
    "period's first day (SPEC S1). Rates are only added, never edited. A rate that would change the conversion of a "
    "period already invoiced at another rate (its effective date on or before the first day of such a period, with no "
    "later rate of the pair in between) is refused, naming the invoice and the earliest date accepted: invoiced "
    "history is never repriced (docs/billing.md, \"Currency\")."
)


def register(sub: argparse._SubParsersAction) -> None:
    u = sub.add_parser("unit", help="billing and sales units (the unit mapping): add, list")
    us = u.add_subparsers(dest="unit_verb", metavar="ACTION", required=True)
    p = us.add_parser(
        "add", help="add a custom billing/sales unit, e.g. SEMIANNUAL --months 6",
        epilog="A recurring unit may be a contract's frequency (billed by the Annual jobs unless it is 1 or 3 months, "
        "SPEC J1) and a subscription's sales unit (its price is converted to the contract's period as price x period "
        "months / unit months, SPEC B5); a one-time unit is billed once, never prorated. Units are only added: a "
        f"code that exists is refused. Bounds: months {limits.HELP_UNIT_MONTHS}; code {limits.HELP_UNIT_CODE}.")
    p.add_argument("code", type=arg(_unit_code), help="e.g. SEMIANNUAL (upper-cased)")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--months", type=arg(limits.unit_months), help=f"a recurring unit's length ({limits.HELP_UNIT_MONTHS})")
    length.add_argument("--one-time", action="store_true", help="a non-recurring unit (one-time charges)")
    p.add_argument("--name", type=text_arg("UnitMapping", "name"), help="display name (default: the code, title-cased)")
    add_json_flag(p)
    p.set_defaults(handler=unit_add)
    p = us.add_parser("list", help="every unit with its months, the job that bills it, and its use")
    add_json_flag(p)
    p.set_defaults(handler=unit_list)

    r = sub.add_parser("rate", help="exchange rates (SPEC S1): add, list")
    rs = r.add_subparsers(dest="rate_verb", metavar="ACTION", required=True)
    p = rs.add_parser("add", help="add an exchange rate: 1 FROM = RATE TO, from a date on", epilog=RATE_EPILOG)
    p.add_argument("source", metavar="FROM", type=CURRENCY, help="ISO 4217 code, e.g. EUR")
    p.add_argument("target", metavar="TO", type=CURRENCY, help="ISO 4217 code, e.g. USD")
    p.add_argument("rate", metavar="RATE", type=arg(limits.exchange_rate), help=limits.HELP_RATE)
    p.add_argument("--from", dest="effective_from", metavar="DATE", type=DATE, required=True,
                   help=f"the first day it applies to (a billing period's first day picks its rate; {limits.HELP_DATE})")
    add_json_flag(p)
    p.set_defaults(handler=rate_add)
    p = rs.add_parser("list", help="exchange rates by pair, with the days each is in force")
    p.add_argument("--source", metavar="FROM", type=CURRENCY, help="only rates from this currency")
    p.add_argument("--target", metavar="TO", type=CURRENCY, help="only rates into this currency")
    p.add_argument("--on", type=DATE, help="only the rate in force on this date, per pair")
    add_json_flag(p)
    p.set_defaults(handler=rate_list)

    t = sub.add_parser("tax", help="tax codes and their rates (SPEC I1): add, list")
    ts = t.add_subparsers(dest="tax_verb", metavar="ACTION", required=True)
    p = ts.add_parser("add", help="add a tax code's rate from a date on, e.g. VAT20 20 --from 2026-01-01",
                      epilog="Prices are tax-exclusive. A line is taxed under its product's code, else its customer's (none "
                      "for a customer with an exemption reference), at the rate effective on its first day billed, rounded "
                      "once to the currency's minor unit (SPEC I1-I4). Rates are only added; a rate that would change the "
                      "tax of an issued line is refused, naming the invoice and the earliest date accepted.")
    p.add_argument("code", type=arg(_tax_code), help="e.g. VAT20: letters A-Z, digits, _ and -, starting with a letter (upper-cased)")
    p.add_argument("rate", metavar="RATE", type=arg(_tax_rate), help="percent, 0 to 100, at most 4 decimals (20 = 20 %%)")
    p.add_argument("--from", dest="effective_from", metavar="DATE", type=DATE, required=True,
                   help=f"the first day it applies to (a line's first day billed picks its rate; {limits.HELP_DATE})")
    p.add_argument("--name", type=text_arg("TaxCode", "name"), help="display name of a new code (default: the code)")
    add_json_flag(p)
    p.set_defaults(handler=tax_add)
    p = ts.add_parser("assign", help="set a customer's tax code (and exemption) or a product's override",
                      epilog="A product's code overrides its customers' codes; a customer with an exemption reference is "
                      "not taxed at all (SPEC I2). Applies to documents issued from now on; issued ones keep their tax.")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer", type=text_arg("Customer", "name"), help="the customer's name")
    who.add_argument("--product", type=text_arg("Product", "sku"), help="the product's SKU")
    code = p.add_mutually_exclusive_group(required=True)
    code.add_argument("--code", type=arg(_tax_code), help="a tax code (`w365 tax list`)")
    code.add_argument("--no-code", action="store_true", help="remove the code (untaxed, or the customer's for a product)")
    p.add_argument("--exempt", metavar="REFERENCE", type=text_arg("Customer", "tax_exempt_reference"),
                   help="a customer's exemption reference (printed on its invoices); an empty string removes it")
    add_json_flag(p)
    p.set_defaults(handler=tax_assign)
    p = ts.add_parser("list", help="tax codes with their rates and the days each is in force")
    p.add_argument("--on", type=DATE, help="only the rate in force on this date, per code")
    add_json_flag(p)
    p.set_defaults(handler=tax_list)


def unit_add(args: argparse.Namespace) -> int:
    from w365.store.session import session_scope
    from w365.billing.reference import add_unit

    with session_scope() as s:
        unit = add_unit(s, args.code, None if args.one_time else args.months, args.name)
        out = {"code": unit.code, "name": unit.name, "months": unit.months}
    if args.json:
        print_json(out)
    else:
        print(f"unit {out['code']} ({out['name']}): " + ("one-time" if out["months"] is None else f"{out['months']} month(s)"))
    return 0


def unit_list(args: argparse.Namespace) -> int:
    from w365.store.session import read_scope
    from w365.billing.reference import list_units

    with read_scope() as s:
        rows = list_units(s)
    emit(rows, args.json, ["code", "name", "months", "kind", "billed_by", "contracts", "subscriptions"])
    return 0


def rate_add(args: argparse.Namespace) -> int:
    from w365.store.session import session_scope
    from w365.billing.reference import add_rate

    with session_scope() as s:
        row = add_rate(s, args.source, args.target, args.rate, args.effective_from)
        out = {"id": row.id, "from": row.from_currency, "to": row.to_currency, "rate": row.rate, "effective_from": row.effective_from}
    if args.json:
        print_json(out)
    else:
        print(f"exchange rate 1 {out['from']} = {out['rate']} {out['to']} from {out['effective_from']}")
    return 0


def rate_list(args: argparse.Namespace) -> int:
    from w365.store.session import read_scope
    from w365.billing.reference import list_rates

    with read_scope() as s:
        rows = list_rates(s, args.source, args.target, args.on)
    emit(rows, args.json, ["from", "to", "rate", "effective_from", "effective_to"])
    return 0


def tax_add(args: argparse.Namespace) -> int:
    from w365.store.session import session_scope
    from w365.billing.tax_codes import add_tax_rate

    with session_scope() as s:
        row = add_tax_rate(s, args.code, args.rate, args.effective_from, args.name)
        out = {"code": row.code, "rate": row.rate, "effective_from": row.effective_from}
    if args.json:
        print_json(out)
    else:
        print(f"tax code {row.code}: {row.rate.normalize():f} % from {row.effective_from}")
    return 0


def tax_list(args: argparse.Namespace) -> int:
    from w365.store.session import read_scope
    from w365.billing.tax_codes import list_tax_rates

    with read_scope() as s:
        rows = list_tax_rates(s, args.on)
    emit(rows, args.json, ["code", "name", "rate", "effective_from", "effective_to"])
    return 0


def tax_assign(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from w365.billing.tax_codes import assign_customer, assign_product
    from w365.errors import NotFound, UsageError
    from w365.store.models import Customer, Product
    from w365.store.session import session_scope

    code = None if args.no_code else args.code
    with session_scope() as s:
        if args.customer is not None:
            customer = s.scalar(select(Customer).where(Customer.name == args.customer))
            if customer is None:
                raise NotFound(f"argument --customer: no customer {limits.show(args.customer)}")
            exempt = customer.tax_exempt_reference if args.exempt is None else args.exempt.strip()
            assign_customer(s, customer, code, exempt)
            out = {"customer": customer.name, "tax_code": customer.tax_code, "tax_exempt_reference": customer.tax_exempt_reference}
        else:
            if args.exempt is not None:
                raise UsageError("argument --exempt: only a customer can be exempt")
            product = s.scalar(select(Product).where(Product.sku == args.product))
            if product is None:
                raise NotFound(f"argument --product: no product with SKU {limits.show(args.product)}")
            assign_product(s, product, code)
            out = {"product": product.sku, "tax_code": product.tax_code}
    if args.json:
        print_json(out)
    else:
        print(", ".join(f"{k} {v if v is not None else '-'}" for k, v in out.items()))
    return 0
