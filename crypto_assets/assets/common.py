"""What every layer's assets share: the backfill policy, hour labels and table metadata."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa
from dagster import AssetExecutionContext, BackfillPolicy, FreshnessPolicy, MetadataValue, TableColumn, TableSchema

from crypto_assets.partitions import hour_label
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


def column_schema(table: LakeTable) -> TableSchema:
    return TableSchema(columns=[TableColumn(field.name, str(field.type)) for field in table.arrow_schema])


def preview_markdown(rows: pa.Table, limit: int = 5) -> str:
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
    return "\n".join(lines)


def merged_rows_per_hour(written) -> dict[str, int]:
    """The rows per hour of a window written slice by slice (``WriteResult``s in order)."""
    return {hour: n for result in written for hour, n in result.rows_per_hour.items()}


def table_metadata(
    table: LakeTable, lakehouse: LakehouseResource, version, rows_per_hour: dict[str, int], preview: pa.Table
) -> dict:
    """The metadata every table asset reports: where, which version, how many rows, a preview."""
    return {
        "table": table.path,
        "path": MetadataValue.path(lakehouse.table_uri(table)),
        "delta_version": version if version is not None else -1,
        "dagster/row_count": sum(rows_per_hour.values()),
        "rows_per_hour": MetadataValue.json(rows_per_hour),
        "dagster/column_schema": column_schema(table),
        "preview": MetadataValue.md(preview_markdown(preview)),
    }
