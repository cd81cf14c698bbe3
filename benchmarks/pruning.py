"""Pruning benchmark: what a one-hour Silver window write reads after 31 days of hourly history.

`python -m benchmarks.pruning [--days 31] [--coins 50] [--repeat 3]` builds two Silver tables of
the same hourly windows (one write per hour, as the hourly run does) and then rewrites one hour of
the last day in each, printing medians:

* before (the reference, measured in the same run): the table as the project wrote it before —
  no ``delta.dataSkippingStatsColumns``, so delta-rs keeps statistics on the first 32 columns and
  not on ``ingest_hour`` (Silver's 39th), and a window predicate on ``ingest_hour`` alone;
* after: ``LakehouseResource.write_window`` (statistics on ``ingest_hour`` and the key, and a
  predicate that bounds ``ingest_date`` too).

"files the write must read" counts the active files the write's predicate cannot rule out from
the Delta log alone (partition values and file statistics): what delta-rs has to open.
Target: the write reads only its own day's files, and of those only the ones holding its hour.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from crypto_assets.partitions import HOUR, hours_in
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.tables import SILVER

START = datetime(2026, 10, 1, tzinfo=timezone.utc)


def silver_hour(hour: datetime, coins: int) -> pa.Table:
    physical = pa.schema([f for f in SILVER.arrow_schema if f.name != "ingest_date"])
    rows = {name: [None] * coins for name in physical.names}
    rows.update(
        coin_id=[f"coin-{i:04d}" for i in range(coins)],
        current_price=[1.0 + i for i in range(coins)],
        ingest_hour=[hour] * coins,
        source=["snapshot"] * coins,
    )
    return pa.Table.from_pydict(rows, schema=physical)


def _old_write(uri: str, data: pa.Table, start: datetime, end: datetime) -> None:
    """How windows were written before: no statistics property, no day in the predicate."""
    predicate = f"ingest_hour >= '{start:%Y-%m-%dT%H:%M:%SZ}' AND ingest_hour < '{end:%Y-%m-%dT%H:%M:%SZ}'"
    write_deltalake(uri, data, mode="overwrite", predicate=predicate, partition_by=["ingest_date"])


def candidate_files(uri: str, start: datetime, end: datetime, prunes_by_day: bool) -> int:
    """Active files the predicate cannot exclude from partition values and statistics."""
    adds = pa.table(DeltaTable(uri).get_add_actions(flatten=True)).to_pylist()
    days = {f"{h:%Y-%m-%d}" for h in hours_in(start, end)}
    count = 0
    for add in adds:
        if prunes_by_day and add.get("partition.ingest_date") not in days:
            continue
        low, high = add.get("min.ingest_hour"), add.get("max.ingest_hour")
        if low is not None and high is not None and (high < start or low >= end):
            continue
        count += 1
    return count


def measure(days: int, coins: int, repeat: int) -> dict[str, dict[str, float]]:
    hours = [START + i * HOUR for i in range(days * 24)]
    target = hours[-5]
    figures: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory(prefix="crypto-pruning-") as folder:
        lake = LakehouseResource(root=str(Path(folder) / "after"))
        old_uri = str(Path(folder) / "before" / "silver")
        for hour in hours:
            data = silver_hour(hour, coins)
            lake.write_window(SILVER, data, hour, hour + HOUR, "bench")
            _old_write(old_uri, lake.conform(SILVER, data), hour, hour + HOUR)
        new_uri = lake.table_uri(SILVER)
        for _ in range(repeat):
            for name, uri, write in (
                ("before", old_uri, lambda d: _old_write(old_uri, lake.conform(SILVER, d), target, target + HOUR)),
                ("after", new_uri, lambda d: lake.write_window(SILVER, d, target, target + HOUR, "bench")),
            ):
                files = candidate_files(uri, target, target + HOUR, prunes_by_day=name == "after")
                data = silver_hour(target, coins)
                started = time.perf_counter()
                write(data)
                seconds = time.perf_counter() - started
                for key, value in (
                    ("active files", len(DeltaTable(uri).file_uris())),
                    ("files the write must read", files),
                    ("write seconds", seconds),
                ):
                    figures[name].setdefault(key, []).append(value)
    return {name: {key: statistics.median(values) for key, values in per.items()} for name, per in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--coins", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"Silver, {args.days} days of hourly windows at {args.coins} coins; rewriting one hour (medians of {args.repeat})"
    )
    results = measure(args.days, args.coins, args.repeat)
    print(f"{'':28s} {'before (reference)':>20s} {'after':>12s}")
    for key in results["before"]:
        fmt = "{:>20.3f} {:>12.3f}" if key == "write seconds" else "{:>20,.0f} {:>12,.0f}"
        print(f"{key:28s} " + fmt.format(results["before"][key], results["after"][key]))
    print("target: the write reads only its day's files that hold its hour (after ≤ 24, before = every file)")


if __name__ == "__main__":
    main()
