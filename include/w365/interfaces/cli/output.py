"""Printing for the CLI: aligned tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Iterable, Sequence


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def print_json(data: Any) -> None:
    print(json.dumps(_plain(data), indent=2, sort_keys=False))


def print_table(rows: Iterable[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    rows = [_plain(r) for r in rows]
    if not rows:
        print("(none)")
        return
    cols = list(columns or rows[0].keys())
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def emit(rows: list[dict[str, Any]], as_json: bool, columns: Sequence[str] | None = None) -> None:
    if as_json:
        print_json(rows)
    else:
        print_table(rows, columns)


def add_json_flag(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--json", action="store_true", help="machine-readable output")
