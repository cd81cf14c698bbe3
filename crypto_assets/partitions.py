"""The one partitioning of the platform: the UTC ingestion hour.

Partition H holds the market as captured during hour H. ``end_offset=1`` makes the
in-progress hour a partition, so the hourly schedule can materialise it a few minutes
after the hour starts. ``CRYPTO_PARTITIONS_START`` moves the first partition.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Optional

from dagster import HourlyPartitionsDefinition

from crypto_assets.settings import value

HOUR = timedelta(hours=1)
PARTITION_KEY_FORMAT = "%Y-%m-%d-%H:%M"

hourly_partitions = HourlyPartitionsDefinition(
    start_date=value("CRYPTO_PARTITIONS_START"),
    end_offset=1,
    timezone="UTC",
)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is taken to be UTC already."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def naive_utc(moment: datetime) -> datetime:
    """``moment`` in UTC without its offset (ODBC drivers drop offsets silently, so datetimes
    are bound as naive UTC)."""
    return as_utc(moment).replace(tzinfo=None)


def iso_utc(moment: datetime) -> str:
    """``moment`` as ISO-8601 UTC with microseconds, as manifests record times."""
    return as_utc(moment).isoformat(timespec="microseconds")


def iso_utc_seconds(moment: datetime) -> str:
    """``moment`` as ``YYYY-MM-DDTHH:MM:SSZ``, as Delta predicates and commit metadata name hours."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def floor_hour(moment: datetime) -> datetime:
    """The start of the UTC hour that contains ``moment``."""
    moment = as_utc(moment)
    return moment.replace(minute=0, second=0, microsecond=0)


def hours_in(start: datetime, end: datetime) -> list[datetime]:
    """Every hour start in [start, end), in order."""
    hours, hour = [], floor_hour(start)
    while hour < end:
        hours.append(hour)
        hour += HOUR
    return hours


def window_slices(
    start: datetime,
    end: datetime,
    hours: int,
    rows_per_hour: Mapping[str, int] | None = None,
    max_rows: int | None = None,
) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into consecutive windows of at most ``hours`` hours, in order; given
    ``rows_per_hour`` (hour label -> rows), also of at most ``max_rows`` rows each (an hour holding
    more is a slice of its own), so a slice's memory follows its rows, whatever the coin count."""
    if hours < 1:
        raise ValueError(f"a window slice is at least 1 hour, not {hours} (CRYPTO_SLICE_HOURS)")
    rows_per_hour = rows_per_hour or {}
    slices: list[tuple[datetime, datetime]] = []
    cut, rows = None, 0
    for hour in hours_in(start, end):
        rows_now = rows_per_hour.get(hour_label(hour), 0)
        full = max_rows is not None and rows + rows_now > max_rows
        if cut is not None and (full or hour - cut >= hours * HOUR):
            slices.append((cut, hour))
            cut = None
        if cut is None:
            cut, rows = hour, 0
        rows += rows_now
    if cut is not None:
        slices.append((cut, end))
    return slices


def partition_key(hour: datetime) -> str:
    return floor_hour(hour).strftime(PARTITION_KEY_FORMAT)


def hour_of_key(key: str) -> datetime:
    return datetime.strptime(key, PARTITION_KEY_FORMAT).replace(tzinfo=timezone.utc)


def hour_label(hour: datetime) -> str:
    """How hours are named in metadata and logs: ``2026-11-25T13:00Z``."""
    return floor_hour(hour).strftime("%Y-%m-%dT%H:00Z")


def hour_of_label(label: str) -> datetime:
    return datetime.strptime(label, "%Y-%m-%dT%H:00Z").replace(tzinfo=timezone.utc)


def window_label(start: datetime, end: datetime) -> str:
    """Hours [start, end) as named in messages: one label, or the first and last hour."""
    last = floor_hour(end - HOUR) if end > start else floor_hour(start)
    return hour_label(start) if last <= floor_hour(start) else f"{hour_label(start)} to {hour_label(last)}"


# The tags Dagster gives a run of one partition, and of a range of them (a single-run backfill).
PARTITION_TAG = "dagster/partition"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def run_hours(tags: Mapping[str, str]) -> Optional[int]:
    """How many hours a run covers, from its tags; None when they name no partition."""
    if PARTITION_TAG in tags:
        return 1
    if all(tag in tags for tag in RANGE_TAGS):
        first, last = (hour_of_key(tags[tag]) for tag in RANGE_TAGS)
        return int((last - first) / HOUR) + 1
    return None


def current_hour() -> datetime:
    return floor_hour(datetime.now(timezone.utc))


if __name__ == "__main__":
    # `python -m crypto_assets.partitions [HOURS_BACK]`: the key of the current hour (or of
    # an hour before it), for `dagster asset materialize --partition` in scripts.
    back = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    print(partition_key(current_hour() - back * HOUR))
