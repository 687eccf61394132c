"""Issue 12: hostile and careless import files get one clear line each (file, row, column,
reason), exit status 1, and nothing is written, on SQLite and PostgreSQL alike.

Each case copies the complete example folder (which loads cleanly) and breaks one thing, so a
refused load also proves that the good rows around the bad one were not written (all or nothing,
docs/import-format.md).
"""

import shutil
from pathlib import Path

import pytest

from w365.interfaces.cli import main
from w365.interfaces.importer import ImportFailed, import_folder

from factories import NOW, row_counts

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "import"


pytestmark = pytest.mark.usefixtures("root_logging")  # main() reconfigures logging


def _replace(folder: Path, file: str, old: str, new: str) -> None:
    path = folder / file
    text = path.read_text(encoding="utf-8")
    assert old in text, (file, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _bytes(folder: Path, file: str, old: bytes, new: bytes) -> None:
    path = folder / file
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))


SUB2 = "BC-1001,CFQ7TTC0LH18,Microsoft Partner Center,Business Basic - Fabrikam,25,6.00,5.10,MONTHLY,USD,2025-01-01"
CASES = [
    # (id, how the example folder is broken, the one problem line expected)
    ("duplicate-header",
     lambda d: _replace(d, "customers.csv", "name,email,salesperson,provider_tenant_id", "name,email,salesperson,name"),
     "customers.csv, row 1: column 'name' appears twice (columns 1 and 4); one value would overwrite the other"),
    # The example's customers.csv has 13 columns since issue 16 (tax_code and tax_exempt_reference,
    # SPEC I9; the bill-to address, SPEC I17; billing_email, SPEC I21).
    ("extra-field",
     lambda d: _replace(d, "customers.csv", "controller@northwind.example", "controller@northwind.example,Lee & Co"),
     "customers.csv, row 3: 14 values, but the header names 13 columns: the extra value(s) 'Lee & Co' would be lost"),
    ("missing-field",
     lambda d: _replace(d, "customers.csv", ",ap@northwind.example; controller@northwind.example", ""),
     "customers.csv, row 3: 12 values, but the header names 13 columns: no value for billing_email; write empty values as ,,"),
    ("latin-1",
     lambda d: _bytes(d, "customers.csv", b"Northwind Traders", "Northwind Trad\u00e9rs".encode("latin-1")),
     "customers.csv, row 3: name is not UTF-8 text (byte 0xE9 at character 15); save the file as UTF-8"),
    ("200-kb-field",
     lambda d: _replace(d, "customers.csv", "Northwind Traders,", "N" * 204_800 + ","),
     "customers.csv, row 3: name is 204,800 characters long; at most 200 are allowed"),
    ("nul-byte",
     lambda d: _replace(d, "customers.csv", "Northwind Traders,", "Northwind\x00Traders,"),
     "customers.csv, row 3: name 'Northwind\\x00Traders' contains the control character U+0000 at character 10"),
    ("unclosed-quote",
     lambda d: _replace(d, "customers.csv", "Northwind Traders,", '"Northwind Traders,'),
     "customers.csv, row 3: not readable as CSV from this row on (unexpected end of data); nothing of this file was read"),
    ("quantity-1e20",
     lambda d: _replace(d, "subscriptions.csv", SUB2, SUB2.replace(",25,", ",1e20,")),
     "subscriptions.csv, row 2: quantity '1e20' is not a whole number"),
    ("quantity-20-digits",
     lambda d: _replace(d, "subscriptions.csv", SUB2, SUB2.replace(",25,", ",100000000000000000000,")),
     "subscriptions.csv, row 2: quantity 100000000000000000000 is above the maximum of 1,000,000 licences"),
    ("quantity-3e9",
     lambda d: _replace(d, "subscriptions.csv", SUB2, SUB2.replace(",25,", ",3000000000,")),
     "subscriptions.csv, row 2: quantity 3000000000 is above the maximum of 1,000,000 licences"),
    ("price-1e30",
     lambda d: _replace(d, "subscriptions.csv", SUB2, SUB2.replace(",6.00,", ",1e30,")),
     "subscriptions.csv, row 2: selling_price 1e30 is above the maximum of 1,000,000,000"),
    ("price-nan",
     lambda d: _replace(d, "subscriptions.csv", SUB2, SUB2.replace(",6.00,", ",NaN,")),
     "subscriptions.csv, row 2: selling_price 'NaN' is not a finite number"),
    ("price-7-decimals",
     lambda d: _replace(d, "subscriptions.csv", SUB2, SUB2.replace(",5.10,", ",5.1000001,")),
     "subscriptions.csv, row 2: cost_price 5.1000001 has 7 decimal places; at most 6 are allowed"),
    ("quantity-times-price",
     lambda d: _replace(d, "subscriptions.csv", SUB2, SUB2.replace(",25,6.00,", ",1000000,2000000.00,")),
     "subscriptions.csv, row 2: quantity x price 1,000,000 x 2,000,000.00 = 2,000,000,000,000.00 is above the maximum of "
     "1,000,000,000,000 per sales unit"),
    ("date-9999",
     lambda d: _replace(d, "subscriptions.csv", SUB2, SUB2.replace(",2025-01-01", ",9999-12-31")),
     "subscriptions.csv, row 2: start_date 9999-12-31 is after 2099-12-31, the latest date w365 accepts"),
    ("price-date-1999",
     lambda d: _replace(d, "prices.csv", "CFQ7TTC0LH18,default,MONTHLY,USD,5.10,6.00,2025-01-01", "CFQ7TTC0LH18,default,MONTHLY,USD,5.10,6.00,1999-12-31"),
     "prices.csv, row 2: effective_from 1999-12-31 is before 2000-01-01, the earliest date w365 accepts"),
    ("markup-5-decimals",
     lambda d: _replace(d, "subscriptions.csv", ",2000.00,12.5", ",2000.00,12.12345"),
     "subscriptions.csv, row 4: markup_pct 12.12345 has 5 decimal places; at most 4 are allowed"),
    ("term-months-1000",
     lambda d: _replace(d, "contracts.csv", "2025-12-31,12,2025-01-01", "2025-12-31,1000,2025-01-01"),
     ["contracts.csv, row 2: term_months 1000 is above the maximum of 120 months",
      "subscriptions.csv, row 2: contract 'BC-1001' is refused itself (contracts.csv, row 2)"]),
]


@pytest.mark.parametrize("case, breaks, expected", CASES, ids=[c[0] for c in CASES])
def test_issue12_m1_s3_bad_import_file_is_one_clear_line_and_writes_nothing(store, tmp_path, capsys, case, breaks, expected):
    """issue 12 (SPEC M1, S3): a careless or hostile file (a column named twice, a row with an
    extra value, Latin-1 bytes, a 200 KB field, a NUL byte, quantities and prices out of
    bounds, NaN, 7 decimals, a date in 9999...) is refused with one line naming the file, the row
    and the column; `w365 import` exits 1 without a traceback; no table gains a row."""
    folder = tmp_path / "import"
    shutil.copytree(EXAMPLE, folder)
    breaks(folder)
    before = row_counts(store)

    with store.session() as s:
        with pytest.raises(ImportFailed) as exc:
            import_folder(s, folder, now=NOW)
        s.rollback()
    expected = expected if isinstance(expected, list) else [expected]
    assert [str(e) for e in exc.value.errors] == expected

    assert main(["import", str(folder)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    lines = out.err.splitlines()
    assert lines == [f"error: import refused, nothing was written; {len(expected)} problem(s):", *(f"  {e}" for e in expected)]
    assert row_counts(store) == before


def test_issue12_the_example_still_loads_and_a_second_load_is_refused_by_name(store, capsys):
    """issue 12 (SPEC S3): the bounds refuse nothing a real load has; loading it twice is
    refused row by row (exit 1), the first load intact."""
    assert main(["import", str(EXAMPLE)]) == 0
    capsys.readouterr()
    loaded = row_counts(store)
    assert loaded["subscription"] == 3 and loaded["license_change_log"] == 3
    assert main(["import", str(EXAMPLE)]) == 1
    err = capsys.readouterr().err
    assert "customers.csv, row 2: customer 'Fabrikam' exists already" in err and "Traceback" not in err
    assert row_counts(store) == loaded


def test_issue12_not_a_folder_is_a_usage_error(store, tmp_path, capsys):
    """issue 12: an argument that names no folder is a bad argument (exit 2), named."""
    assert main(["import", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"error: argument FOLDER: {tmp_path / 'nope'} is not a folder\n"
