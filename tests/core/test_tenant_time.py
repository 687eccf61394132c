"""SPEC S4 (default UTC) and S6 (00:05 positive / 23:30 negative, bill-from), across DST."""

from datetime import date, datetime, timedelta, timezone

import pytest

from w365.core.tenant_time import (
    Direction,
    TenantTimeError,
    as_of_date,
    bill_from,
    local_date,
    scheduled_instant,
    start_of_day,
)

UTC = timezone.utc


def test_s6_seed_example_pst_increase():
    # Tenant in America/Los_Angeles, increase for 2023-02-20 -> 2023-02-20 00:05 PST = 08:05 UTC.
    assert scheduled_instant(date(2023, 2, 20), Direction.POSITIVE, "America/Los_Angeles") == datetime(2023, 2, 20, 8, 5, tzinfo=UTC)


def test_s6_negative_change_at_2330_and_bill_from():
    assert scheduled_instant(date(2023, 2, 20), Direction.NEGATIVE, "America/Los_Angeles") == datetime(2023, 2, 21, 7, 30, tzinfo=UTC)
    assert bill_from(date(2023, 2, 20), Direction.POSITIVE) == date(2023, 2, 20)
    assert bill_from(date(2023, 2, 20), Direction.NEGATIVE) == date(2023, 2, 21)
    assert bill_from(date(2023, 2, 20), Direction.NEUTRAL) == date(2023, 2, 20)


def test_s4_default_zone_is_utc():
    assert scheduled_instant(date(2024, 1, 1), Direction.POSITIVE, None) == datetime(2024, 1, 1, 0, 5, tzinfo=UTC)
    with pytest.raises(TenantTimeError, match="Mars/Olympus"):
        scheduled_instant(date(2024, 1, 1), Direction.POSITIVE, "Mars/Olympus")


@pytest.mark.parametrize(
    "tz,day,direction,expected_utc",
    [
        # Los Angeles: DST starts 2024-03-10 (02:00 -> 03:00); 00:05 is still PST, 23:30 is PDT.
        ("America/Los_Angeles", date(2024, 3, 10), Direction.POSITIVE, datetime(2024, 3, 10, 8, 5, tzinfo=UTC)),
        ("America/Los_Angeles", date(2024, 3, 10), Direction.NEGATIVE, datetime(2024, 3, 11, 6, 30, tzinfo=UTC)),
        # DST ends 2024-11-03: 00:05 is PDT, 23:30 is PST.
        ("America/Los_Angeles", date(2024, 11, 3), Direction.POSITIVE, datetime(2024, 11, 3, 7, 5, tzinfo=UTC)),
        ("America/Los_Angeles", date(2024, 11, 3), Direction.NEGATIVE, datetime(2024, 11, 4, 7, 30, tzinfo=UTC)),
        # London: BST starts 2024-03-31 01:00, ends 2024-10-27 02:00.
        ("Europe/London", date(2024, 3, 31), Direction.POSITIVE, datetime(2024, 3, 31, 0, 5, tzinfo=UTC)),
        ("Europe/London", date(2024, 3, 31), Direction.NEGATIVE, datetime(2024, 3, 31, 22, 30, tzinfo=UTC)),
        ("Europe/London", date(2024, 10, 27), Direction.POSITIVE, datetime(2024, 10, 26, 23, 5, tzinfo=UTC)),
        ("Europe/London", date(2024, 10, 27), Direction.NEGATIVE, datetime(2024, 10, 27, 23, 30, tzinfo=UTC)),
    ],
)
def test_s6_across_dst_switch_days(tz, day, direction, expected_utc):
    instant = scheduled_instant(day, direction, tz)
    assert instant == expected_utc
    assert local_date(instant, tz) == day  # the change still lands on its tenant-local date


def test_s6_wall_time_in_a_gap_moves_forward():
    # America/Santiago springs forward at 00:00 on 2024-09-08: 00:05 does not exist that day.
    instant = scheduled_instant(date(2024, 9, 8), Direction.POSITIVE, "America/Santiago")
    local = instant.astimezone(__import__("zoneinfo").ZoneInfo("America/Santiago"))
    assert local.date() == date(2024, 9, 8) and local.hour == 1 and local.minute == 5


def test_j6_as_of_from_logical_date_in_tenant_zone():
    # A 00:15 LA run on 2024-03-10 has logical date 08:15 UTC -> tenant date 2024-03-10.
    assert as_of_date(datetime(2024, 3, 10, 8, 15, tzinfo=UTC), "America/Los_Angeles") == date(2024, 3, 10)
    assert as_of_date("2024-03-10", "America/Los_Angeles") == date(2024, 3, 10)
    assert as_of_date("2024-03-10T07:59:00+00:00", "America/Los_Angeles") == date(2024, 3, 9)
    assert start_of_day(date(2024, 3, 10), "America/Los_Angeles") == datetime(2024, 3, 10, 8, 0, tzinfo=UTC)
    with pytest.raises(TenantTimeError, match="no time zone"):
        local_date(datetime(2024, 1, 1), "UTC")
    assert (start_of_day(date(2024, 3, 11), "America/Los_Angeles") - start_of_day(date(2024, 3, 10), "America/Los_Angeles")) == timedelta(hours=23)
