"""`w365 subscription add` and `w365 subscription list` (issue 13, item 8): a subscription typed by
hand passes the checks of a subscriptions.csv row (w365.interfaces.importer) and gets its activation LCL
from w365.billing.subscriptions.create_subscription (SPEC S1, S3, S5, B1); every bad input is one error
line with its exit status and writes nothing (issue 12)."""

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

import factories as f
from w365.interfaces.cli import main
from w365.store.models import ChangeSource, ContractStatus, LicenseChangeLog, Subscription
from w365.interfaces.importer import ImportFailed, import_folder
from w365.billing.invoicing.dispatcher import generate_full_cycle_invoices
from w365.billing.reference import add_rate

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "import"


def _one_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


@pytest.fixture
def imported(store, session, capsys):
    """examples/import: BC-1001 (Fabrikam, monthly from 2025-01-01, ends 2025-12-31, auto-renews)
    and BC-1002 (Northwind, annual from 2025-03-15); the price list has E3 MONTHLY/ANNUAL in USD."""
    assert main(["import", str(EXAMPLE)]) == 0
    capsys.readouterr()
    return store


def test_s1_s3_subscription_add_with_defaults_from_the_price_list(imported, session, capsys):
    """issue 13: the product's provider, the contract's currency, MONTHLY, the price list's prices on
    the start date, "product - customer"; the activation LCL bills it from --start (S3, S6)."""
    assert main(["subscription", "add", "--contract", "BC-1001", "--product", "CFQ7TTC0LFLZ", "--quantity", "3",
                 "--start", "2025-06-01", "--by", "ops@example.com", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["name"], out["quantity"], Decimal(out["selling_price"]), Decimal(out["cost_price"]), out["sales_unit"], out["currency"]) == (
        "Microsoft 365 E3 - Fabrikam", 3, Decimal("36.00"), Decimal("31.68"), "MONTHLY", "USD")
    f.fresh(session)
    sub = session.get(Subscription, out["id"])
    assert sub.provider.name == "Microsoft Partner Center" and sub.status.value == "active" and sub.start_date == date(2025, 6, 1)
    lcl = session.scalars(select(LicenseChangeLog).where(LicenseChangeLog.subscription_id == sub.id)).one()
    assert (lcl.id, lcl.source, lcl.change_type.value, lcl.bill_from, lcl.quantity_after, lcl.created_by) == (
        out["lcl_id"], ChangeSource.USER, "activation", date(2025, 6, 1), 3, "ops@example.com")
    # Explicit values win; an annual price on the monthly contract (B5).
    assert main(["subscription", "add", "--contract", "BC-1001", "--product", "CFQ7TTC0LFLZ", "--quantity", "2", "--start", "2025-07-01",
                 "--sales-unit", "annual", "--selling-price", "400", "--cost-price", "350.5", "--provider", "Manual Distributor",
                 "--name", "E3 extra"]) == 0
    assert "E3 extra" in capsys.readouterr().out
    f.fresh(session)
    extra = session.scalars(select(Subscription).where(Subscription.name == "E3 extra")).one()
    assert (extra.sales_unit, extra.selling_price, extra.cost_price, extra.provider.name) == ("ANNUAL", Decimal("400"), Decimal("350.5"), "Manual Distributor")


def test_b1_s1_a_subscription_added_is_billed(store, session, capsys):
    """issue 13: added on a contract before its first invoice, it is on that invoice."""
    c = f.contract(session, f.customer(session), start=date(2026, 1, 1), number="BC-NEW")
    prod = f.product(session, sku="SKU-1")
    f.provider(session, name="pc")
    session.commit()
    assert main(["subscription", "add", "--contract", "BC-NEW", "--product", "SKU-1", "--provider", "pc", "--quantity", "4",
                 "--selling-price", "10", "--cost-price", "8", "--start", "2026-01-16"]) == 0
    report = generate_full_cycle_invoices("monthly", date(2026, 1, 1), engine=store.engine)
    assert [(i.contract, i.total) for i in report.invoices] == [("BC-NEW", "20.65")]  # 4 x 10 x 16/31
    assert prod.id and c.id


@pytest.mark.parametrize("extra,code,message", [
    (["--contract", "BC-404"], 2, "argument --contract: no billing contract 'BC-404'"),
    (["--product", "NOPE"], 2, "argument --product: no product with SKU 'NOPE'"),
    (["--provider", "Nobody"], 2, "argument --provider: no provider 'Nobody'"),
    (["--sales-unit", "FORTNIGHT"], 2, "argument --sales-unit: unknown sales unit 'FORTNIGHT'"),
    (["--quantity", "1000001"], 2, "argument --quantity: 1000001 is above the maximum of 1,000,000 licences"),
    (["--quantity", "-1"], 2, "argument --quantity: -1 is negative"),
    (["--quantity", "2.5"], 2, "argument --quantity: '2.5' is not a whole number"),
    (["--selling-price", "1000000001"], 2, "argument --selling-price: 1000000001 is above the maximum of 1,000,000,000"),
    (["--cost-price", "1.1234567"], 2, "argument --cost-price: 1.1234567 has 7 decimal places"),
    (["--quantity", "1000000", "--selling-price", "2000000", "--cost-price", "1"], 1, "is above the maximum of 1,000,000,000,000"),
    (["--start", "2024-12-31"], 1, "start date 2024-12-31 is before contract BC-1001 starts (2025-01-01)"),
    (["--start", "2100-01-01"], 2, "argument --start: 2100-01-01 is after 2099-12-31"),
    (["--currency", "JPY"], 1, "no JPY->USD exchange rate is effective on 2025-06-01"),
    (["--currency", "ZZZ"], 1, "unknown currency 'ZZZ'"),
    (["--name", "x" * 201], 2, "argument --name: is 201 characters long; at most 200 are allowed"),
])
def test_subscription_add_refusals_are_one_line_and_write_nothing(imported, session, capsys, extra, code, message):
    """issue 13 (issue 12's rules): a name that finds nothing or a value out of bounds exits 2, a rule 1."""
    argv = {"--contract": "BC-1001", "--product": "CFQ7TTC0LFLZ", "--quantity": "3", "--start": "2025-06-01"}
    for k, v in zip(extra[::2], extra[1::2]):
        argv[k] = v
    before = f.row_counts(imported)
    assert main(["subscription", "add", *[x for kv in argv.items() for x in kv]]) == code
    assert message in _one_error(capsys)
    assert f.row_counts(imported) == before


def test_subscription_add_outside_a_contract_that_ends_or_has_ended(store, session, capsys):
    """issue 13: a start after the end of a contract that does not auto-renew, or on an expired
    contract, is refused (nothing would ever be billed); the same rule holds in the import."""
    f.contract(session, f.customer(session, "A"), start=date(2026, 1, 1), end=date(2026, 12, 31), auto_renew=False, number="BC-END")
    gone = f.contract(session, f.customer(session, "B"), start=date(2025, 1, 1), number="BC-GONE")
    gone.status = ContractStatus.EXPIRED
    f.product(session, sku="SKU-1")
    f.provider(session, name="pc")
    session.commit()
    base = ["subscription", "add", "--product", "SKU-1", "--provider", "pc", "--quantity", "1", "--selling-price", "1", "--cost-price", "1"]
    before = f.row_counts(store)
    assert main([*base, "--contract", "BC-END", "--start", "2027-01-01"]) == 1
    assert "start date 2027-01-01 is after contract BC-END ends (2026-12-31) and it does not auto-renew" in _one_error(capsys)
    assert main([*base, "--contract", "BC-GONE", "--start", "2026-01-01"]) == 1
    assert "contract BC-GONE is expired: a subscription can only be added to an active contract" in _one_error(capsys)
    assert f.row_counts(store) == before
    assert main([*base, "--contract", "BC-END", "--start", "2026-12-31"]) == 0


def test_import_refuses_a_subscription_after_a_non_renewing_contract_ends(store, session, tmp_path):
    """issue 13: the shared start rule in subscriptions.csv."""
    f.contract(session, f.customer(session), start=date(2026, 1, 1), end=date(2026, 12, 31), auto_renew=False, number="BC-END")
    f.product(session, sku="SKU-1")
    f.provider(session, name="pc")
    session.commit()
    (tmp_path / "subscriptions.csv").write_text(
        "contract,product,provider,name,quantity,selling_price,cost_price,sales_unit,currency,start_date\n"
        "BC-END,SKU-1,pc,late,1,1,1,MONTHLY,USD,2027-02-01\n")
    with pytest.raises(ImportFailed) as exc:
        import_folder(session, tmp_path, now=f.NOW)
    assert [str(e) for e in exc.value.errors] == [
        "subscriptions.csv, row 2: start_date 2027-02-01 is after contract BC-END ends (2026-12-31) and it does not auto-renew"]


def test_s1_subscription_add_in_another_currency_once_a_rate_exists(imported, session, capsys):
    """issue 13 (SPEC S1): a JPY subscription on a USD contract needs a JPY->USD rate by its start
    (examples/import has EUR and GBP ones)."""
    add_rate(session, "JPY", "USD", Decimal("0.0066"), date(2025, 6, 1))
    session.commit()
    argv = ["subscription", "add", "--contract", "BC-1001", "--product", "CFQ7TTC0LFLZ", "--quantity", "1", "--currency", "JPY",
            "--selling-price", "5400", "--cost-price", "4700"]
    assert main([*argv, "--start", "2025-05-31"]) == 1
    assert "no JPY->USD exchange rate is effective on 2025-05-01 (the first day of the period 2025-05-31 is in)" in _one_error(capsys)
    assert main([*argv, "--start", "2025-06-01"]) == 0
    assert "JPY" in capsys.readouterr().out


def test_subscription_list_filters_and_json(imported, session, capsys):
    """issue 13: by contract, customer and status (any spelling), with the open scheduled change."""
    from w365.billing.changes import ChangeRequest, change_subscription
    from w365.store.models import ChangeEffective

    sub = session.scalars(select(Subscription).where(Subscription.name == "E3 - Northwind")).one()
    slcl = change_subscription(session, sub.id, ChangeRequest(quantity=45, effective=ChangeEffective.CUSTOM, effective_date=date(2099, 1, 1)),
                               now=f.NOW).slcl
    basic = session.scalars(select(Subscription).where(Subscription.name == "Business Basic - Fabrikam")).one()
    change_subscription(session, basic.id, ChangeRequest(action="suspend"), now=f.NOW)
    session.commit()

    def listed(*argv):
        assert main(["subscription", "list", *argv, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    rows = listed()
    assert [r["name"] for r in rows] == ["Business Basic - Fabrikam", "E3 - Northwind", "Azure plan - Northwind"]
    assert {"id", "contract", "customer", "product", "status", "quantity", "selling_price", "sales_unit", "currency", "start_date",
            "scheduled_change"} <= set(rows[0])
    assert [r["name"] for r in listed("--contract", "BC-1002")] == ["E3 - Northwind", "Azure plan - Northwind"]
    assert [r["scheduled_change"] for r in listed("--contract", "BC-1002")] == [slcl.id, None]
    assert [r["name"] for r in listed("--customer", str(basic.customer_id))] == ["Business Basic - Fabrikam"]
    assert [r["name"] for r in listed("--status", "Suspended")] == ["Business Basic - Fabrikam"]
    assert [r["name"] for r in listed("--status", "active", "--contract", "BC-1001")] == []
    assert listed("--contract", "BC-404") == []
    assert main(["subscription", "list", "--limit", "1"]) == 0
    assert "Business Basic - Fabrikam" in capsys.readouterr().out
    assert main(["subscription", "list", "--status", "gone"]) == 2
    assert "argument --status: invalid choice: 'gone'" in _one_error(capsys)
