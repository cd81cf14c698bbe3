"""What every layer's assets share: the backfill policy, hour labels and table metadata."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa
from dagster import AssetExecutionContext, BackfillPolicy, FreshnessPolicy, MetadataValue, TableColumn, TableSchema

from crypto_assets.partitions import hour_label, hour_of_label, partition_key
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.tables import LakeTable

# A backfill of a range of hours is one run: one Spark session, history fetched once per coin.
BACKFILL_POLICY = BackfillPolicy.single_run()
# What the business tables (Gold, the warehouse) promise: hourly runs land a few minutes past
# the hour, so a warning when one is over 15 minutes late, a failure (red in the UI) once a
# whole hour is missing.
FRESHNESS_POLICY = FreshnessPolicy.time_window(fail_window=timedelta(hours=2), warn_window=timedelta(minutes=75))


def run_window(context: AssetExecutionContext, lakehouse: LakehouseResource) -> tuple[datetime, datetime]:
    """The run's hour window [start, end), refused when longer than the lakehouse's guard."""
    start, end = context.partition_time_window
    limit = lakehouse.max_hours_per_run
    hours = int((end - start).total_seconds() // 3600)
    if hours > limit:
        raise ValueError(
            f"this run covers {hours} hours ({hour_label(start)} to {hour_label(end)}); one run takes at most "
            f"{limit} (CRYPTO_MAX_HOURS_PER_RUN): backfill in smaller ranges"
        )
    return start, end


def table_definition_metadata(table: LakeTable) -> dict:
    """What the asset's definition says of its table (the same for every materialisation)."""
    return {
        "dagster/column_schema": TableSchema(
            columns=[
                TableColumn(field.name, str(field.type), description=table.column_docs[field.name])
                for field in table.arrow_schema
            ]
        ),
        "table": table.path,
    }


def preview(rows: pa.Table, limit: int = 5) -> MetadataValue:
    """A few rows as a markdown table, long texts shortened, for the asset page."""
    rows = rows.slice(0, limit)
    names = rows.column_names
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in rows.to_pylist():
        cells = []
        for name in names:
            text = "" if row[name] is None else str(row[name])
            text = text.replace("|", "\\|").replace("\n", " ")
            cells.append(text if len(text) <= 40 else text[:37] + "...")
        lines.append("| " + " | ".join(cells) + " |")
    return MetadataValue.md("\n".join(lines))


def merged_rows_per_hour(written) -> dict[str, int]:
    """The rows per hour of a window written slice by slice (``WriteResult``s in order)."""
    return {hour: n for result in written for hour, n in result.rows_per_hour.items()}


# Runs of at most this many hours give each hour its own row count. Dagster keeps a step's
# per-hour metadata in a mapping it copies whole on every addition, so the cost grows with the
# square of the hours: for Gold's four tables, 0.8 s at 744 hours and 120 s at a year's 8,784
# (its accumulator alone, timed).
ROW_COUNT_HOURS = 744


def table_metadata(
    context: AssetExecutionContext,
    table: LakeTable,
    lakehouse: LakehouseResource,
    version,
    rows_per_hour: dict[str, int],
    newest_hour: dict,
) -> dict:
    """The metadata every table asset reports, sized for windows of any length.

    Dagster copies a result's metadata into the materialisation of every hour of the run, so the
    result carries only what is true of the whole run (where, which version, totals); in a run of
    at most ROW_COUNT_HOURS hours each hour's own row count goes on that hour, and ``newest_hour``
    (the preview, charts) on the newest one.
    """
    hours = set(context.partition_keys)
    if len(hours) <= ROW_COUNT_HOURS:
        for label, rows in rows_per_hour.items():
            key = partition_key(hour_of_label(label))
            if key in hours:  # Gold also rewrites later hours that read this run's: not this run's partitions
                context.add_asset_metadata({"dagster/row_count": rows}, asset_key=table.asset_key, partition_key=key)
    else:
        context.log.info(
            "%s: %d hours, more than %d: no row count per hour (the run's totals are on every hour)",
            table.path, len(hours), ROW_COUNT_HOURS,
        )  # fmt: skip
    context.add_asset_metadata(newest_hour, asset_key=table.asset_key, partition_key=max(hours))
    return {
        "path": MetadataValue.path(lakehouse.table_uri(table)),
        "delta_version": version if version is not None else -1,
        "rows_in_window": sum(rows_per_hour.values()),
        "hours_in_window": len(rows_per_hour),
    }
