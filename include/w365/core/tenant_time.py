"""Tenant time: local dates <-> UTC instants and the 00:05 / 23:30 rule (SPEC S4, S6).

Billing is per tenant-local day. A positive change (quantity up, activation) on date D takes
effect at 00:05 on D and bills from D; a negative one (quantity down, deactivation) at 23:30 on D
and bills the new values from D + 1. A price-only change bills from D (it is "neutral").
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = timezone.utc
DEFAULT_TIMEZONE = "UTC"  # SPEC S4: unset means UTC
POSITIVE_AT = time(0, 5)
NEGATIVE_AT = time(23, 30)


class Direction(str, enum.Enum):
    POSITIVE = "positive"  # quantity up, activation, reactivation
    NEGATIVE = "negative"  # quantity down, deactivation, suspension
    NEUTRAL = "neutral"  # price only

    @property
    def local_time(self) -> time:
        return NEGATIVE_AT if self is Direction.NEGATIVE else POSITIVE_AT


class TenantTimeError(ValueError):
    pass


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        raise TenantTimeError(f"unknown time zone {name!r}; use an IANA name such as America/Los_Angeles") from None


def require_aware(instant: datetime, what: str = "instant") -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise TenantTimeError(f"{what} {instant.isoformat()} has no time zone")
    return instant


def local_date(instant: datetime, tz: str | None) -> date:
    """The tenant-local calendar date of an instant."""
    return require_aware(instant).astimezone(zone(tz)).date()


def local_instant(day: date, at: time, tz: str | None) -> datetime:
    """The UTC instant of wall-clock ``at`` on ``day`` in the tenant's zone.

    A wall time that does not exist (a spring-forward gap, e.g. 00:05 where DST starts at
    midnight) is shifted forward by the gap's length, as pendulum does; an ambiguous one (a
    fall-back fold) takes its first occurrence.
    """
    tzinfo = zone(tz)
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=tzinfo, fold=0).astimezone(UTC)
    if first.astimezone(tzinfo).replace(tzinfo=None) == naive:
        return first
    # In a gap, fold=0 applies the pre-transition offset, which lands after the gap.
    second = naive.replace(tzinfo=tzinfo, fold=1).astimezone(UTC)
    as_utc = max(first, second)
    return as_utc


def start_of_day(day: date, tz: str | None) -> datetime:
    return local_instant(day, time(0, 0), tz)


def scheduled_instant(day: date, direction: Direction, tz: str | None) -> datetime:
    """When a change on tenant date ``day`` takes effect (SPEC S6)."""
    return local_instant(day, direction.local_time, tz)


def bill_from(day: date, direction: Direction) -> date:
    """First tenant-local day billed at the new values (SPEC S6 decision)."""
    return day + timedelta(days=1) if direction is Direction.NEGATIVE else day


def today(tz: str | None, now: datetime | None = None) -> date:
    """Today in the tenant's zone. ``now`` is injectable so that jobs never read the clock."""
    return local_date(now if now is not None else datetime.now(UTC), tz)


def as_of_date(logical: datetime | date | str, tz: str | None) -> date:
    """The tenant-local date a job run is bound to (SPEC J6): from a logical date or a date."""
    if isinstance(logical, str):
        text = logical.strip()
        if len(text) == 10:
            return date.fromisoformat(text)
        logical = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if isinstance(logical, datetime):
        return local_date(logical, tz)
    return logical
