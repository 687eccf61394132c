"""The pure invoice generator with plain values (SPEC B3, B4, B5, C4, C12, M2, M3, S2, S6).

Timelines are in tenant-local days; a monthly contract anchored on Dec 1 has the period
Dec 1 - Dec 31 (31 days).
"""

from datetime import date
from decimal import Decimal

import pytest

from w365.core.calendar import BillingIntervalDetail
from w365.billing.invoicing.generator import (
    ADJUSTMENT,
    ONE_TIME,
    RECURRING,
    BadContractData,
    BilledLine,
    ContractTerms,
    Pricer,
    SubscriptionInput,
    propose_lines,
)
from w365.core.ledger import Change, State
from w365.core.money import sum_amounts

UNITS = {"MONTHLY": 1, "QUARTERLY": 3, "ANNUAL": 12, "TRIENNIAL": 36, "ONE_TIME": None}
DEC = BillingIntervalDetail(date(2025, 12, 1), 1).period(0)


def st(q, price="10.00", unit="MONTHLY", status="active", cost="8.00"):
    return State(q, Decimal(price), Decimal(cost), unit, status)


def activation(lcl_id, day, q, **kw):
    after = st(q, **kw)
    return Change(lcl_id, day, State(0, after.selling_price, after.cost_price, after.sales_unit, "pending"), after, order=lcl_id)


def change(lcl_id, bill_from, before, after, slcl_id=None, apply_refund=True):
    order = lcl_id if lcl_id is not None else 10**9 + (slcl_id or 0)
    return Change(lcl_id, bill_from, before, after, slcl_id=slcl_id, apply_refund=apply_refund, order=order)


def total(lines, currency="USD"):
    """An invoice total as the dispatcher writes it (SPEC M2: the sum of rounded lines)."""
    return sum_amounts((ln.amount for ln in lines), currency)


def contract(months=1, currency="USD", anchor=date(2025, 12, 1), end=None):
    return ContractTerms(1, "BC-1", currency, anchor, months, end)


def run(subs, billed=(), periods=(DEC,), c=None, rates=None):
    c = c or contract()
    return propose_lines(c, subs, billed, list(periods), Pricer(c, UNITS, rates or {}))


def as_billed(lines):
    return [BilledLine(l.subscription_id, l.kind, l.period.start, l.start, l.end, l.quantity, l.unit_price, frozenset(l.lcl_ids)) for l in lines]


def test_b3_whole_period_is_one_recurring_line():
    # Dec 1 ........................ Dec 31: 10 seats x 10.00
    lines = run([SubscriptionInput(7, "Basic", "license", "USD", (activation(1, date(2025, 12, 1), 10),))])
    assert [(l.kind, l.start, l.end, l.quantity, l.unit_price, l.amount, l.lcl_ids) for l in lines] == [
        (RECURRING, date(2025, 12, 1), date(2026, 1, 1), Decimal(10), Decimal("10.000000"), Decimal("100.00"), (1,))
    ]
    assert lines[0].proration_factor == 1


def test_c12_dec15_scheduled_change_bills_old_then_new():
    # Dec 1 ---- 10 seats ---- Dec 14 | Dec 15 ---- 15 seats (pending SLCL #3) ---- Dec 31
    sub = SubscriptionInput(7, "Basic", "license", "USD", (
        activation(1, date(2025, 12, 1), 10),
        change(None, date(2025, 12, 15), st(10), st(15), slcl_id=3),
    ))
    lines = run([sub])
    assert [(l.start, l.end, l.quantity, l.amount, l.slcl_ids) for l in lines] == [
        (date(2025, 12, 1), date(2025, 12, 15), Decimal(10), Decimal("45.16"), ()),  # 10 x 10 x 14/31
        (date(2025, 12, 15), date(2026, 1, 1), Decimal(15), Decimal("82.26"), (3,)),  # 15 x 10 x 17/31
    ]
    assert total(lines) == Decimal("127.42")  # M2: the sum of rounded lines


def test_s6_decrease_on_the_10th_is_credited_and_rebilled_and_rerun_is_empty():
    base = (activation(1, date(2025, 12, 1), 10),)
    billed = as_billed(run([SubscriptionInput(7, "Basic", "license", "USD", base)]))  # Dec 1-31 x 10 = 100.00
    # A reduction 10 -> 8 on Dec 10 is negative: 8 seats bill from Dec 11 (S6).
    # Dec 1 -- 10 seats -- Dec 10 | Dec 11 -- 8 seats -- Dec 31
    sub = SubscriptionInput(7, "Basic", "license", "USD", base + (change(2, date(2025, 12, 11), st(10), st(8)),))
    lines = run([sub], billed)
    assert [(l.kind, l.start, l.end, l.quantity, l.amount, l.lcl_ids) for l in lines] == [
        (ADJUSTMENT, date(2025, 12, 1), date(2026, 1, 1), Decimal(-10), Decimal("-100.00"), (1,)),  # the Dec 1-31 line reversed
        (ADJUSTMENT, date(2025, 12, 1), date(2025, 12, 11), Decimal(10), Decimal("32.26"), (1,)),  # 10 x 10 x 10/31
        (ADJUSTMENT, date(2025, 12, 11), date(2026, 1, 1), Decimal(8), Decimal("54.19"), (1, 2)),  # 8 x 10 x 21/31
    ]
    assert total(lines) == Decimal("-13.55")
    assert lines[0].description.startswith("Credit: reverses ")
    assert run([sub], billed + as_billed(lines)) == []  # idempotent: billed == what the LCLs say


def test_c7_price_only_change_mid_period_credits_and_rebills_at_both_prices():
    base = (activation(1, date(2025, 12, 1), 10),)
    billed = as_billed(run([SubscriptionInput(7, "Basic", "license", "USD", base)]))
    # Dec 1 -- 10 x 10.00 -- Dec 19 | Dec 20 -- 10 x 12.00 -- Dec 31
    sub = SubscriptionInput(7, "Basic", "license", "USD", base + (change(2, date(2025, 12, 20), st(10), st(10, price="12.00")),))
    lines = run([sub], billed)
    assert [(l.unit_price, l.quantity, l.start, l.amount) for l in lines] == [
        (Decimal("10.000000"), Decimal(-10), date(2025, 12, 1), Decimal("-100.00")),
        (Decimal("10.000000"), Decimal(10), date(2025, 12, 1), Decimal("61.29")),  # 10 x 10 x 19/31
        (Decimal("12.000000"), Decimal(10), date(2025, 12, 20), Decimal("46.45")),  # 10 x 12 x 12/31
    ]


def test_m2_a_period_total_does_not_depend_on_when_a_change_was_entered():
    """Issue 11: a late change is credited and re-billed, so the period comes to the sum of its
    ideal lines, each rounded once, to the cent, as if the change had been known ahead."""
    base = (activation(1, date(2025, 12, 1), 7),)
    more = change(2, date(2025, 12, 14), st(7), st(10))
    sub = SubscriptionInput(7, "Basic", "license", "USD", base + (more,))
    # Dec 1 -- 7 seats -- Dec 13 | Dec 14 -- 10 seats -- Dec 31 (10.00 a seat-month)
    ahead = run([sub])
    assert [l.amount for l in ahead] == [Decimal("29.35"), Decimal("58.06")]  # 7x10x13/31, 10x10x18/31
    # Entered after Dec was billed at 7 seats (70.00). A +3 seats charge for Dec 14-31 alone
    # would round 17.419 to 17.42 and make the month 87.42; credit and re-bill make it 87.41.
    billed = as_billed(run([SubscriptionInput(7, "Basic", "license", "USD", base)]))
    late = run([sub], billed)
    assert [(l.quantity, l.amount) for l in late] == [(Decimal(-7), Decimal("-70.00")), (Decimal(7), Decimal("29.35")), (Decimal(10), Decimal("58.06"))]
    assert Decimal("70.00") + total(late) == total(ahead) == Decimal("87.41")


def test_b3_first_term_prorated_when_subscription_starts_mid_period():
    lines = run([SubscriptionInput(7, "E3", "license", "USD", (activation(1, date(2025, 12, 20), 3, price="36.00"),))])
    assert [(l.days, l.period_days, l.amount) for l in lines] == [(12, 31, Decimal("41.81"))]  # 3 x 36 x 12/31


def test_b3_final_term_prorated_at_contract_end():
    c = contract(end=date(2025, 12, 21))  # last billed day Dec 20: the term does not renew
    lines = run([SubscriptionInput(7, "E3", "license", "USD", (activation(1, date(2025, 12, 1), 1, price="31.00"),))], c=c)
    assert [(l.days, l.amount) for l in lines] == [(20, Decimal("20.00"))]


def test_s2_suspended_subscription_bills_its_unbilled_changes_then_stops():
    # Dec 1: 10 seats; Dec 5: +5 (unbilled LCL); Dec 10: suspended (bills through Dec 10).
    sub = SubscriptionInput(7, "Basic", "license", "USD", (
        activation(1, date(2025, 12, 1), 10),
        change(2, date(2025, 12, 5), st(10), st(15)),
        change(3, date(2025, 12, 11), st(15), st(15, status="suspended")),
    ))
    lines = run([sub])
    assert [(l.start, l.end, l.quantity) for l in lines] == [
        (date(2025, 12, 1), date(2025, 12, 5), Decimal(10)),
        (date(2025, 12, 5), date(2025, 12, 11), Decimal(15)),
    ]


def test_c4_cancellation_with_refund_credits_prepaid_days_without_refund_does_not():
    base = (activation(1, date(2025, 12, 1), 10),)
    billed = as_billed(run([SubscriptionInput(7, "Basic", "license", "USD", base)]))
    # Dec 1 -- 10 seats -- Dec 20 | cancelled on Dec 20 (23:30): nothing from Dec 21
    def cancel(refund):
        return change(2, date(2025, 12, 21), st(10), st(10, status="deactivated"), apply_refund=refund)

    with_refund = run([SubscriptionInput(7, "Basic", "license", "USD", base + (cancel(True),))], billed)
    assert [(l.quantity, l.days, l.amount) for l in with_refund] == [(Decimal(-10), 31, Decimal("-100.00")), (Decimal(10), 20, Decimal("64.52"))]
    assert total(with_refund) == Decimal("-35.48")  # the unused prepaid days Dec 21-31
    assert run([SubscriptionInput(7, "Basic", "license", "USD", base + (cancel(False),))], billed) == []


def test_b5_monthly_price_on_annual_contract_is_twelve_times():
    year = BillingIntervalDetail(date(2025, 1, 1), 12).period(0)
    c = contract(months=12, anchor=date(2025, 1, 1))
    lines = run([SubscriptionInput(7, "E3", "license", "USD", (activation(1, date(2025, 1, 1), 2, price="36.00"),))], periods=[year], c=c)
    assert [(l.unit_price, l.amount) for l in lines] == [(Decimal("432.000000"), Decimal("864.00"))]


@pytest.mark.parametrize("currency,price,expected", [("JPY", "1000", Decimal("548")), ("KWD", "3.125", Decimal("1.714"))])
def test_m2_zero_and_three_decimal_currencies(currency, price, expected):
    # 1 seat for 17 of 31 days: JPY 1000 x 17/31 = 548.39 -> 548; KWD 3.125 x 17/31 = 1.71371 -> 1.714
    c = contract(currency=currency)
    lines = run([SubscriptionInput(7, "Basic", "license", currency, (activation(1, date(2025, 12, 15), 1, price=price),))], c=c)
    assert [l.amount for l in lines] == [expected]


def test_s1_subscription_in_another_currency_is_converted_or_refused():
    sub = SubscriptionInput(7, "Basic", "license", "EUR", (activation(1, date(2025, 12, 1), 10, price="10.00"),))
    rates = {("EUR", "USD"): [(date(2025, 1, 1), Decimal("1.08")), (date(2026, 1, 1), Decimal("1.20"))]}
    lines = run([sub], rates=rates)
    assert [(l.unit_price, l.amount, l.source_currency, l.fx_rate) for l in lines] == [
        (Decimal("10.800000"), Decimal("108.00"), "EUR", Decimal("1.08"))  # the rate on the period's first day
    ]
    with pytest.raises(BadContractData, match="no EUR->USD exchange rate"):
        run([sub])


def test_b5_missing_unit_mapping_is_bad_contract_data():
    sub = SubscriptionInput(7, "Basic", "license", "USD", (activation(1, date(2025, 12, 1), 1, unit="BIENNIAL"),))
    with pytest.raises(BadContractData, match="BIENNIAL"):
        run([sub])


def test_b3_one_time_charge_is_never_prorated_and_billed_once():
    sub = SubscriptionInput(9, "Onboarding", "one_time", "USD", (activation(1, date(2025, 12, 20), 1, price="450.00", unit="ONE_TIME"),))
    lines = run([sub])
    assert [(l.kind, l.quantity, l.amount, l.days, l.period_days) for l in lines] == [(ONE_TIME, 1, Decimal("450.00"), 1, 1)]
    assert run([sub], as_billed(lines)) == []


def test_usage_subscriptions_are_not_billed_as_licences():
    sub = SubscriptionInput(8, "Azure plan", "usage", "USD", (activation(1, date(2025, 12, 1), 1, price="0"),))
    assert run([sub]) == []


def test_m3_new_subscription_mid_billed_period_is_recurring_with_its_source():
    billed = as_billed(run([SubscriptionInput(7, "Basic", "license", "USD", (activation(1, date(2025, 12, 1), 10),))]))
    newcomer = SubscriptionInput(8, "E5", "license", "USD", (activation(5, date(2025, 12, 27), 2, price="57.00"),))
    lines = run([SubscriptionInput(7, "Basic", "license", "USD", (activation(1, date(2025, 12, 1), 10),)), newcomer], billed)
    assert [(l.subscription_id, l.kind, l.days, l.lcl_ids, l.amount) for l in lines] == [(8, RECURRING, 5, (5,), Decimal("18.39"))]


def test_s3_a_change_typed_later_wins_over_an_earlier_one_with_a_later_bill_from_day():
    """SPEC S3, S6 (the later-written change wins): on Dec 10 a decrease 10 -> 8 is typed
    (bills 8 from Dec 11), then the same day an increase 8 -> 12 (bills 12 from Dec 10). The
    subscription has 12 seats from Dec 10 on; the decrease must not come back on Dec 11."""
    # Dec 1 -- 10 -- Dec 9 | Dec 10 -- 12 seats ----------------------------------- Dec 31
    sub = SubscriptionInput(7, "Basic", "license", "USD", (
        activation(1, date(2025, 12, 1), 10),
        change(2, date(2025, 12, 11), st(10), st(8)),
        change(3, date(2025, 12, 10), st(8), st(12)),
    ))
    assert [(l.start, l.end, l.quantity) for l in run([sub])] == [
        (date(2025, 12, 1), date(2025, 12, 10), Decimal(10)),
        (date(2025, 12, 10), date(2026, 1, 1), Decimal(12)),
    ]


def test_s3_a_price_change_typed_before_a_future_start_is_billed_from_the_start():
    """SPEC S3 (issue 11, found by the auditor): a subscription starting Dec 20 gets a price
    change typed on Dec 18 (bill-from Dec 18). Its activation, written earlier, must not reset
    the price: 3 seats at 12.00 from Dec 20, nothing before."""
    sub = SubscriptionInput(7, "E3", "license", "USD", (
        activation(1, date(2025, 12, 20), 3),
        change(2, date(2025, 12, 18), st(3, status="pending"), st(3, price="12.00", status="pending")),
    ))
    assert [(l.start, l.quantity, l.unit_price, l.amount) for l in run([sub])] == [
        (date(2025, 12, 20), Decimal(3), Decimal("12.000000"), Decimal("13.94")),  # 3 x 12 x 12/31
    ]
