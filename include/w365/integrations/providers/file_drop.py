"""A file-drop provider: a folder of CSV/JSON exports in Partner Center's shapes, for providers
without an API (SPEC P1).

Folder: the connection's ``extra.path`` (or its host), e.g.
``AIRFLOW_CONN_DISTRIBUTOR_FILES='{"conn_type": "fs", "extra": {"path": "/data/distributor"}}'``.

* ``subscriptions.json`` (a list, or ``{"items": [...]}``, of subscription resources, each with
  ``customerId``) or ``subscriptions.csv`` (a header row with the same names): the provider's
  current subscriptions, all customers in one file.
* ``usage/interim/YYYY-MM-DD.csv`` and ``usage/final/YYYY-MM-DD.csv`` (or ``.json``): the day's
  usage line items (customerId, subscriptionId, meterId, meterName, unitOfMeasure, usageDate,
  quantity, unitPrice, preTaxTotal, currency). A missing day file means "nothing yet".

Numbers are read as text (CSV) or as Decimal (JSON), never float (SPEC M1).
"""

from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from w365.connections import ConnectionInfo
from w365.errors import W365Error
from w365.integrations.providers.base import (
    BadRecord,
    ProviderClient,
    ProviderUnavailable,
    SubscriptionBatch,
    normalise_usage_columns,
    usage_frame,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes(), parse_float=Decimal)
    except ValueError as exc:
        raise BadRecord(f"{path.name} is not valid JSON: {exc}") from None


class FileDropProvider(ProviderClient):
    kind = "file"

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)

    @classmethod
    def from_connection(cls, conn: ConnectionInfo) -> "FileDropProvider":
        path = conn.path()
        if not path:
            raise W365Error(f"connection {conn.conn_id!r} names no folder: set extra.path (or host)")
        return cls(path)

    def __repr__(self) -> str:
        return f"FileDropProvider({str(self.folder)!r})"

    def _records(self) -> list[Any]:
        js, cs = self.folder / "subscriptions.json", self.folder / "subscriptions.csv"
        if js.is_file():
            data = read_json(js)
            items = data.get("items") if isinstance(data, dict) else data
            if not isinstance(items, list):
                raise BadRecord(f"{js} holds neither a list nor an object with 'items'")
            return items
        if cs.is_file():
            with cs.open(newline="", encoding="utf-8-sig") as fh:
                return [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(fh)]
        raise ProviderUnavailable(f"no subscriptions.json or subscriptions.csv in {self.folder}")

    def subscription_batches(self) -> Iterator[SubscriptionBatch]:
        if not self.folder.is_dir():
            raise ProviderUnavailable(f"file-drop folder {self.folder} does not exist")
        try:
            records = self._records()
        except BadRecord as exc:
            raise ProviderUnavailable(str(exc)) from None
        by_customer: dict[str | None, list[Any]] = defaultdict(list)
        for rec in records:
            cust = rec.get("customerId") if isinstance(rec, dict) else None
            by_customer[str(cust) if cust else None].append(rec)
        log.info("file drop %s: %d subscription record(s), %d customer(s)", self.folder, len(records), len(by_customer))
        for cust in sorted(by_customer, key=lambda c: (c is None, c or "")):
            yield SubscriptionBatch(cust, by_customer[cust])

    def usage_file(self, day: date, kind: str) -> Path | None:
        for ext in ("csv", "json"):
            path = self.folder / "usage" / kind / f"{day.isoformat()}.{ext}"
            if path.is_file():
                return path
        return None

    def usage(self, day: date, kind: str) -> "pd.DataFrame | None":
        """The whole day in one frame; the sync jobs read it in chunks (``usage_batches``)."""
        import pandas as pd

        chunks = self.usage_batches(day, kind)
        if chunks is None:
            return None
        frames = list(chunks)
        return pd.concat(frames, ignore_index=True) if frames else usage_frame([])

    def usage_batches(self, day: date, kind: str) -> "Iterator[pd.DataFrame] | None":
        """A CSV export read ``USAGE_BATCH_LINES`` lines at a time (every column as text: amounts
        stay exact decimal strings, SPEC M1); a JSON one whole."""
        import pandas as pd

        from w365.integrations.usage_day import USAGE_BATCH_LINES

        if not self.folder.is_dir():
            raise ProviderUnavailable(f"file-drop folder {self.folder} does not exist")
        path = self.usage_file(day, kind)
        if path is None:
            return None
        if path.suffix == ".json":
            try:
                data = read_json(path)
                items = data.get("items") if isinstance(data, dict) else data
                if not isinstance(items, list):
                    raise BadRecord(f"{path.name} holds neither a list nor an object with 'items'")
                frame = usage_frame(items)
            except BadRecord as exc:
                raise ProviderUnavailable(f"{path}: {exc}") from None
            log.info("file drop %s: %d %s usage line(s) for %s", self.folder, len(frame), kind, day)
            return iter([frame])

        def chunks() -> Iterator[pd.DataFrame]:
            lines = 0
            try:
                with pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], chunksize=USAGE_BATCH_LINES) as reader:
                    for chunk in reader:
                        lines += len(chunk)
                        yield normalise_usage_columns(chunk)
            except BadRecord as exc:
                raise ProviderUnavailable(f"{path}: {exc}") from None
            except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError is a ValueError
                raise ProviderUnavailable(f"{path}: unreadable after {lines} line(s): {str(exc).strip()}") from None
            log.info("file drop %s: %d %s usage line(s) for %s", self.folder, lines, kind, day)

        return chunks()
