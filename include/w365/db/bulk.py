"""Set-based writes: many rows in one round trip.

PostgreSQL: ``COPY ... FROM STDIN`` for inserts (ids drawn from the table's sequence first when
the caller needs them) and ``UPDATE ... FROM (VALUES ...)`` for updates by id. SQLite: plain
executemany, which is in-process and already cheap. Values pass through each column's own type
(``ExactDecimal``, ``UTCDateTime``, enums), so what lands is exactly what the ORM would write.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Sequence

from sqlalchemy import Boolean, Table, insert, text, update
from sqlalchemy.orm import Session

NULL = r"\N"


def _table(model_or_table: Any) -> Table:
    return model_or_table.__table__ if hasattr(model_or_table, "__table__") else model_or_table


def _converter(session: Session, column: Any) -> Any:
    """A fast value converter for one column: what its SQLAlchemy type would bind, as a Python
    value psycopg2 adapts (or ``None``). Money keeps its checks: a value with more decimals than
    the column holds is refused, never rounded by the database."""
    from enum import Enum as PyEnum

    from sqlalchemy import Boolean, Date, Integer, String
    from sqlalchemy import Enum as SAEnum

    from w365.db.types import ExactDecimal, UTCDateTime
    from w365.money import D, MoneyError

    t = column.type
    if isinstance(t, ExactDecimal):
        scale = t.scale

        def money(v: Any) -> Any:
            if v is None:
                return None
            if not isinstance(v, Decimal):
                v = D(v)
            exp = v.as_tuple().exponent
            if isinstance(exp, int) and -exp > scale:
                raise MoneyError(f"{column.table.name}.{column.name}: {v} has more than {scale} decimal places")
            return v

        return money
    if isinstance(t, UTCDateTime):
        from datetime import timezone

        def instant(v: Any) -> Any:
            if v is None:
                return None
            if v.tzinfo is None:
                raise ValueError(f"{column.table.name}.{column.name}: {v!r} has no time zone")
            return v.astimezone(timezone.utc)

        return instant
    if isinstance(t, SAEnum):
        allowed = set(t.enums)

        def enum(v: Any) -> Any:
            if v is None:
                return None
            v = v.value if isinstance(v, PyEnum) else v
            if v not in allowed:
                raise ValueError(f"{column.table.name}.{column.name}: {v!r} is not one of {sorted(allowed)}")
            return v

        return enum
    if isinstance(t, (Boolean, Date, Integer, String)):
        return None  # passes through as it is
    processor = t.bind_processor(session.get_bind().dialect)
    return processor


def _processors(session: Session, table: Table, columns: Sequence[str]) -> list[Any]:
    return [_converter(session, table.c[c]) for c in columns]


def _text_converter(session: Session, column: Any) -> Any:
    """Column value -> COPY text, through the column's converter (one function call a value on
    the common types: this runs for every cell of every bulk insert)."""
    from sqlalchemy import Date, Integer, String

    from w365.db.types import ExactDecimal, UTCDateTime

    conv = _converter(session, column)
    t = column.type
    if isinstance(t, ExactDecimal):
        return lambda v: NULL if v is None else format(conv(v), "f")
    if isinstance(t, UTCDateTime):
        return lambda v: NULL if v is None else conv(v).isoformat()
    if isinstance(t, Date):
        return lambda v: NULL if v is None else v.isoformat()
    if conv is None and isinstance(t, (Integer, String)) and not isinstance(t, Boolean):
        return lambda v: NULL if v is None else str(v)
    if conv is None:
        return _text
    return lambda v: _text(conv(v))


def _text(value: Any) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _defaults(table: Table, rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Fill Python-side column defaults (created_at, flags) the way an ORM insert would."""
    columns = list(rows[0].keys())
    extra = [c for c in table.c if c.name not in columns and c.default is not None and not c.primary_key]
    if extra:
        filled = []
        for r in rows:
            r = dict(r)
            for c in extra:
                arg = c.default.arg  # type: ignore[union-attr]
                r[c.name] = arg(None) if callable(arg) else arg
            filled.append(r)
        rows = filled
        columns += [c.name for c in extra]
    return columns, rows


def insert_rows(session: Session, model: Any, rows: list[dict[str, Any]], *, return_ids: bool = False) -> list[int]:
    """Insert ``rows`` (dicts with the same keys); returns their new ids, in order, if asked."""
    if not rows:
        return []
    table = _table(model)
    columns, rows = _defaults(table, rows)
    if session.get_bind().dialect.name != "postgresql":
        if return_ids:
            return list(session.scalars(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows))
        session.execute(insert(table), rows)
        return []
    ids: list[int] = []
    if return_ids:
        ids = list(session.scalars(
            text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"), {"t": table.name, "n": len(rows)}
        ))
        columns = ["id"] + columns
        rows = [dict(r, id=i) for r, i in zip(rows, ids)]
    convert = [_text_converter(session, table.c[c]) for c in columns]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerows([[f(r[c]) for c, f in zip(columns, convert)] for r in rows])
    buf.seek(0)
    cursor = session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.copy_expert(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '{NULL}')", buf)
    return ids


def update_rows(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    """UPDATE rows by ``id``; every dict sets the same columns."""
    if not rows:
        return
    table = _table(model)
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        session.execute(update(model), rows)  # ORM bulk UPDATE by primary key
        return
    from psycopg2.extras import execute_values

    columns = ["id"] + [k for k in rows[0] if k != "id"]
    procs = _processors(session, table, columns)
    casts = [table.c[c].type.dialect_impl(dialect).compile(dialect=dialect) for c in columns]
    template = "(" + ", ".join(f"%s::{t}" for t in casts) + ")"
    sets = ", ".join(f"{c} = v.{c}" for c in columns[1:])
    sql = f"UPDATE {table.name} AS t SET {sets} FROM (VALUES %s) AS v({', '.join(columns)}) WHERE t.id = v.id"
    data = [tuple(p(r[c]) if p else r[c] for c, p in zip(columns, procs)) for r in rows]
    cursor = session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    execute_values(cursor, sql, data, template=template, page_size=1000)
