"""The Python twin of ClickHouse's period starts (schemas/period.py), used to fill gaps."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from schemas.period import bucket_start, check_timezone, period_count_at_most, period_series

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_an_event_late_in_the_utc_day_is_the_next_day_in_tokyo() -> None:
    assert bucket_start(utc(2025, 1, 15, 23, 30), "day", TOKYO) == utc(2025, 1, 15, 15)
    assert bucket_start(utc(2025, 1, 15, 23, 30), "day", ZoneInfo("UTC")) == utc(2025, 1, 15)


def test_weeks_start_monday_and_months_on_the_first_local_midnight() -> None:
    assert bucket_start(utc(2025, 1, 15, 23, 30), "week", TOKYO) == utc(2025, 1, 12, 15)  # Mon 13th, Tokyo
    assert bucket_start(utc(2025, 3, 1, 3), "month", NEW_YORK) == utc(2025, 2, 1, 5)  # still February there


def test_days_across_a_dst_change_are_23_hours_long() -> None:
    days = period_series(utc(2025, 3, 8, 5), utc(2025, 3, 10, 4), "day", NEW_YORK)
    assert days == [utc(2025, 3, 8, 5), utc(2025, 3, 9, 5)]  # the 10th starts at the range's end
    after = period_series(utc(2025, 3, 9, 5), utc(2025, 3, 11, 4), "day", NEW_YORK)
    assert after == [utc(2025, 3, 9, 5), utc(2025, 3, 10, 4)]  # the 9th lasts 23 hours


def test_series_of_months_and_the_size_bound() -> None:
    months = period_series(utc(2025, 1, 15), utc(2025, 4, 1), "month", ZoneInfo("UTC"))
    assert months == [utc(2025, 1, 1), utc(2025, 2, 1), utc(2025, 3, 1)]
    assert period_count_at_most(utc(2025, 1, 1), utc(2026, 1, 1), "hour") >= 8760
    hours = period_series(utc(2025, 1, 1), utc(2025, 1, 2), "hour", ZoneInfo("Asia/Kolkata"))
    assert len(hours) == 25 and hours[0] == utc(2024, 12, 31, 23, 30)  # half-hour offset zone


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../UTC"])
def test_unknown_zones_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="IANA"):
        check_timezone(name)
