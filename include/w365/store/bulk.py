"""Set-based writes: many rows in one round trip.

PostgreSQL: ``COPY ... FROM STDIN`` for inserts (ids drawn from the table's sequence first when
the caller needs them) and ``UPDATE ... FROM (VALUES ...)`` for updates by id. SQLite: plain
executemany, which is in-process and already cheap. Values pass through each column's own type
(``ExactDecimal``, ``UTCDateTime``, enums), so what lands is exactly what the ORM would write.
"""

from __future__ import annotations

import queue
import threading
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import Boolean, ColumnDefault, Table, insert, text, update
from sqlalchemy.orm import Session

NULL = r"\N"  # COPY text format's null
# Text values in COPY's text format: backslash, tab and line breaks escaped (nothing else is special).
COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
COPY_UPDATE_MIN = 500  # from this many rows an UPDATE goes through COPY and a scratch table


def _table(model_or_table: Any) -> Table:
    return model_or_table.__table__ if hasattr(model_or_table, "__table__") else model_or_table


def _converter(session: Session, column: Any) -> Any:
    """A fast value converter for one column: what its SQLAlchemy type would bind, as a Python
    value psycopg2 adapts (or ``None``). Money keeps its checks: a value with more decimals than
    the column holds is refused, never rounded by the database."""
    from enum import Enum as PyEnum

    from sqlalchemy import Boolean, Date, Integer, String
    from sqlalchemy import Enum as SAEnum

    from w365.store.types import ExactDecimal, UTCDateTime
    from w365.core.money import D, MoneyError

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


def _text_column(session: Session, column: Any, values: list[Any]) -> list[str]:
    """One column's values -> COPY text, through the column's converter. Column-wise, with a
    builtin doing the common cases, because this runs for every cell of every bulk insert."""
    from sqlalchemy import Date, Integer, String

    from w365.store.types import ExactDecimal, UTCDateTime
    from w365.core.money import MoneyError

    t = column.type
    has_null = None in values
    if isinstance(t, ExactDecimal):
        scale = t.scale
        if not all(type(v) is Decimal for v in values if v is not None):
            conv = _converter(session, column)
            values = [conv(v) for v in values]
        text = [NULL if v is None else format(v, "f") for v in values] if has_null else [format(v, "f") for v in values]
        for v, s in zip(values, text):  # refuse, never round, a value finer than the column
            dot = s.find(".")
            if dot >= 0 and len(s) - dot - 1 > scale:
                raise MoneyError(f"{column.table.name}.{column.name}: {v} has more than {scale} decimal places")
        return text
    if isinstance(t, Date) and not isinstance(t, UTCDateTime):
        return [NULL if v is None else v.isoformat() for v in values] if has_null else [v.isoformat() for v in values]
    conv = _converter(session, column)
    if isinstance(t, UTCDateTime):
        return [NULL if v is None else conv(v).isoformat() for v in values]
    if isinstance(t, Boolean):
        return [NULL if v is None else ("t" if v else "f") for v in values]
    if conv is None and isinstance(t, Integer):
        return [NULL if v is None else str(v) for v in values] if has_null else list(map(str, values))
    if conv is None and isinstance(t, String):
        return [NULL if v is None else str(v).translate(COPY_ESCAPES) for v in values]
    if conv is None:
        return [_text(v) for v in values]
    return [_text(conv(v)) for v in values]


def _text(value: Any) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value).translate(COPY_ESCAPES)


def _columns(table: Table, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The rows as columns, with Python-side column defaults (created_at, flags) filled the way
    an ORM insert would."""
    names = list(rows[0].keys())
    cols = {c: [r[c] for r in rows] for c in names}
    for c in table.c:
        if c.name not in cols and isinstance(c.default, ColumnDefault) and not c.primary_key:
            arg = c.default.arg
            cols[c.name] = [arg(None) for _ in rows] if callable(arg) else [arg] * len(rows)
    return cols


def copy_columns(session: Session, table_name: str, columns: Sequence[str], cells: Sequence[Sequence[str]]) -> None:
    """``COPY table (columns) FROM STDIN`` in PostgreSQL's text format (bulk inserts, bulk
    updates). ``cells``: one list per column, each value already COPY text (``NULL`` for null;
    text through ``COPY_ESCAPES``)."""
    copy_blocks(session, table_name, columns, [cells])


def copy_blocks(session: Session, table_name: str, columns: Sequence[str], blocks: Iterable[Sequence[Sequence[str]]]) -> None:
    """One ``COPY`` fed block by block (each block like ``copy_columns``' cells): the one COPY
    writer. Memory holds one or two blocks' text, not the whole table's, and the next block is
    formatted on a second thread while the server stores the one before (psycopg2 releases the
    GIL while it sends)."""
    texts = ("\n".join(map("\t".join, zip(*cells))) + "\n" for cells in blocks if cells and len(cells[0]))
    cursor = session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    with _ReadAhead(texts) as reader:
        try:
            cursor.copy_expert(f"COPY {table_name} ({', '.join(columns)}) FROM STDIN", reader, size=1 << 16)
        except Exception:
            if reader.failure is not None:  # psycopg2 reports it as "error in .read() call": say what it was
                raise reader.failure from None
            raise


class _ReadAhead:
    """A file for ``copy_expert`` whose text a producer thread makes, one block ahead."""

    _DONE = object()

    def __init__(self, texts: Iterator[str]):
        self._texts = texts
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="w365-copy-blocks", daemon=True)
        self._buf, self._pos = "", 0
        self.failure: BaseException | None = None

    def _produce(self) -> None:
        try:
            for text_block in self._texts:
                if not self._put(text_block):
                    return
            self._put(self._DONE)
        except BaseException as exc:  # handed to the reading thread, which raises it
            self._put(exc)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read(self, size: int = -1) -> str:
        while self._pos >= len(self._buf):
            item = self._queue.get()
            if item is self._DONE:
                self._queue.put(self._DONE)  # later reads see the end too
                return ""
            if isinstance(item, BaseException):
                self.failure = item
                raise item
            self._buf, self._pos = item, 0
        end = len(self._buf) if size is None or size < 0 else self._pos + size
        out = self._buf[self._pos:end]
        self._pos += len(out)
        return out

    def __enter__(self) -> "_ReadAhead":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def insert_rows(session: Session, model: Any, rows: list[dict[str, Any]], *, return_ids: bool = False) -> list[int]:
    """Insert ``rows`` (dicts with the same keys); returns their new ids, in order, if asked."""
    if not rows:
        return []
    table = _table(model)
    cols = _columns(table, rows)
    if session.get_bind().dialect.name != "postgresql":
        records = [dict(zip(cols, values)) for values in zip(*cols.values())]
        if return_ids:
            return list(session.scalars(insert(table).returning(table.c.id, sort_by_parameter_order=True), records))
        session.execute(insert(table), records)
        return []
    ids: list[int] = []
    if return_ids:
        ids = list(session.scalars(
            text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"), {"t": table.name, "n": len(rows)}
        ))
        cols = {"id": ids, **cols}
    copy_columns(session, table.name, list(cols), [_text_column(session, table.c[c], v) for c, v in cols.items()])
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
    columns = ["id"] + [k for k in rows[0] if k != "id"]
    sets = ", ".join(f"{c} = v.{c}" for c in columns[1:])
    cursor = session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    if len(rows) >= COPY_UPDATE_MIN:
        # Many rows: COPY them into a scratch table shaped like the target's columns (the same
        # fast text as inserts), then one UPDATE ... FROM it.
        scratch = f"w365_update_{table.name}"
        cursor.execute(f"CREATE TEMP TABLE {scratch} ON COMMIT DROP AS SELECT {', '.join(columns)} FROM {table.name} WITH NO DATA")
        copy_columns(session, scratch, columns, [_text_column(session, table.c[c], [r[c] for r in rows]) for c in columns])
        cursor.execute(f"UPDATE {table.name} AS t SET {sets} FROM {scratch} AS v WHERE t.id = v.id")
        cursor.execute(f"DROP TABLE {scratch}")
        return
    from psycopg2.extras import execute_values

    procs = _processors(session, table, columns)
    casts = [table.c[c].type.dialect_impl(dialect).compile(dialect=dialect) for c in columns]
    template = "(" + ", ".join(f"%s::{t}" for t in casts) + ")"
    sql = f"UPDATE {table.name} AS t SET {sets} FROM (VALUES %s) AS v({', '.join(columns)}) WHERE t.id = v.id"
    data = [tuple(p(r[c]) if p else r[c] for c, p in zip(columns, procs)) for r in rows]
    execute_values(cursor, sql, data, template=template, page_size=len(rows))
