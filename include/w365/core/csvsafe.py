"""CSV that people open in a spreadsheet (issue 12; SPEC M3 exports).

A text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula
to Excel, LibreOffice and Google Sheets: a customer named ``=HYPERLINK("http://x","pay")`` would
be a live link in finance's copy of the invoice. Following OWASP's CSV injection guidance, such a
cell is written with a leading single quote (``'=HYPERLINK(...)``), which spreadsheets show as
text. Numbers stay numbers: ``-100.00`` (a credit), ``+1`` or ``12`` are left as they are, as are
ints and Decimals themselves, so amounts, quantities and prices still sum in the sheet.

:func:`safe_cell` is the one rule; :func:`writer` is ``csv.writer`` with it applied to every cell,
and rows ended by CRLF (RFC 4180): Python's writer quotes a cell holding a CR or LF only when that
character is part of the line terminator, so with ``\n`` a name containing a CR would have split
its row in two.
Every CSV w365 writes for people goes through them (``w365.billing.invoicing.export.to_csv``, used by
``w365 invoice export --format csv`` and the pages' ``/export.csv``). Two CSV writers
deliberately do not: ``w365.store.bulk`` (PostgreSQL's ``COPY`` wire format, which must carry
values exactly as stored) and the demo's simulated provider usage files (``w365.interfaces.demo``), which
stand in for the provider's own export and are read back by w365, not opened by people.
"""

from __future__ import annotations

import csv
import re
from decimal import Decimal
from typing import Any, Iterable

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# A plain decimal number as w365 writes them (``format(Decimal, "f")``): optional sign, digits,
# optional fraction. Anything else that starts with a formula character is text.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def safe_cell(value: Any) -> Any:
    """``value`` as a spreadsheet will read it safely: None -> ``""``, numbers unchanged, text
    beginning with a formula character prefixed with ``'`` unless it is a plain number."""
    if value is None:
        return ""
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return value
    text = str(value)
    if text.startswith(FORMULA_PREFIXES) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


class _SafeWriter:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._inner.writerow([safe_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(fh: Any, **kwargs: Any) -> _SafeWriter:
    """``csv.writer(fh, **kwargs)`` whose every cell goes through :func:`safe_cell`; rows end in
    CRLF (so that a CR or LF inside a cell is quoted). Open files with ``newline=""``."""
    if kwargs.setdefault("lineterminator", "\r\n") != "\r\n":
        raise ValueError("csvsafe.writer ends rows with CRLF: a CR or LF inside a cell is quoted only then")
    return _SafeWriter(csv.writer(fh, **kwargs))
