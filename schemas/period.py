"""Time buckets of the cost API: granularities, time zones, and the series of periods between two
instants (Python's twin of ClickHouse's ``toStartOf…(timestamp, tz)``, used to fill gaps).

Minute and hour buckets step in absolute time (an hour is 3600 s whatever the zone); day, week
(Monday) and month buckets start at local midnight, so a day in a zone with a DST change lasts
23 or 25 hours, as ClickHouse counts it. Zones whose DST change skips midnight itself are not
matched exactly: Python places that midnight one hour off where ClickHouse does.
"""

from __future__ import annotations

import functools
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

Granularity = Literal["minute", "hour", "day", "week", "month"]

MAX_PERIODS = 10_000
"""The most periods one series may have (a year of hours is 8,760): a longer one is a 422,
not a million zero rows."""

_SHORTEST = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(hours=23),
    "week": timedelta(days=7) - timedelta(hours=1),
    "month": timedelta(days=28) - timedelta(hours=1),
}


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone (``Europe/Paris``, ``UTC``), else ``ValueError``.

    The name reaches ClickHouse as a bound parameter, but only names from this list are accepted."""
    if name not in _zone_names():
        raise ValueError("must be an IANA time zone name such as UTC or Europe/Paris")
    return name


def zone_of(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(check_timezone(name))


def period_count_at_most(start: datetime, end: datetime, granularity: Granularity) -> int:
    """An upper bound of the periods overlapping ``[start, end)`` (cheap, for the size guard)."""
    return int((end - start) / _SHORTEST[granularity]) + 2


def bucket_start(instant: datetime, granularity: Granularity, zone: zoneinfo.ZoneInfo) -> datetime:
    """The UTC start of the period holding ``instant``."""
    instant = instant.astimezone(UTC)
    if granularity == "minute":
        return instant.replace(second=0, microsecond=0)
    local = instant.astimezone(zone)
    if granularity == "hour":
        return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    day = local.date()
    if granularity == "week":
        day -= timedelta(days=day.weekday())
    elif granularity == "month":
        day = day.replace(day=1)
    return _midnight(day, zone)


def next_start(start: datetime, granularity: Granularity, zone: zoneinfo.ZoneInfo) -> datetime:
    """The UTC start of the period after the one starting at ``start``."""
    if granularity == "minute":
        return start + timedelta(minutes=1)
    if granularity == "hour":
        return start + timedelta(hours=1)
    day = start.astimezone(zone).date()
    if granularity == "day":
        return _midnight(day + timedelta(days=1), zone)
    if granularity == "week":
        return _midnight(day + timedelta(days=7), zone)
    month = day.replace(day=28) + timedelta(days=4)  # some day of the next month
    return _midnight(month.replace(day=1), zone)


def period_series(start: datetime, end: datetime, granularity: Granularity, zone: zoneinfo.ZoneInfo) -> list[datetime]:
    """UTC starts of every period overlapping ``[start, end)``, in order (the first may begin
    before ``start``: it is the period ``start`` falls in)."""
    periods = []
    current = bucket_start(start, granularity, zone)
    while current < end:
        periods.append(current)
        current = next_start(current, granularity, zone)
    return periods


def _midnight(day: date, zone: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)
