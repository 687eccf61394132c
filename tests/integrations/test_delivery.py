"""Send Invoices (issue 16, I20-I29): e-mail with the PDF attached through a real SMTP server on
loopback (aiosmtpd), at most once per invoice; export to the accounting system (REST fake and
file drop), once by invoice number; payments read back from the same system.

Timeline of the worked example: two invoices issued on 2026-02-01 (INV-000001, 100.00 USD,
Fabrikam) and 2026-02-05 (INV-000002, 250.50 USD, Fabrikam); the Send Invoices run is bound to
2026-02-10, with the default 30-day look-back (2026-01-11 to 2026-02-10): both are pending.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, Iterator

import pytest
from sqlalchemy import select

import factories as f
from pc_server import Fault, pc  # noqa: F401 - pc is a fixture
from w365.errors import JobFailed
from w365.integrations import delivery
from w365.interfaces.cli import main
from w365.orchestration import jobs
from w365.store.models import (Customer, DocumentType, Invoice, InvoiceDelivery, InvoiceKind, InvoiceLine, InvoiceLineKind, JobException,
                               PaymentStatus)

AS_OF = "2026-02-10"


@dataclass
class Mailbox:
    """What the loopback SMTP server accepted; ``refuse`` 451s the next DATA commands."""

    messages: list[EmailMessage] = field(default_factory=list)
    data_commands: int = 0
    refuse: int = 0
    refusal: str = "451 4.3.0 mailbox busy, try again later"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.data_commands += 1
        if self.refuse > 0:
            self.refuse -= 1
            return self.refusal
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on 127.0.0.1 and the connection w365_smtp pointing at it."""
    from aiosmtpd.controller import Controller

    box, port = Mailbox(), _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_W365_SMTP", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"from_email": "billing@contoso-csp.example", "backoff_base": "0", "timeout": "5"}}))
    try:
        yield box, port
    finally:
        controller.stop()


def seed(store: Any, billing_email: str | None = "ap@fabrikam.example", name: str = "Fabrikam") -> None:
    with store.session() as s:
        cust = f.customer(s, name=name, billing_email=billing_email)
        c = f.contract(s, cust, number="BC-1")
        for seq, (issued, total) in enumerate(((date(2026, 2, 1), "100.00"), (date(2026, 2, 5), "250.50")), start=1):
            s.add(Invoice(number=f"INV-{seq:06d}", sequence=seq, contract_id=c.id, customer_id=cust.id, kind=InvoiceKind.FULL_CYCLE,
                          currency="USD", issue_date=issued, due_date=date(2026, 3, 1), period_from=issued, period_to=date(2026, 2, 28),
                          total=Decimal(total), created_at=datetime(2026, 2, 1, tzinfo=timezone.utc)))
        s.commit()


def seed_credit_note(store: Any) -> None:
    """CN-000001, issued 2026-02-08, corrects INV-000001 (seed): 5 of 28 days of one seat taken
    back, -10.00 USD at VAT20 (20 %: tax -10.00 x 0.20 = -2.00), total -12.00 (SPEC I4-I6)."""
    with store.session() as s:
        inv = s.scalar(select(Invoice).where(Invoice.number == "INV-000001"))
        assert inv is not None
        cn = Invoice(number="CN-000001", sequence=-1, contract_id=inv.contract_id, customer_id=inv.customer_id,
                     kind=InvoiceKind.FULL_CYCLE, document=DocumentType.CREDIT_NOTE, corrects_invoice_id=inv.id, currency="USD",
                     issue_date=date(2026, 2, 8), due_date=date(2026, 2, 8), period_from=date(2026, 2, 24), period_to=date(2026, 2, 28),
                     total=Decimal("-12.00"), tax_total=Decimal("-2.00"), created_at=datetime(2026, 2, 8, tzinfo=timezone.utc))
        cn.lines.append(InvoiceLine(
            line_no=1, kind=InvoiceLineKind.ADJUSTMENT, description="Seat returned", billing_period_from=date(2026, 2, 1),
            billing_period_to=date(2026, 2, 28), period_from=date(2026, 2, 24), period_to=date(2026, 2, 28), quantity=Decimal("-1"),
            unit_price=Decimal("56.00"), days=5, period_days=28, proration_factor=Decimal("0.1785714286"), amount=Decimal("-10.00"),
            tax_code="VAT20", tax_rate=Decimal("20"), tax_amount=Decimal("-2.00")))
        s.add(cn)
        s.commit()


def records(store: Any) -> dict[tuple[str, str], InvoiceDelivery]:
    with store.session() as s:
        rows = s.execute(select(Invoice.number, InvoiceDelivery).join(Invoice, Invoice.id == InvoiceDelivery.invoice_id)).all()
        s.expunge_all()
        return {(n, d.channel.value): d for n, d in rows}


def invoices(store: Any) -> list[tuple[Any, ...]]:
    """Every column of every invoice: sending must change none of them (I22)."""
    with store.session() as s:
        return [tuple(getattr(i, c.key) for c in Invoice.__table__.columns) for i in s.scalars(select(Invoice).order_by(Invoice.id))]


def test_i23_each_invoice_emailed_once_with_its_pdf_and_a_rerun_sends_nothing(store, smtp):
    box, _ = smtp
    seed(store)
    before = invoices(store)
    report = jobs.run("send_invoices", AS_OF, channel="email")
    assert report["email"]["sent"] == ["INV-000001", "INV-000002"] and report["email"]["problems"] == {}
    assert [m["To"] for m in box.messages] == ["ap@fabrikam.example", "ap@fabrikam.example"]
    assert [m["Subject"] for m in box.messages] == ["Invoice INV-000001 from default", "Invoice INV-000002 from default"]
    first = box.messages[0]
    [pdf] = list(first.iter_attachments())
    assert pdf.get_content_type() == "application/pdf" and pdf.get_filename() == "INV-000001.pdf"
    assert pdf.get_content().startswith(b"%PDF")
    assert "100.00 USD, due on 2026-03-01" in first.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    rec = records(store)[("INV-000001", "email")]
    assert (rec.status.value, rec.attempts, rec.sends, rec.recipient, rec.last_error) == ("sent", 1, 1, "ap@fabrikam.example", None)
    assert rec.message_id == first["Message-ID"].strip() and rec.sent_at is not None
    # The same logical date again (a rerun, a cleared task): nothing pending, nothing sent.
    again = jobs.run("send_invoices", AS_OF, channel="email")
    assert again["email"]["considered"] == 0 and again["email"]["sent"] == [] and len(box.messages) == 2
    assert invoices(store) == before  # I22: the invoices are as issued


def test_i23_a_credit_note_is_emailed_as_a_credit_note(store, smtp):
    """I23 with SPEC I6: the subject and body say "Credit note", the amount credited (12.00 USD:
    -10.00 + -2.00 VAT20) and the invoice it corrects; nothing is said to be due."""
    box, _ = smtp
    seed(store)
    seed_credit_note(store)
    report = jobs.run("send_invoices", AS_OF, channel="email")
    assert sorted(report["email"]["sent"]) == ["CN-000001", "INV-000001", "INV-000002"]
    [cn] = [m for m in box.messages if "CN-000001" in m["Subject"]]
    assert cn["Subject"] == "Credit note CN-000001 from default"
    text = cn.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert ("please find attached credit note CN-000001 for 2026-02-24 to 2026-02-28, correcting invoice INV-000001: "
            "12.00 USD credited to you.") in text and "due" not in text
    [pdf] = list(cn.iter_attachments())
    assert pdf.get_filename() == "CN-000001.pdf" and pdf.get_content().startswith(b"%PDF")


def test_i24_a_refused_data_is_retried_in_the_run_and_delivered_once(store, smtp):
    box, _ = smtp
    seed(store)
    box.refuse = 1  # INV-000001's first DATA: 451, then accepted on the retry
    report = jobs.run("send_invoices", AS_OF, channel="email")
    assert report["email"]["sent"] == ["INV-000001", "INV-000002"]
    assert box.data_commands == 3 and [m["Subject"].split()[1] for m in box.messages] == ["INV-000001", "INV-000002"]
    assert records(store)[("INV-000001", "email")].attempts == 1  # one claimed send, retried inside it


def test_i24_a_permanent_refusal_is_not_retried_in_the_run_and_is_reported(store, smtp):
    box, _ = smtp
    seed(store)
    box.refuse, box.refusal = 1, "550 5.1.1 mailbox unavailable"
    with pytest.raises(JobFailed, match="e-mail INV-000001: SMTP 127.0.0.1:[0-9]+: DATA refused: 550 5.1.1 mailbox unavailable"):
        jobs.run("send_invoices", AS_OF, channel="email")
    assert box.data_commands == 2 and [m["Subject"].split()[1] for m in box.messages] == ["INV-000002"]  # one DATA each
    rec = records(store)[("INV-000001", "email")]
    assert (rec.status.value, rec.attempts, rec.sends) == ("failed", 1, 0)


def test_i24_mail_server_down_fails_the_run_keeps_the_invoice_pending_and_the_next_run_sends_it(store, smtp, monkeypatch):
    box, port = smtp
    seed(store)
    dead = _free_port()  # nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_W365_SMTP", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": dead, "extra": {"from_email": "billing@contoso-csp.example", "backoff_base": "0"}}))
    with pytest.raises(JobFailed, match=r"send_invoices as of 2026-02-10: 2 delivery\(ies\) failed \(e-mail INV-000001: SMTP 127.0.0.1"):
        jobs.run("send_invoices", AS_OF, channel="email")
    rec = records(store)[("INV-000001", "email")]
    assert (rec.status.value, rec.attempts, rec.sends, rec.sent_at) == ("failed", 1, 0, None)
    assert "cannot connect" in (rec.last_error or "")
    with store.session() as s:
        assert sorted(s.scalars(select(JobException.entity_key).where(JobException.job == "send_invoices"))) == ["INV-000001", "INV-000002"]
    # The next day the server is back: both go out, once each, and that day's exception list is empty.
    monkeypatch.setenv("AIRFLOW_CONN_W365_SMTP", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": {"from_email": "billing@contoso-csp.example"}}))
    report = jobs.run("send_invoices", "2026-02-11", channel="email")
    assert report["email"]["sent"] == ["INV-000001", "INV-000002"] and len(box.messages) == 2
    rec = records(store)[("INV-000001", "email")]
    assert (rec.status.value, rec.attempts, rec.sends, rec.last_error) == ("sent", 2, 1, None)


def test_i22_a_customer_without_billing_email_is_one_exception_line(store, smtp):
    box, _ = smtp
    seed(store, billing_email=None, name="Northwind Traders")
    report = jobs.run("send_invoices", AS_OF, channel="email")
    reason = "invoice INV-000001: customer 'Northwind Traders' has no billing e-mail (set billing_email in customers.csv)"
    assert report["email"]["problems"]["INV-000001"] == reason and report["email"]["sent"] == []
    assert box.messages == [] and records(store) == {}  # nothing claimed: the invoice stays pending
    with store.session() as s:
        assert s.scalar(select(JobException.reason).where(JobException.entity_key == "INV-000001")) == reason


def test_i24_a_crash_after_the_server_accepted_is_not_sent_again_and_resend_is_explicit(store, smtp, monkeypatch, capsys, root_logging):
    box, _ = smtp
    seed(store)
    finish = delivery._finish

    class WorkerKilled(BaseException):
        pass

    def crash_once(*args: Any, **kwargs: Any) -> None:  # the worker dies between SMTP's 250 and the record's commit
        monkeypatch.setattr(delivery, "_finish", finish)
        raise WorkerKilled()

    monkeypatch.setattr(delivery, "_finish", crash_once)
    with pytest.raises(WorkerKilled):
        jobs.run("send_invoices", AS_OF, channel="email")
    assert len(box.messages) == 1
    rec = records(store)[("INV-000001", "email")]
    assert rec.status.value == "sending" and rec.message_id == box.messages[0]["Message-ID"].strip()  # committed before sending
    # The rerun cannot know whether the customer has it: it does not send it again, it says so.
    with pytest.raises(JobFailed):
        jobs.run("send_invoices", AS_OF, channel="email")
    assert [m["Subject"].split()[1] for m in box.messages] == ["INV-000001", "INV-000002"]
    with store.session() as s:
        reason = s.scalar(select(JobException.reason).where(JobException.entity_key == "INV-000001"))
    assert f"look up Message-ID {rec.message_id} in the mail log" in reason and "w365 invoice send INV-000001 --resend" in reason
    # Ops check the mail log, find it missing and resend by hand.
    assert main(["invoice", "send", "INV-000001"]) == 1
    assert "not sent: the send of" in capsys.readouterr().err
    assert main(["invoice", "send", "INV-000001", "--resend"]) == 0
    assert capsys.readouterr().out.startswith("INV-000001: sent to ap@fabrikam.example (Message-ID <")
    assert len(box.messages) == 3
    rec = records(store)[("INV-000001", "email")]
    assert (rec.status.value, rec.attempts, rec.sends) == ("sent", 2, 1) and rec.message_id == box.messages[2]["Message-ID"].strip()


def test_i25_cli_send_is_once_and_resend_sends_again(store, smtp, capsys, root_logging):
    box, _ = smtp
    seed(store)
    assert main(["invoice", "send", "INV-000002"]) == 0
    assert main(["invoice", "send", "INV-000002"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("INV-000002: already sent on ") and out[1].endswith("not sent again (--resend sends it again)")
    assert len(box.messages) == 1
    assert main(["invoice", "send", "INV-000002", "--resend"]) == 0
    assert len(box.messages) == 2 and box.messages[0]["Message-ID"] != box.messages[1]["Message-ID"]
    rec = records(store)[("INV-000002", "email")]
    assert (rec.status.value, rec.attempts, rec.sends) == ("sent", 2, 2)
    assert main(["invoice", "send", "INV-404"]) == 2
    assert capsys.readouterr().err.strip() == "error: no invoice 'INV-404'"


def test_i25_cli_send_without_a_connection_is_one_error_line(store, capsys, root_logging):
    seed(store)
    assert main(["invoice", "send", "INV-000001"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "error: Airflow connection 'w365_smtp' is not defined (or set AIRFLOW_CONN_W365_SMTP)"


def _accounting(monkeypatch: pytest.MonkeyPatch, pc: Any) -> None:
    pc.static_token = "acct-token"
    monkeypatch.setenv("AIRFLOW_CONN_W365_ACCOUNTING", json.dumps({
        "conn_type": "http", "host": pc.base_url, "password": "acct-token", "extra": {"backoff_base": "0.001", "backoff_max": "0.01"}}))


def test_i26_rest_export_retries_a_429_without_a_duplicate_and_a_rerun_exports_nothing(store, pc, monkeypatch):
    seed(store)
    _accounting(monkeypatch, pc)
    pc.faults.append(Fault("/invoices/INV-000001", 429, 1, {"Retry-After": "0"}))
    report = jobs.run("send_invoices", AS_OF, channel="accounting")
    assert report["accounting"]["sent"] == ["INV-000001", "INV-000002"]
    puts = [(m, p, h) for m, p, h in pc.requests if m == "PUT"]
    assert [p for _, p, _ in puts] == ["/invoices/INV-000001", "/invoices/INV-000001", "/invoices/INV-000002"]  # the 429, its retry
    assert all(h["Idempotency-Key"] == p.rsplit("/", 1)[1] for _, p, h in puts)
    assert {k: len(v) for k, v in pc.invoices.items()} == {"INV-000001": 1, "INV-000002": 1}  # no duplicate
    body = pc.invoices["INV-000002"][0]
    assert (body["number"], body["currency"], body["total"], body["issue_date"], body["customer"]) == (
        "INV-000002", "USD", "250.50", "2026-02-05", "Fabrikam")  # money as exact text, never a float
    rec = records(store)[("INV-000002", "accounting")]
    assert (rec.status.value, rec.attempts, rec.sends, rec.message_id, rec.recipient) == ("sent", 1, 1, "acct-INV-000002", "rest")
    again = jobs.run("send_invoices", AS_OF, channel="accounting")
    assert again["accounting"]["considered"] == 0 and len([r for r in pc.requests if r[0] == "PUT"]) == 3


def test_i26_an_export_that_stays_refused_is_reported_and_exported_by_the_next_run(store, pc, monkeypatch):
    seed(store)
    _accounting(monkeypatch, pc)
    pc.faults.append(Fault("/invoices/INV-000002", 503, 6))  # the HTTP client's 6 attempts, all 503
    with pytest.raises(JobFailed, match="export INV-000002: accounting system: PUT 127.0.0.1/invoices/INV-000002 failed after 6 attempt"):
        jobs.run("send_invoices", AS_OF, channel="accounting")
    assert list(pc.invoices) == ["INV-000001"]
    assert records(store)[("INV-000002", "accounting")].status.value == "failed"
    jobs.run("send_invoices", "2026-02-11", channel="accounting")
    assert {k: len(v) for k, v in pc.invoices.items()} == {"INV-000001": 1, "INV-000002": 1}


def test_i27_file_drop_writes_one_neutralised_file_per_invoice(store, tmp_path, monkeypatch):
    seed(store, name='=HYPERLINK("http://evil.example","pay here")')
    monkeypatch.setenv("AIRFLOW_CONN_W365_ACCOUNTING", json.dumps({"conn_type": "fs", "extra": {"path": str(tmp_path)}}))
    report = jobs.run("send_invoices", AS_OF, channel="accounting")
    assert report["accounting"]["sent"] == ["INV-000001", "INV-000002"]
    folder = tmp_path / "invoices"
    assert sorted(p.name for p in folder.iterdir()) == ["INV-000001.csv", "INV-000002.csv"]  # no temporary file left
    text = (folder / "INV-000001.csv").read_text()
    assert "'=HYPERLINK(\"\"http://evil.example\"\",\"\"pay here\"\")" in text and ",=HYPERLINK" not in text
    assert text.splitlines()[-1].startswith("INV-000001,,total,") and ",100.00,USD," in text.splitlines()[-1]
    assert records(store)[("INV-000001", "accounting")].message_id == str(folder / "INV-000001.csv")


def test_i27_file_drop_json_format(store, tmp_path, monkeypatch):
    seed(store)
    monkeypatch.setenv("AIRFLOW_CONN_W365_ACCOUNTING", json.dumps({
        "conn_type": "fs", "extra": {"export_path": str(tmp_path / "out"), "format": "json"}}))
    jobs.run("send_invoices", AS_OF, channel="accounting")
    doc = json.loads((tmp_path / "out" / "INV-000001.json").read_text())
    assert (doc["number"], doc["total"], doc["period_to"], doc["lines"]) == ("INV-000001", "100.00", "2026-02-28", [])
    assert (doc["document"], doc["corrects"], doc["subtotal"], doc["tax_total"]) == ("invoice", None, "100.00", "0.00")


def test_i26_a_credit_note_is_exported_with_its_document_type_negative_total_and_the_invoice_it_corrects(store, pc, monkeypatch):
    """I26 with SPEC I4-I6: the accounting system books a credit note as one (not as an invoice
    of a negative amount it cannot tell apart), with its tax and the invoice it corrects."""
    seed(store)
    seed_credit_note(store)
    _accounting(monkeypatch, pc)
    report = jobs.run("send_invoices", AS_OF, channel="accounting")
    assert sorted(report["accounting"]["sent"]) == ["CN-000001", "INV-000001", "INV-000002"]
    body = pc.invoices["CN-000001"][0]
    assert {k: body[k] for k in ("number", "document", "corrects", "issue_date", "currency", "subtotal", "tax_total", "total")} == {
        "number": "CN-000001", "document": "credit_note", "corrects": "INV-000001", "issue_date": "2026-02-08", "currency": "USD",
        "subtotal": "-10.00", "tax_total": "-2.00", "total": "-12.00"}  # -10.00 + -2.00 = -12.00
    assert body["tax_summary"] == [{"code": "VAT20", "rate": "20", "taxable": "-10.00", "tax": "-2.00"}]
    [line] = body["lines"]
    assert (line["amount"], line["tax_code"], line["tax_rate"], line["tax_amount"]) == ("-10.00", "VAT20", "20", "-2.00")
    # An invoice says it is one; untaxed, its subtotal is its total.
    inv = pc.invoices["INV-000002"][0]
    assert (inv["document"], inv["corrects"], inv["subtotal"], inv["tax_total"], inv["total"]) == ("invoice", None, "250.50", "0.00", "250.50")


def test_i27_file_drop_carries_a_credit_notes_type_tax_and_corrected_invoice(store, tmp_path, monkeypatch):
    """I27 with SPEC I4-I6: the CSV's every row names the document type and the corrected invoice;
    the total row carries the total (-12.00) and the tax total (-2.00)."""
    import csv

    from w365.billing.invoicing.export import CSV_COLUMNS

    seed(store)
    seed_credit_note(store)
    monkeypatch.setenv("AIRFLOW_CONN_W365_ACCOUNTING", json.dumps({"conn_type": "fs", "extra": {"path": str(tmp_path)}}))
    jobs.run("send_invoices", AS_OF, channel="accounting")
    rows = list(csv.reader((tmp_path / "invoices" / "CN-000001.csv").read_text().splitlines()))
    assert rows[0] == CSV_COLUMNS
    col = {name: i for i, name in enumerate(CSV_COLUMNS)}
    line, total = rows[1:]
    assert [line[col[c]] for c in ("invoice", "kind", "amount", "tax_code", "tax_rate", "tax_amount", "document", "corrects")] == [
        "CN-000001", "adjustment", "-10.00", "VAT20", "20", "-2.00", "credit_note", "INV-000001"]
    assert [total[col[c]] for c in ("kind", "amount", "tax_amount", "document", "corrects")] == [
        "total", "-12.00", "-2.00", "credit_note", "INV-000001"]


def test_i28_payments_job_reads_back_from_the_rest_system_the_invoices_went_to(store, pc, monkeypatch):
    from w365.integrations.accounting import RestAccounting
    from w365.integrations.payments import RestPaymentSource, source_for

    seed(store)
    _accounting(monkeypatch, pc)
    jobs.run("send_invoices", AS_OF, channel="accounting")
    pc.payments = [{"invoiceNumber": "INV-000001", "status": "paid", "amountPaid": Decimal("100.00"), "paidOn": "2026-02-12"},
                   {"invoiceNumber": "INV-000002", "amountPaid": Decimal("50.25"), "paidOn": "2026-02-13"}]
    source = source_for()
    assert isinstance(source, RestPaymentSource) and isinstance(source.system, RestAccounting)
    source.close()
    report = jobs.run("update_payment_status", "2026-02-14")
    assert report["problems"] == {} and len(report["updated"]) == 2
    with store.session() as s:
        got = {i.number: (i.payment_status, i.amount_paid, i.paid_on) for i in s.scalars(select(Invoice))}
    assert got == {"INV-000001": (PaymentStatus.PAID, Decimal("100.00"), date(2026, 2, 12)),
                   "INV-000002": (PaymentStatus.PARTIALLY_PAID, Decimal("50.25"), date(2026, 2, 13))}  # 50.25 of 250.50


def test_i29_both_channels_not_configured_are_reported_not_failed(store):
    seed(store)
    report = jobs.run("send_invoices", AS_OF)
    assert report["email"]["status"].startswith("not configured: Airflow connection 'w365_smtp' is not defined")
    assert report["accounting"]["status"].startswith("not configured: Airflow connection 'w365_accounting' is not defined")
    assert records(store) == {}


def test_i21_billing_email_is_imported_and_a_bad_address_is_refused_by_row(store, session, tmp_path):
    import shutil
    from pathlib import Path

    from w365.interfaces.importer import ImportFailed, import_folder

    example = Path(__file__).resolve().parents[2] / "examples" / "import"
    import_folder(session, example, now=f.NOW)
    got = dict(session.execute(select(Customer.name, Customer.billing_email)).all())
    assert got == {"Fabrikam": "invoices@fabrikam.example", "Northwind Traders": "ap@northwind.example, controller@northwind.example"}
    session.rollback()
    bad = tmp_path / "bad"
    shutil.copytree(example, bad)
    for text, reason in (
        ("name,billing_email\nLitware,not-an-address\n", "billing_email 'not-an-address' is not an e-mail address (name@example.com)"),
        ("name,billing_email\nLitware,ap@litware.example <boss@x.example>\n",
         "billing_email 'ap@litware.example <boss@x.example>' is not an e-mail address (name@example.com)"),
        # a header smuggled in with a line break
        ("name,billing_email\nContoso,\"ap@contoso.example\r\nBcc: all@x.example\"\n",
         "billing_email 'ap@contoso.example\\r\\nBcc: all@x.example' contains the control character U+000D at character 19"),
    ):
        (bad / "customers.csv").write_text(text, newline="")
        with pytest.raises(ImportFailed) as exc:
            import_folder(session, bad, now=f.NOW)
        session.rollback()
        assert {(e.file, e.row): e.reason for e in exc.value.errors if e.file == "customers.csv"} == {("customers.csv", 2): reason}


def test_i27_a_file_drop_that_cannot_be_written_is_reported_and_nothing_is_half_written(store, tmp_path, monkeypatch):
    seed(store)
    blocker = tmp_path / "drop" / "not-a-folder"
    blocker.parent.mkdir()
    blocker.write_text("a file where the drop folder should be")
    monkeypatch.setenv("AIRFLOW_CONN_W365_ACCOUNTING", json.dumps({"conn_type": "fs", "extra": {"export_path": str(blocker)}}))
    with pytest.raises(JobFailed, match=r"export INV-000001: accounting file drop: cannot write .*not-a-folder/INV-000001.csv"):
        jobs.run("send_invoices", AS_OF, channel="accounting")
    rec = records(store)[("INV-000001", "accounting")]
    assert (rec.status.value, rec.attempts, rec.sends) == ("failed", 1, 0) and "cannot write" in (rec.last_error or "")
    assert [p.name for p in blocker.parent.iterdir()] == ["not-a-folder"]  # no temporary file left
