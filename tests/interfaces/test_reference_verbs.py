"""Units and exchange rates typed by hand or imported (issue 13, item 8): `w365 unit add/list`,
`w365 rate add/list`, `exchange_rates.csv` in `w365 import`; SPEC B1, B5 (unit mapping), S1
(conversion at the rate effective on a period's first day), M3 (invoiced history never repriced)."""

import json
from datetime import date
from decimal import Decimal

import pytest

import factories as f
from w365.operations.audit import audit_billing
from w365.interfaces.cli import main
from w365.store.models import ExchangeRate, InvoiceLine
from w365.interfaces.importer import ImportFailed, import_folder
from w365.billing.invoicing.dispatcher import generate_full_cycle_invoices
from w365.billing.reference import add_rate

HEADER = "from_currency,to_currency,rate,effective_from\n"


def _one_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


# --------------------------------------------------------------------------------------------
# Units (SPEC B1, B5)


def test_b1_b5_unit_add_and_list(store, capsys):
    """issue 13: a custom cadence and a one-time unit are added and listed with the job that bills them."""
    assert main(["unit", "add", "semiannual", "--months", "6", "--name", "Semi-Annual", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"code": "SEMIANNUAL", "name": "Semi-Annual", "months": 6}
    assert main(["unit", "add", "SETUP_FEE", "--one-time"]) == 0
    assert "one-time" in capsys.readouterr().out
    assert main(["unit", "list", "--json"]) == 0
    units = {u["code"]: u for u in json.loads(capsys.readouterr().out)}
    assert units["SEMIANNUAL"]["billed_by"] == "generate_full_cycle_invoice_annual" and units["SEMIANNUAL"]["kind"] == "recurring"
    assert units["QUARTERLY"]["billed_by"] == "generate_full_cycle_invoice_quarterly"
    assert units["SETUP_FEE"]["months"] is None and units["SETUP_FEE"]["billed_by"] is None
    assert {"MONTHLY", "ANNUAL", "TRIENNIAL", "ONE_TIME"} <= set(units)


@pytest.mark.parametrize("argv,code,message", [
    (["unit", "add", "ANNUAL", "--months", "6"], 1, "unit ANNUAL: exists already (Annual, 12 months)"),
    (["unit", "add", "X", "--months", "0"], 2, "argument --months: 0 is below the minimum of 1"),
    (["unit", "add", "X", "--months", "121"], 2, "argument --months: 121 is above the maximum of 120 months"),
    (["unit", "add", "X", "--months", "1.5"], 2, "argument --months: '1.5' is not a whole number"),
    (["unit", "add", "X"], 2, "one of the arguments --months --one-time is required"),
    (["unit", "add", "X", "--months", "6", "--one-time"], 2, "not allowed with argument"),
    (["unit", "add", "6MONTHS", "--months", "6"], 2, "is not a unit code"),
    (["unit", "add", "X" * 25, "--months", "6"], 2, "at most 24 are allowed"),
])
def test_b1_unit_add_refusals_are_one_line_and_write_nothing(store, capsys, argv, code, message):
    """issue 13: duplicates are refused (a unit is never changed: it would reprice what uses it),
    months within 1..120 (w365.core.limits), a code of letters, digits and _."""
    before = f.row_counts(store)
    assert main(argv) == code
    assert message in _one_error(capsys)
    assert f.row_counts(store) == before


# --------------------------------------------------------------------------------------------
# Exchange rates (SPEC S1)


def test_s1_rate_add_and_list(store, capsys):
    """issue 13: rates by pair with the days each is in force; --on picks the one in force."""
    assert main(["rate", "add", "eur", "USD", "1.0870", "--from", "2026-01-01", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["from"], out["to"], Decimal(out["rate"]), out["effective_from"]) == ("EUR", "USD", Decimal("1.087"), "2026-01-01")
    assert main(["rate", "add", "EUR", "USD", "1.1", "--from", "2026-03-01"]) == 0
    assert main(["rate", "add", "USD", "EUR", "0.92", "--from", "2026-01-01"]) == 0
    capsys.readouterr()
    assert main(["rate", "list", "--source", "EUR", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["effective_from"], r["effective_to"]) for r in rows] == [("2026-01-01", "2026-02-28"), ("2026-03-01", None)]
    assert main(["rate", "list", "--on", "2026-02-15", "--json"]) == 0
    assert [(r["from"], r["to"], Decimal(r["rate"])) for r in json.loads(capsys.readouterr().out)] == [
        ("EUR", "USD", Decimal("1.087")), ("USD", "EUR", Decimal("0.92"))]


@pytest.mark.parametrize("argv,code,message", [
    (["rate", "add", "EUR", "USD", "1.2", "--from", "2026-01-01"], 1, "a rate effective 2026-01-01 exists already"),
    (["rate", "add", "EUR", "EUR", "1", "--from", "2026-02-01"], 1, "converts a currency into itself"),
    (["rate", "add", "EUR", "XYZ", "1", "--from", "2026-02-01"], 2, "argument TO: unknown currency 'XYZ'"),
    (["rate", "add", "EUR", "USD", "0", "--from", "2026-02-01"], 2, "argument RATE: 0 is not above 0"),
    (["rate", "add", "EUR", "USD", "-1", "--from", "2026-02-01"], 2, "argument RATE: -1 is negative"),
    (["rate", "add", "EUR", "USD", "1.123456789", "--from", "2026-02-01"], 2, "at most 8 are allowed"),
    (["rate", "add", "EUR", "USD", "1000001", "--from", "2026-02-01"], 2, "above the maximum of 1,000,000"),
    (["rate", "add", "EUR", "USD", "1.1", "--from", "2100-01-01"], 2, "after 2099-12-31"),
    (["rate", "add", "EUR", "USD", "1.1"], 2, "the following arguments are required: --from"),
])
def test_s1_rate_add_refusals_are_one_line_and_write_nothing(store, session, capsys, argv, code, message):
    add_rate(session, "EUR", "USD", Decimal("1.0870"), date(2026, 1, 1))
    session.commit()
    before = f.row_counts(store)
    assert main(argv) == code
    assert message in _one_error(capsys)
    assert f.row_counts(store) == before


def _eur_subscription_billed(store, session):
    """A USD contract with a EUR subscription; EUR->USD 1.10 from 2025-01-01 and 1.12 from
    2025-12-20; January 2026 invoiced (INV-000001) at 1.12, the rate on the period's first day."""
    add_rate(session, "EUR", "USD", Decimal("1.10"), date(2025, 1, 1))
    add_rate(session, "EUR", "USD", Decimal("1.12"), date(2025, 12, 20))
    c = f.contract(session, f.customer(session), start=date(2026, 1, 1), number="BC-EUR")
    f.subscription(session, c, currency="EUR", price="10.00", quantity=10)
    session.commit()
    generate_full_cycle_invoices("monthly", date(2026, 1, 1), engine=store.engine)
    f.fresh(session)
    line = session.query(InvoiceLine).one()
    assert (line.source_currency, line.fx_rate, line.unit_price) == ("EUR", Decimal("1.12"), Decimal("11.2"))
    session.commit()


def test_s1_m3_a_rate_that_would_reprice_an_invoiced_period_is_refused(store, session, capsys):
    """issue 13, decision (docs/billing.md "Currency"): a new EUR->USD rate governs the periods whose
    first day falls from its date to the next rate's; if one of them was invoiced at another rate it
    is refused, naming the invoice and the earliest date accepted. Equal rates, periods not invoiced
    yet, and dates a later rate shields are accepted; the books stay clean."""
    _eur_subscription_billed(store, session)
    before = f.row_counts(store)
    for day in ("2025-12-25", "2026-01-01"):
        assert main(["rate", "add", "EUR", "USD", "1.30", "--from", day]) == 1
        line = _one_error(capsys)
        assert "would reprice history" in line and "INV-000001" in line and "2026-01-01..2026-01-31" in line
        assert "contract BC-EUR" in line and "at 1.12" in line and "2026-01-02 or later" in line
    assert f.row_counts(store) == before
    assert main(["rate", "add", "EUR", "USD", "1.12", "--from", "2025-12-25"]) == 0  # the rate it used: nothing changes
    assert main(["rate", "add", "EUR", "USD", "1.30", "--from", "2025-10-01"]) == 0  # governs up to 2025-12-19 only
    assert main(["rate", "add", "EUR", "USD", "1.30", "--from", "2026-01-02"]) == 0  # February on
    capsys.readouterr()
    generate_full_cycle_invoices("monthly", date(2026, 2, 1), engine=store.engine)
    f.fresh(session)
    assert session.query(InvoiceLine).order_by(InvoiceLine.id).all()[-1].fx_rate == Decimal("1.30")
    report = audit_billing(session)
    assert report.differences == [] and report.lines_checked == 2


# --------------------------------------------------------------------------------------------
# exchange_rates.csv in `w365 import`


def test_s1_import_exchange_rates_csv_bad_rows_named_by_row_and_column(store, session, tmp_path):
    """issue 13: every bad row is named by file, row and column; nothing is written."""
    (tmp_path / "exchange_rates.csv").write_text(HEADER + (
        "EUR,USD,1.0870,2026-01-01\n"
        "USD,EUR,0.92,2026-01-01\n"
        "EUR,USD,0,2026-02-01\n"
        "XXX,USD,1,2026-01-01\n"
        "EUR,eur,1,2026-01-01\n"
        "EUR,USD,1.1,2026-13-01\n"
        "EUR,USD,1.2,2026-01-01\n"
        "GBP,USD,,2026-01-01\n"
        "GBP,USD,1.123456789,2026-01-01\n"
    ))
    before = f.row_counts(store)
    with pytest.raises(ImportFailed) as exc:
        import_folder(session, tmp_path, now=f.NOW)
    session.rollback()
    assert [str(e) for e in exc.value.errors] == [
        "exchange_rates.csv, row 4: rate 0 is not above 0; an exchange rate is a positive number",
        "exchange_rates.csv, row 5: from_currency: unknown currency 'XXX': not an ISO 4217 code w365 knows",
        "exchange_rates.csv, row 6: to_currency 'EUR' is from_currency too; a rate needs two different currencies",
        "exchange_rates.csv, row 7: effective_from '2026-13-01' is not a date (YYYY-MM-DD)",
        "exchange_rates.csv, row 8: effective_from 2026-01-01: a EUR->USD rate effective that day exists already (1.087); rates are never edited",
        "exchange_rates.csv, row 9: rate is empty",
        "exchange_rates.csv, row 10: rate 1.123456789 has 9 decimal places; at most 8 are allowed",
    ]
    assert f.row_counts(store) == before


def test_s1_import_exchange_rates_csv_loads_and_keeps_invoiced_history(store, session, tmp_path, capsys):
    """issue 13: a good file loads (and `w365 rate list` shows it); the history rule holds in the
    import too, and rates of the same file bound each other whatever their order in it."""
    _eur_subscription_billed(store, session)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "exchange_rates.csv").write_text(HEADER + "EUR,USD,1.30,2025-12-25\n")
    with pytest.raises(ImportFailed) as exc:
        import_folder(session, tmp_path / "bad", now=f.NOW)
    session.rollback()
    assert str(exc.value.errors[0]).startswith("exchange_rates.csv, row 2: effective_from 2025-12-25: EUR->USD 1.30 from 2025-12-25 "
                                               "would reprice history: the period 2026-01-01..2026-01-31 of contract BC-EUR was invoiced on INV-000001")
    # 1.30 from Dec 22 alone would govern January; with 1.12 from Dec 23 (a later row) it governs one day.
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "exchange_rates.csv").write_text(HEADER + "EUR,USD,1.30,2025-12-22\nEUR,USD,1.12,2025-12-23\nGBP,USD,1.27,2026-01-01\n")
    assert main(["import", str(tmp_path / "good"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["exchange_rates"] == 3
    assert main(["rate", "list", "--on", "2026-01-01", "--json"]) == 0
    assert [(r["from"], r["to"], Decimal(r["rate"]), r["effective_from"]) for r in json.loads(capsys.readouterr().out)] == [
        ("EUR", "USD", Decimal("1.12"), "2025-12-23"), ("GBP", "USD", Decimal("1.27"), "2026-01-01")]
    assert audit_billing(f.fresh(session)).differences == []
    assert session.query(ExchangeRate).count() == 5
