"""The independent auditor behind `w365 verify billing` (issue 11, part 4).

Books are written by the real engine (full-cycle and change-log runs, the Scheduled Update
merge, subscription changes), then tampered with in raw SQL behind the engine's back, on purpose
past the database's immutability triggers. Each test asserts the exact difference records.
"""

import ast
import json
from datetime import date, datetime, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from sqlalchemy import select, text

import factories as f
from w365.operations import audit
from w365.operations.audit import Difference, audit_billing
from w365.operations.audit.arithmetic import add_months, bill_from_day, billed_periods, period_of, round_half_up
from w365.interfaces.cli import main
from w365.store.models import QRB, ChangeBilling, ChangeEffective, ExchangeRate, LicenseChangeLog
from w365.billing.invoicing.dispatcher import generate_change_log_invoices, generate_full_cycle_invoices
from w365.billing.scheduled_changes import merge_due_slcls
from w365.billing.changes import ChangeRequest, change_subscription

UTC = timezone.utc
D = date


def tamper(store, tables, *statements, **params):
    """Run raw SQL that the immutability triggers refuse, on purpose: the audit must catch what
    a write past the application (or past the triggers) does to issued books. PostgreSQL: every
    trigger is off for this one transaction (``session_replication_role = replica``; the test
    user is a superuser). SQLite: this test's own copy of the store loses the tables' triggers."""
    with store.engine.begin() as conn:
        if store.is_postgres:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            for table in [tables] if isinstance(tables, str) else tables:
                names = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"), {"t": table}).scalars().all()
                for name in names:
                    conn.execute(text(f'DROP TRIGGER "{name}"'))
        for sql in statements:
            conn.execute(text(sql), params)


def _audit(session):
    report = audit_billing(f.fresh(session))
    session.commit()  # end the read: the jobs write next
    return report


def _dec15(store, session, **contract):
    """The Dec 15 case (SPEC C12): 10 licences at 10.00 a month from Dec 1, raised to 15 from Dec 15
    by a scheduled change billed ahead on the December invoice INV-000001:
        line 1  Dec 1-14   10 x 10.00 x 14/31 = 45.16   (links the activation LCL)
        line 2  Dec 15-31  15 x 10.00 x 17/31 = 82.26   (links the activation LCL and the SLCL)
        total  127.42"""
    c = f.contract(session, f.customer(session), start=D(2025, 12, 1), number="BC-DEC15", **contract)
    sub = f.subscription(session, c)
    change_subscription(session, sub.id, ChangeRequest(quantity=15, effective=ChangeEffective.CUSTOM, effective_date=D(2025, 12, 15)),
                        now=datetime(2025, 11, 20, tzinfo=UTC))
    session.commit()
    generate_full_cycle_invoices("monthly", D(2025, 12, 1), engine=store.engine)
    return sub.id


# --------------------------------------------------------------------------------------------
# Pure helpers


def test_m2_b2_s6_rounding_calendar_and_bill_from_helpers_on_plain_values():
    """SPEC M2 (half-up once, ties away from zero, symmetric for credits), B2 (periods from the
    anchor, never chained), S6 (bill-from days), issue 11 (the auditor's own arithmetic)."""
    assert round_half_up(Fraction(1, 8), 2) == Decimal("0.13")  # 0.125: a tie goes up
    assert round_half_up(Fraction(-1, 8), 2) == Decimal("-0.13")  # and a credit's tie away from zero
    assert round_half_up(Fraction(1249, 10000), 2) == Decimal("0.12")
    assert round_half_up(Decimal("2.5"), 0) == Decimal(3) and round_half_up(Decimal("-2.5"), 0) == Decimal(-3)  # JPY
    assert round_half_up(Fraction(10005, 10000000), 3) == Decimal("0.001")  # KWD: 0.0010005 -> 0.001
    assert round_half_up(Fraction(-1, 3), 2) == Decimal("-0.33") and str(round_half_up(Fraction(-1, 1000), 2)) == "0.00"
    assert round_half_up(Fraction(10 * 10 * 14, 31), 2) == Decimal("45.16")  # the Dec 15 case's first line
    # Anchor Jan 31, monthly: Jan 31 | Feb 28 | Mar 31 | Apr 30 | May 31 ... each from the anchor, never
    # Feb 28 + 1 month = Mar 28.
    assert [add_months(D(2025, 1, 31), n) for n in range(5)] == [D(2025, 1, 31), D(2025, 2, 28), D(2025, 3, 31), D(2025, 4, 30), D(2025, 5, 31)]
    # Leap year: Jan 31 2024 + 1 = Feb 29; Feb 29 2024 + 12 = Feb 28 2025, + 48 = Feb 29 2028.
    assert add_months(D(2024, 1, 31), 1) == D(2024, 2, 29)
    assert [add_months(D(2024, 2, 29), n) for n in (12, 48)] == [D(2025, 2, 28), D(2028, 2, 29)]
    # Periods of a Jan 31 monthly contract:  [Jan 31, Feb 29) [Feb 29, Mar 31) [Mar 31, Apr 30) in 2024.
    assert period_of(D(2024, 1, 31), 1, D(2024, 3, 30)) == (D(2024, 2, 29), D(2024, 3, 31))
    assert period_of(D(2024, 1, 31), 1, D(2024, 3, 31)) == (D(2024, 3, 31), D(2024, 4, 30))
    assert period_of(D(2024, 1, 31), 1, D(2024, 1, 30)) == (D(2023, 12, 31), D(2024, 1, 31))  # before the anchor
    assert period_of(D(2024, 2, 29), 12, D(2025, 2, 28)) == (D(2025, 2, 28), D(2026, 2, 28))  # annual, leap anchor
    # Billed periods: from the one holding billed_from up to (not including) the next invoice date.
    assert billed_periods(D(2025, 12, 31), 1, D(2025, 12, 31), D(2026, 2, 28)) == [(D(2025, 12, 31), D(2026, 1, 31)), (D(2026, 1, 31), D(2026, 2, 28))]
    assert billed_periods(D(2025, 1, 1), 3, None, D(2025, 4, 1)) == []
    # S6: D = Dec 10.  up / activation / price only: new values from Dec 10;
    #                 down / cancellation / suspension: old values through Dec 10, new from Dec 11;
    #                 On Renewal (D = the new term's first day): from D either way.
    dec10 = D(2025, 12, 10)
    assert bill_from_day(dec10, (10, "active"), (12, "active")) == dec10
    assert bill_from_day(dec10, (0, "pending"), (10, "active")) == dec10
    assert bill_from_day(dec10, (10, "suspended"), (10, "active")) == dec10
    assert bill_from_day(dec10, (10, "active"), (10, "active")) == dec10  # price only
    assert bill_from_day(dec10, (10, "active"), (8, "active")) == D(2025, 12, 11)
    assert bill_from_day(dec10, (10, "active"), (10, "deactivated")) == D(2025, 12, 11)
    assert bill_from_day(dec10, (10, "active"), (10, "suspended")) == D(2025, 12, 11)
    assert bill_from_day(dec10, (10, "active"), (8, "active"), on_renewal=True) == dec10


def test_m2_own_iso_4217_minor_units_agree_with_the_engines_table():
    """SPEC M2 (ISO 4217 minor units: JPY 0, USD 2, KWD 3), issue 11: the auditor keeps its own
    table; for every currency the engine knows the two must agree, so neither drifts unseen."""
    from w365.core.money import MINOR_UNITS

    assert {code: audit.ISO_4217_MINOR_UNITS.get(code) for code in MINOR_UNITS} == MINOR_UNITS
    assert (audit.ISO_4217_MINOR_UNITS["JPY"], audit.ISO_4217_MINOR_UNITS["USD"], audit.ISO_4217_MINOR_UNITS["KWD"],
            audit.ISO_4217_MINOR_UNITS["BHD"], audit.ISO_4217_MINOR_UNITS["IQD"], audit.ISO_4217_MINOR_UNITS["RSD"]) == (0, 2, 3, 3, 3, 2)


def test_issue11_the_auditor_shares_no_code_with_the_engine():
    """issue 11: the auditor imports only the models, the session, errors, the standard library
    and dateutil, never the engine it checks."""
    modules: set[str] = set()
    for path in Path(audit.__file__).parent.glob("*.py"):  # the auditor is a package of its own
        tree = ast.parse(path.read_text())
        modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    w365 = {m for m in modules if m and m.startswith("w365") and not m.startswith("w365.operations.audit")}
    assert w365 <= {"w365.store.models", "w365.store.session", "w365.errors"}, w365
    assert not {m for m in modules if m and m.split(".")[0] not in {"w365", "__future__", "bisect", "collections", "dataclasses", "datetime",
                                                                     "decimal", "fractions", "functools", "typing", "dateutil", "sqlalchemy"}}


# --------------------------------------------------------------------------------------------
# Clean books


def test_clean_engine_billed_tenant_audits_clean(store, session):
    """SPEC S6, C4, C12, B2, B5, S1, M2, M3, J6, issue 11: a tenant billed by the engine, with
    mid-period changes, a scheduled change billed ahead and merged, a price change, cancellations
    with and without refund, a subscription priced in EUR on a USD contract, an annual price on a
    monthly contract, JPY and KWD contracts (the KWD one anchored on Dec 31) and a next-cycle
    contract, audits clean once every run has run."""
    session.add(ExchangeRate(from_currency="EUR", to_currency="USD", rate=Decimal("1.08"), effective_from=D(2025, 1, 1)))
    usd = f.contract(session, f.customer(session, "Fabrikam"), start=D(2025, 12, 1), refunds_allowed=True, number="BC-USD")
    grow = f.subscription(session, usd, name="grow", qrb=QRB.ALLOWED)
    shrink = f.subscription(session, usd, name="shrink", qrb=QRB.ALLOWED)
    reprice = f.subscription(session, usd, name="reprice", price="10.00")
    refund = f.subscription(session, usd, name="refund", qrb=QRB.ALLOWED)
    keep = f.subscription(session, usd, name="keep", qrb=QRB.ALLOWED)
    f.subscription(session, usd, name="eur", currency="EUR", price="9.99")  # 9.99 x 1.08 = 10.789200 a month
    f.subscription(session, usd, name="annual unit", unit="ANNUAL", price="100.00", quantity=3)  # 100/12 = 8.333333 a month
    ahead = f.subscription(session, usd, name="ahead", start=D(2025, 12, 10), quantity=4)
    nxt = f.contract(session, f.customer(session, "Northwind"), start=D(2025, 12, 1), change_billing=ChangeBilling.NEXT_CYCLE, number="BC-NEXT")
    later = f.subscription(session, nxt, name="later")
    jpy = f.contract(session, f.customer(session, "Tailspin"), start=D(2025, 12, 1), currency="JPY", number="BC-JPY")
    f.subscription(session, jpy, price="1000", cost="0", quantity=3, start=D(2025, 12, 15))
    kwd = f.contract(session, f.customer(session, "Alpine"), start=D(2025, 12, 31), currency="KWD", number="BC-KWD")
    f.subscription(session, kwd, price="3.125", cost="0", quantity=7, start=D(2026, 1, 12))
    session.commit()

    generate_full_cycle_invoices("monthly", D(2025, 12, 1), engine=store.engine)
    dec10 = datetime(2025, 12, 10, 12, tzinfo=UTC)
    change_subscription(session, grow.id, ChangeRequest(quantity=13), now=dec10)
    change_subscription(session, shrink.id, ChangeRequest(quantity=8), now=dec10)
    change_subscription(session, reprice.id, ChangeRequest(selling_price=Decimal("12.35")), now=dec10)
    change_subscription(session, refund.id, ChangeRequest(action="deactivate", apply_refund=True), now=dec10)
    change_subscription(session, keep.id, ChangeRequest(action="deactivate"), now=dec10)
    change_subscription(session, later.id, ChangeRequest(quantity=12), now=datetime(2025, 12, 20, 9, tzinfo=UTC))
    change_subscription(session, ahead.id, ChangeRequest(quantity=6, effective=ChangeEffective.CUSTOM, effective_date=D(2026, 1, 15)),
                        now=datetime(2025, 12, 20, 9, tzinfo=UTC))
    session.commit()
    generate_change_log_invoices("monthly", D(2025, 12, 15), engine=store.engine)
    generate_full_cycle_invoices("monthly", D(2025, 12, 31), engine=store.engine)
    generate_full_cycle_invoices("monthly", D(2026, 1, 1), engine=store.engine)  # bills "ahead"'s Jan 15 change ahead (C12)
    merge_due_slcls(datetime(2026, 1, 15, 1, tzinfo=UTC), engine=store.engine)
    generate_change_log_invoices("monthly", D(2026, 1, 16), engine=store.engine)

    report = _audit(session)
    assert report.differences == [], [str(d) for d in report.differences]
    assert report.invoices_checked >= 7 and report.lines_checked >= 20
    # 10 licence subscriptions billed for Dec and Jan (31 + 31 days); KWD's period Dec 31 - Jan 30.
    assert report.days_checked == 10 * 62 + 31


def test_b4_unbilled_changes_name_the_run_that_settles_them(store, session):
    """SPEC B4, C4, issue 11: a change not billed yet is a difference, but not an error: it names
    the run due to settle it (a change-log invoice for a contract billing changes immediately, the
    next full-cycle invoice for a next-cycle one)."""
    imm = f.contract(session, f.customer(session, "A"), start=D(2025, 12, 1), number="BC-IMM")
    a = f.subscription(session, imm, name="a")
    nxt = f.contract(session, f.customer(session, "B"), start=D(2025, 12, 1), change_billing=ChangeBilling.NEXT_CYCLE, number="BC-NEXT")
    b = f.subscription(session, nxt, name="b")
    session.commit()
    generate_full_cycle_invoices("monthly", D(2025, 12, 1), engine=store.engine)
    for sub in (a, b):
        change_subscription(session, sub.id, ChangeRequest(quantity=13), now=datetime(2025, 12, 10, 12, tzinfo=UTC))
    session.commit()
    assert _audit(session).differences == [
        Difference("day", "BC-IMM", "13 x 10.000000", "10 x 10.000000", subscription=a.id, first_day=D(2025, 12, 10), last_day=D(2025, 12, 31),
                   settled_by="change-log invoice"),
        Difference("day", "BC-NEXT", "13 x 10.000000", "10 x 10.000000", subscription=b.id, first_day=D(2025, 12, 10), last_day=D(2025, 12, 31),
                   settled_by="next full-cycle invoice on 2026-01-01"),
    ]
    generate_change_log_invoices("monthly", D(2025, 12, 11), engine=store.engine)
    generate_full_cycle_invoices("monthly", D(2026, 1, 1), engine=store.engine)
    assert _audit(session).differences == []


def test_s6_on_renewal_reduction_bills_from_the_new_terms_first_day(store, session):
    """SPEC S6, C2, C12, issue 11: a reduction scheduled On Renewal bills the new quantity from the
    first day of the new term (its effective date), not the day after; the audit recomputes
    every bill-from day and names a stored one that differs."""
    c = f.contract(session, f.customer(session), start=D(2025, 12, 1), end=D(2026, 11, 30), number="BC-RENEW")
    sub = f.subscription(session, c)
    result = change_subscription(session, sub.id, ChangeRequest(quantity=8, effective=ChangeEffective.ON_RENEWAL), now=datetime(2025, 12, 5, tzinfo=UTC))
    session.commit()
    assert result.slcl.effective_date == D(2026, 12, 1)
    assert _audit(session).differences == []
    merge_due_slcls(datetime(2026, 12, 2, tzinfo=UTC), engine=store.engine)  # the LCL it becomes bills from Dec 1 too
    lcl = f.fresh(session).scalars(select(LicenseChangeLog).where(LicenseChangeLog.slcl_id == result.slcl.id)).one()
    assert (lcl.effective_date, lcl.bill_from, _audit(session).differences) == (D(2026, 12, 1), D(2026, 12, 1), [])


# --------------------------------------------------------------------------------------------
# Tampered books: each names exactly what was changed


def test_m2_header_total_set_to_zero_is_named(store, session):
    """SPEC M2, issue 11: an invoice total is the sum of its lines; a header set to 0 behind the
    engine's back is named with the invoice, the expected and the found total."""
    _dec15(store, session)
    assert _audit(session).differences == []
    tamper(store, "invoice", "UPDATE invoice SET total = 0 WHERE number = 'INV-000001'")
    assert _audit(session).differences == [Difference("invoice_total", "BC-DEC15", "127.42", "0.00", invoice="INV-000001")]


def test_m2_m3_a_line_amount_off_by_one_minor_unit_is_named(store, session):
    """SPEC M2, M3, issue 11: amount = round_half_up(quantity x unit price x days / period days)
    once; a line one cent off is named, and so are the invoice total and the period total it
    no longer matches."""
    sid = _dec15(store, session)
    tamper(store, "invoice_line", "UPDATE invoice_line SET amount = '45.17' WHERE line_no = 1")
    assert _audit(session).differences == [
        Difference("invoice_total", "BC-DEC15", "127.43", "127.42", invoice="INV-000001"),
        Difference("line_amount", "BC-DEC15", "45.16", "45.17", invoice="INV-000001", line=1, subscription=sid,
                   first_day=D(2025, 12, 1), last_day=D(2025, 12, 14)),
        Difference("period_total", "BC-DEC15", "127.42", "127.43", subscription=sid, first_day=D(2025, 12, 1), last_day=D(2025, 12, 31)),
    ]


def test_m3_b5_a_line_quantity_changed_shows_in_the_days_and_the_amount(store, session):
    """SPEC M3, B5, S3, issue 11: a line's quantity changed: the days it covers are billed at
    another quantity than the ledger says, and its amount no longer follows from it."""
    sid = _dec15(store, session)
    tamper(store, "invoice_line", "UPDATE invoice_line SET quantity = '11' WHERE line_no = 1")
    assert _audit(session).differences == [
        Difference("line_amount", "BC-DEC15", "49.68", "45.16", invoice="INV-000001", line=1, subscription=sid,  # 11 x 10 x 14/31
                   first_day=D(2025, 12, 1), last_day=D(2025, 12, 14)),
        Difference("day", "BC-DEC15", "10 x 10.000000", "11 x 10.000000", subscription=sid, first_day=D(2025, 12, 1), last_day=D(2025, 12, 14)),
    ]


def test_m2_b2_a_deleted_line_shows_in_the_total_and_the_days(store, session):
    """SPEC M2, B2, issue 11: a line deleted (with its links): the header no longer adds up and
    its days are billed nothing, an error (the change it billed had been billed)."""
    sid = _dec15(store, session)
    tamper(store, ("invoice_line", "invoice_line_lcl"),
           "DELETE FROM invoice_line_lcl WHERE invoice_line_id = (SELECT id FROM invoice_line WHERE line_no = 1)",
           "DELETE FROM invoice_line WHERE line_no = 1")
    assert _audit(session).differences == [
        Difference("invoice_total", "BC-DEC15", "82.26", "127.42", invoice="INV-000001"),
        Difference("day", "BC-DEC15", "10 x 10.000000", "nothing", subscription=sid, first_day=D(2025, 12, 1), last_day=D(2025, 12, 14)),
    ]


def test_m3_c11_a_deleted_or_foreign_link_is_named(store, session):
    """SPEC M3, C11, issue 11: every licence line links the changes it bills, and only changes of
    its own subscription."""
    sid = _dec15(store, session)
    other = f.subscription(session, f.contract(session, f.customer(session, "Other"), start=D(2025, 12, 1), number="BC-OTHER"), name="other")
    session.commit()
    foreign = session.scalars(select(LicenseChangeLog.id).where(LicenseChangeLog.subscription_id == other.id)).one()
    tamper(store, "invoice_line_lcl", "DELETE FROM invoice_line_lcl WHERE invoice_line_id = (SELECT id FROM invoice_line WHERE line_no = 1)",
           "INSERT INTO invoice_line_lcl (invoice_line_id, lcl_id) SELECT id, :lcl FROM invoice_line WHERE line_no = 2", lcl=foreign)
    at = dict(invoice="INV-000001", subscription=sid)
    assert _audit(session).differences == [
        Difference("link", "BC-DEC15", "a link to the LCLs or SLCLs it bills", "none", line=1, first_day=D(2025, 12, 1), last_day=D(2025, 12, 14), **at),
        Difference("link", "BC-DEC15", f"links to subscription #{sid}'s changes", f"LCL #{foreign} of subscription #{other.id}", line=2,
                   first_day=D(2025, 12, 15), last_day=D(2025, 12, 31), **at),
    ]


def test_j6_an_invoice_number_or_sequence_changed_is_named(store, session):
    """SPEC J6, M1, issue 11: number = prefix + sequence zero-padded to 6 digits; sequences are
    gapless 1..N, N the tenant's counter - 1."""
    _dec15(store, session)
    tamper(store, "invoice", "UPDATE invoice SET number = 'INV-000009' WHERE sequence = 1")
    assert _audit(session).differences == [Difference("numbering", "BC-DEC15", "INV-000001", "INV-000009", invoice="INV-000009")]
    tamper(store, "invoice", "UPDATE invoice SET sequence = 5, number = 'INV-000005' WHERE sequence = 1")
    assert _audit(session).differences == [
        Difference("numbering", None, "an invoice with sequence 1", "none"),
        Difference("numbering", None, "sequences 1..1", "sequence 5"),
    ]


def test_s6_a_stored_bill_from_shifted_by_a_day_is_named(store, session):
    """SPEC S6, B4, issue 11: a decrease entered on Dec 10 bills the old quantity through Dec 10
    and the new from Dec 11; the audit recomputes that day and names the stored one that differs
    (the days themselves were billed right: the audit bills from its own day)."""
    c = f.contract(session, f.customer(session), start=D(2025, 12, 1), number="BC-S6")
    sub = f.subscription(session, c, qrb=QRB.ALLOWED)
    session.commit()
    generate_full_cycle_invoices("monthly", D(2025, 12, 1), engine=store.engine)
    lcl = change_subscription(session, sub.id, ChangeRequest(quantity=8), now=datetime(2025, 12, 10, 12, tzinfo=UTC)).lcl
    session.commit()
    generate_change_log_invoices("monthly", D(2025, 12, 11), engine=store.engine)
    assert (lcl.bill_from, _audit(session).differences) == (D(2025, 12, 11), [])
    tamper(store, "license_change_log", "UPDATE license_change_log SET bill_from = '2025-12-12' WHERE id = :id", id=lcl.id)
    assert _audit(session).differences == [
        Difference("bill_from", "BC-S6", f"2025-12-11 (LCL #{lcl.id})", "2025-12-12", subscription=sub.id, first_day=D(2025, 12, 10))
    ]


def test_b3_c4_a_day_billed_twice_is_named_even_when_the_header_adds_up(store, session):
    """SPEC B3, J6, issue 11: a duplicate of a line (as an adjustment, with its links, and the
    header total raised to match) bills Dec 1-14 twice: named as an error, since nothing unbilled
    explains it."""
    sid = _dec15(store, session, change_billing=ChangeBilling.NEXT_CYCLE)
    cols = ("invoice_id, subscription_id, description, billing_period_from, billing_period_to, period_from, period_to, quantity, unit_price, "
            "days, period_days, proration_factor, amount, sales_unit, source_currency, fx_rate")
    tamper(store, ("invoice_line", "invoice_line_lcl", "invoice"),
           f"INSERT INTO invoice_line (line_no, kind, {cols}) SELECT 99, 'adjustment', {cols} FROM invoice_line WHERE line_no = 1",
           "INSERT INTO invoice_line_lcl (invoice_line_id, lcl_id) SELECT (SELECT id FROM invoice_line WHERE line_no = 99), lcl_id "
           "FROM invoice_line_lcl WHERE invoice_line_id = (SELECT id FROM invoice_line WHERE line_no = 1)",
           "UPDATE invoice SET total = '172.58' WHERE number = 'INV-000001'")
    assert _audit(session).differences == [
        Difference("day", "BC-DEC15", "10 x 10.000000", "20 x 10.000000", subscription=sid, first_day=D(2025, 12, 1), last_day=D(2025, 12, 14)),
    ]


def test_cli_verify_billing_prints_each_difference_and_exits_1_on_any(store, session, capsys, root_logging):
    """issue 11: `w365 verify billing` prints each difference on one line and a summary, exits 0
    when clean and 1 on any difference; --contract and --json still work."""
    _dec15(store, session)
    assert main(["verify", "billing"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("0 difference(s): 0 error(s), 0 due to be settled by a coming run")
    tamper(store, "invoice", "UPDATE invoice SET total = 0 WHERE number = 'INV-000001'")
    assert main(["verify", "billing", "--contract", "BC-DEC15"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "invoice_total: contract BC-DEC15, invoice INV-000001: expected 127.42, found 0.00 (error)"
    assert main(["verify", "billing", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert (data["errors"], data["differences"][0]["check"], data["days_checked"]) == (1, "invoice_total", 31)
    assert main(["verify", "billing", "--contract", "BC-NONE"]) == 0
