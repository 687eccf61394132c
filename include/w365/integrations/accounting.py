"""The accounting system: invoices go out, payments come back (issue 16, I26-I28; SPEC P2).

One Airflow connection, ``w365_accounting``, names the system, and the same one serves both
directions (the payment-status job reads back from where the invoices went):

* **REST** (:class:`RestAccounting`; a connection of type http/https): an invoice is
  ``PUT {base_url}/invoices/{number}`` with a JSON body (the invoice and its lines, money as
  decimal strings, never floats) and the header ``Idempotency-Key: <number>``. PUT to the
  invoice's own URL is idempotent by number: sending it twice leaves one invoice, so a retry
  after a lost answer is harmless. Payments are ``GET {base_url}/payments?as_of=YYYY-MM-DD``
  (:meth:`RestAccounting.payment_records`, read by ``w365.integrations.payments``). Paths:
  ``extra.invoices_path`` (``/invoices``), ``extra.payments_path`` (``/payments``). Every
  request goes through ``w365.integrations.http`` (timeouts, 429/5xx retried with
  Retry-After: the one HTTP retry layer).
* **file drop** (:class:`FileDropAccounting`; a connection of type fs/file or with
  ``extra.path``): one file per invoice, ``<number>.csv`` (default) or ``<number>.json``
  (``extra.format``), in ``extra.export_path`` or else the folder ``invoices/`` beside the
  payments file. Written to a temporary name and renamed, so a reader never sees half a file;
  the CSV goes through ``w365.core.csvsafe`` (a name like ``=HYPERLINK(...)`` is text).
"""

from __future__ import annotations

import abc
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

from sqlalchemy.orm import Session

from w365.billing.invoicing.export import invoice_document, to_csv
from w365.connections import ACCOUNTING, ConnectionInfo, get_connection
from w365.errors import W365Error
from w365.integrations.http import HttpError, JsonHttpClient, client_from_connection


def invoice_payload(doc: dict[str, Any]) -> dict[str, Any]:
    """The invoice (``export.invoice_document``) and its lines as JSON-ready values: dates ISO,
    money as exact decimal text. It carries what the books need (SPEC I4, I6): ``document``
    (``invoice`` or ``credit_note``), ``subtotal`` + ``tax_total`` = ``total`` (negative for a
    credit note), ``corrects`` (the invoice a credit note corrects), the tax summary and each
    line's tax code, rate and amount."""

    def plain(value: Any) -> Any:
        if value is None or isinstance(value, (str, int, bool)):
            return value
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value.isoformat() if hasattr(value, "isoformat") else format(value, "f")

    lines = [
        {k: plain(l[k]) for k in ("line", "kind", "description", "product", "subscription", "period_from", "period_to", "quantity",
                                  "unit_price", "days", "period_days", "amount", "tax_code", "tax_rate", "tax_amount")}
        for l in doc["lines"]
    ]
    head = ("number", "document", "kind", "corrects", "customer", "contract", "issue_date", "due_date", "period_from", "period_to",
            "currency", "subtotal", "tax_total", "total", "tax_exempt_reference", "tax_summary")
    return {**{k: plain(doc[k]) for k in head}, "lines": lines}


class AccountingSystem(abc.ABC):
    """Where invoices are exported (and, for REST, where payments are read back)."""

    name = ""

    @staticmethod
    def document(session: Session, number: str) -> dict[str, Any]:
        """What is exported, read in the caller's transaction before anything is sent."""
        return invoice_document(session, number)

    @abc.abstractmethod
    def export_invoice(self, doc: dict[str, Any]) -> str:
        """Send one invoice (:meth:`document`; no database transaction is held meanwhile);
        returns the system's reference for the delivery record. Idempotent by invoice number:
        exporting it again must not make a second invoice there."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        pass


class RestAccounting(AccountingSystem):
    name = "rest"

    def __init__(self, http: JsonHttpClient, invoices_path: str = "/invoices", payments_path: str = "/payments"):
        self.http = http
        self.invoices_path = "/" + invoices_path.strip("/")
        self.payments_path = payments_path

    @classmethod
    def from_connection(cls, conn: ConnectionInfo, **http_kwargs: Any) -> "RestAccounting":
        return cls(client_from_connection(conn, **http_kwargs), str(conn.extra.get("invoices_path") or "/invoices"),
                   str(conn.extra.get("payments_path") or "/payments"))

    def export_invoice(self, doc: dict[str, Any]) -> str:
        number = str(doc["number"])
        payload = invoice_payload(doc)
        try:
            answer = self.http.request_json("PUT", f"{self.invoices_path}/{quote(number, safe='')}", json_body=payload,
                                            headers={"Idempotency-Key": number})
        except HttpError as exc:
            raise W365Error(f"accounting system: {exc}") from None
        ref = answer.get("id") if isinstance(answer, dict) else None
        return str(ref or number)[:255]

    def payment_records(self, as_of: Any) -> Iterator[tuple[str, Any]]:
        """(reference, raw payment record) pairs from the payments feed, page by page."""
        try:
            for n, item in enumerate(self.http.paged(self.payments_path, params={"as_of": as_of.isoformat()}), start=1):
                yield f"item {n}", item
        except HttpError as exc:
            raise W365Error(f"accounting system: {exc}") from None

    def close(self) -> None:
        self.http.close()


def safe_file_name(number: str) -> str:
    """An invoice number as a file name: anything but letters, digits, '.', '_' and '-' becomes '_'."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", number).lstrip(".")
    return name or "_"


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary file in the same folder and a rename: all or nothing."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileDropAccounting(AccountingSystem):
    name = "file"

    def __init__(self, folder: Path | str, fmt: str = "csv"):
        if fmt not in ("csv", "json"):
            raise W365Error(f"accounting file drop: format {fmt!r} is not csv or json")
        self.folder = Path(folder)
        self.format = fmt

    def export_invoice(self, doc: dict[str, Any]) -> str:
        number = str(doc["number"])
        if self.format == "csv":
            data = to_csv(doc).encode("utf-8")
        else:
            data = (json.dumps(invoice_payload(doc), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        path = self.folder / f"{safe_file_name(number)}.{self.format}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomically(path, data)  # a rerun rewrites the same file with the same bytes
        except OSError as exc:  # a full disk, a folder it may not write: reported, retried next run
            raise W365Error(f"accounting file drop: cannot write {path}: {exc.strerror or type(exc).__name__}") from None
        return str(path)[:255]


def accounting_for(conn: ConnectionInfo | None = None, **http_kwargs: Any) -> AccountingSystem:
    """The accounting system of the connection (default ``w365_accounting``; raises
    ``ConnectionNotFound`` when it is not defined)."""
    conn = conn or get_connection(ACCOUNTING)
    if conn.conn_type in ("fs", "file") or conn.extra.get("path") or conn.extra.get("export_path"):
        explicit = conn.extra.get("export_path")
        if explicit:
            folder = Path(str(explicit))
        else:
            base = conn.path()
            if not base:
                raise W365Error(f"connection {conn.conn_id!r} names no folder (extra.path or extra.export_path)")
            p = Path(base)
            folder = (p if p.is_dir() or not p.suffix else p.parent) / "invoices"
        return FileDropAccounting(folder, str(conn.extra.get("format") or "csv").lower())
    return RestAccounting.from_connection(conn, **http_kwargs)
