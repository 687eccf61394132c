"""Initial data load (issue 2): all or nothing, every bad row reported by file, row and reason."""

import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from w365.store.models import BillingContract, Customer, LicenseChangeLog, Subscription
from w365.interfaces.importer import ImportFailed, import_folder

from factories import NOW

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "import"


def test_example_folder_loads_with_activation_lcls(store, session):
    counts = import_folder(session, EXAMPLE, now=NOW)
    session.commit()
    assert counts["subscriptions"] == 3
    assert session.scalar(select(func.count()).select_from(Subscription)) == 3
    # SPEC S3: every imported subscription starts its ledger with an activation LCL.
    lcls = session.scalars(select(LicenseChangeLog)).all()
    assert {(l.change_type.value, l.source.value, l.quantity_before) for l in lcls} == {("activation", "import", 0)}
    nw = session.scalars(select(BillingContract).where(BillingContract.number == "BC-1002")).one()
    assert nw.refunds_allowed and nw.change_billing.value == "next_cycle"


def test_bad_input_reports_every_row_and_writes_nothing(store, session, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(EXAMPLE, folder)
    subs = (folder / "subscriptions.csv").read_text().splitlines()
    subs += [
        "BC-1001,CFQ7TTC0LH18,Microsoft Partner Center,Bad date,5,6.00,5.10,MONTHLY,USD,2025-02-30,,,,,,",
        "BC-1001,NO-SUCH-SKU,Microsoft Partner Center,Unknown product,5,6.00,5.10,MONTHLY,USD,2025-02-01,,,,,,",
        "BC-1001,CFQ7TTC0LH18,Microsoft Partner Center,Negative,-3,6.00,5.10,MONTHLY,USD,2025-02-01,,,,,,",
        "BC-1001,CFQ7TTC0LH18,Microsoft Partner Center,Float price,5,6.0000001,5.10,MONTHLY,USD,2025-02-01,,,,,,",
    ]
    (folder / "subscriptions.csv").write_text("\n".join(subs) + "\n")
    with pytest.raises(ImportFailed) as exc:
        import_folder(session, folder, now=NOW)
    session.rollback()
    errors = {(e.file, e.row): e.reason for e in exc.value.errors}
    assert errors == {
        ("subscriptions.csv", 5): "start_date '2025-02-30' is not a date (YYYY-MM-DD)",
        ("subscriptions.csv", 6): "unknown product 'NO-SUCH-SKU'",
        ("subscriptions.csv", 7): "quantity -3 is negative",
        ("subscriptions.csv", 8): "selling_price 6.0000001 has 7 decimal places; at most 6 are allowed",
    }
    assert "subscriptions.csv, row 7: quantity -3 is negative" in str(exc.value)
    # Nothing written: not even the good rows of the same load.
    for model in (Customer, BillingContract, Subscription, LicenseChangeLog):
        assert session.scalar(select(func.count()).select_from(model)) == 0


def test_unknown_file_or_column_is_refused(store, session, tmp_path):
    folder = tmp_path / "typo"
    folder.mkdir()
    (folder / "customer.csv").write_text("name\nX\n")
    (folder / "contracts.csv").write_text("number,customer,frequency,currency,start_date,colour\n")
    with pytest.raises(ImportFailed) as exc:
        import_folder(session, folder, now=NOW)
    reasons = [str(e) for e in exc.value.errors]
    assert any("contracts.csv, row 1: unknown column(s) colour" in r for r in reasons)
    assert any(r.startswith("customer.csv") and "unknown file" in r for r in reasons)


def test_i17_customers_csv_carries_the_bill_to_address(store, session, tmp_path):
    """issue 16, SPEC I17: customers.csv's optional billing_* columns fill the invoice's bill-to
    block (the example folder has them); a country is an ISO 3166 code (upper-cased), a file
    without the columns still loads, and a bad country is one line naming file, row and column."""
    counts = import_folder(session, EXAMPLE, now=NOW)
    session.commit()
    assert counts["customers"] == 2
    rows = {c.name: (c.billing_address_line1, c.billing_address_line2, c.billing_city, c.billing_postal_code, c.billing_region,
                     c.billing_country) for c in session.scalars(select(Customer))}
    assert rows == {"Fabrikam": ("1 Fabrikam Way", "Suite 400", "Seattle", "98101", "WA", "US"),
                    "Northwind Traders": ("Hauptstraße 5", None, "Berlin", "10115", None, "DE")}

    old = tmp_path / "old"
    old.mkdir()
    (old / "customers.csv").write_text("name,email\nContoso,ap@contoso.example\n")  # the format before issue 16
    (new := tmp_path / "new").mkdir()
    (new / "customers.csv").write_text("name,billing_city,billing_country\nAdatum,Lyon,fr\nLitware,Oslo,Norway\n")
    assert import_folder(session, old, now=NOW)["customers"] == 1
    session.commit()
    assert session.scalars(select(Customer).where(Customer.name == "Contoso")).one().billing_country is None
    with pytest.raises(ImportFailed) as exc:
        import_folder(session, new, now=NOW)
    session.rollback()
    assert [str(e) for e in exc.value.errors] == [
        "customers.csv, row 3: billing_country 'Norway' is not an ISO 3166 two-letter country code (e.g. US, DE, GB, JP)"]
    assert session.scalar(select(func.count()).select_from(Customer).where(Customer.name == "Adatum")) == 0


def test_i9_tax_codes_and_the_tax_code_columns_load(store, session):
    """SPEC I1, I2, I9: tax_codes.csv gives codes and rates; customers and products name them;
    an exemption reference is kept."""
    import_folder(session, EXAMPLE, now=NOW)
    session.commit()
    from w365.billing.tax_codes import list_tax_rates
    from w365.store.models import Product

    assert [(r["code"], r["name"], r["rate"], r["effective_from"].isoformat()) for r in list_tax_rates(session)] == [
        ("US-WA", "Washington State sales tax", Decimal("6.5"), "2024-01-01"),
        ("VAT20", "UK VAT standard rate", Decimal("20"), "2024-01-01"),
        ("ZERO", "Zero-rated", Decimal("0"), "2024-01-01"),
    ]
    assert [(c.name, c.tax_code, c.tax_exempt_reference) for c in session.scalars(select(Customer).order_by(Customer.name))] == [
        ("Fabrikam", "US-WA", None), ("Northwind Traders", "US-WA", "WA-RESELLER-PERMIT-0042")]
    assert {p.sku: p.tax_code for p in session.scalars(select(Product))} == {
        "CFQ7TTC0LH18": None, "CFQ7TTC0LFLZ": None, "DZH318Z0BPS6": "ZERO"}


@pytest.mark.parametrize("row, reason", [
    ("VAT25,Too much,120,2025-01-01", "rate 120 is above the maximum of 100"),
    ("vat 20,Spaces,20,2025-01-01",
     "code 'vat 20' is not a tax code (letters A-Z, digits, _ and -, starting with a letter (upper-cased), at most 24 characters)"),
    ("VAT20,Again,21,2024-01-01",
     "tax code VAT20: a rate effective 2024-01-01 exists already (20 %); rates are never edited: add one with a later effective date"),
])
def test_i9_a_bad_tax_codes_row_is_one_clear_error_line_and_nothing_is_written(store, session, tmp_path, row, reason):
    """SPEC I9: a bad row of tax_codes.csv is one error naming file, row and what is wrong; a
    customer naming a refused code is told so; nothing is written."""
    folder = tmp_path / "bad"
    shutil.copytree(EXAMPLE, folder)
    (folder / "tax_codes.csv").write_text((folder / "tax_codes.csv").read_text() + row + "\n")
    customers = (folder / "customers.csv").read_text() + "Contoso,,,,NOPE,,,,,,,,\n"  # 13 columns: tax_code is the 5th
    (folder / "customers.csv").write_text(customers)
    with pytest.raises(ImportFailed) as exc:
        import_folder(session, folder, now=NOW)
    session.rollback()
    errors = [str(e) for e in exc.value.errors]
    assert len(errors) == 2
    assert errors[0] == f"tax_codes.csv, row 5: {reason}"
    assert errors[1] == "customers.csv, row 4: unknown tax_code 'NOPE'"
    from w365.store.models import TaxCode

    assert session.scalar(select(func.count()).select_from(TaxCode)) == 0
