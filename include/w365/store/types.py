"""Column types that keep money exact and instants aware on both PostgreSQL and SQLite.

PostgreSQL stores NUMERIC and timestamptz natively. SQLite has neither: its NUMERIC affinity turns
"10.10" into a binary float, and it drops time zones. So on SQLite money is kept as decimal text
(exact, compared and summed in Python, never in SQL) and instants as naive UTC, re-tagged on read.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from w365.core.money import D, MoneyError


class ExactDecimal(TypeDecorator[Decimal]):
    """NUMERIC(p, s) on PostgreSQL; exact decimal text on SQLite. Refuses floats (SPEC M1)."""

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int):
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(self.precision + 2))
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        number = D(value)
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > self.scale:
            raise MoneyError(f"{number} has more than {self.scale} decimal places")
        if number and number.adjusted() >= self.precision - self.scale:
            # What PostgreSQL refuses ("numeric field overflow"), refused on SQLite too, with the
            # same message on both, before the statement runs (issue 12).
            raise MoneyError(f"{number} does not fit NUMERIC({self.precision}, {self.scale}): "
                             f"at most {self.precision - self.scale} digits before the decimal point")
        if dialect.name == "sqlite":
            return format(number, "f")
        return number

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, Decimal):
            return value
        if isinstance(value, float):  # only if a raw SQL aggregate slipped through on SQLite
            raise MoneyError(f"float {value!r} read from a money column; aggregate in Python")
        return Decimal(str(value))


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware instants: timestamptz on PostgreSQL, naive UTC on SQLite, aware on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"{value!r} is not a timezone-aware datetime")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
