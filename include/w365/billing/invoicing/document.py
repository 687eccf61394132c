"""The invoice document (issue 16, I10-I19): TEMPORARY STAND-IN in the delivery branch.

The document branch replaces this module with the real one (Jinja template, addresses, tax); the
delivery code calls only these two names, ``render_html`` and ``render_pdf``, so the swap changes
nothing else. Until then the PDF is the existing HTML export (``export.to_html``) through
WeasyPrint.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from w365.billing.invoicing.export import invoice_document, to_html


def render_html(session: Session, invoice_number: str) -> str:
    """The invoice as an HTML document (every value escaped by the template)."""
    return to_html(invoice_document(session, invoice_number))


def render_pdf(session: Session, invoice_number: str) -> bytes:
    """The invoice as PDF bytes (``%PDF-...``). WeasyPrint is imported here, not at import time:
    it loads Pango, which only the paths that render a PDF need."""
    from weasyprint import HTML

    # Its note that HarfBuzz-Subset is missing (fonts are subset with fontTools instead) is not
    # the operator's business on every `w365 invoice send`.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    pdf = HTML(string=render_html(session, invoice_number)).write_pdf()
    assert pdf is not None  # write_pdf() without a target returns the bytes
    return bytes(pdf)
