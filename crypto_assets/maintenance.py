"""Table upkeep: a daily job that compacts the small files hourly writes leave and vacuums old ones.

Every hourly write adds a file per table and day, so a day ends with dozens of small files.
Compaction (delta-rs ``optimize.compact``) rewrites only **closed days** (``ingest_date`` before
today, UTC): the hourly run writes today's partition, and its predicate names the day, so the
two never conflict. A late hour written into a closed day while it is being compacted is the
one real race: whichever commits second re-plans on the fresh snapshot (the writer recomputes,
the compaction is retried). Compaction is a new Delta version: readers of an older snapshot keep
their files until vacuum removes files unreferenced for longer than the retention
(run config ``vacuum_retention_hours``, defaulting to ``CRYPTO_VACUUM_RETENTION_HOURS``, 168 =
7 days, Delta's own default), so only snapshots older than that (and time travel to them) are
affected.
"""

from datetime import datetime, timezone

import obstore
from dagster import (
    AssetObservation,
    Config,
    DefaultScheduleStatus,
    MetadataValue,
    OpExecutionContext,
    Output,
    ScheduleDefinition,
    job,
    op,
)
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from pydantic import Field

from crypto_assets.resources import lake_files
from crypto_assets.resources.lakehouse import REPLAN_ATTEMPTS, LakehouseResource
from crypto_assets.settings import value
from crypto_assets.tables import ALL_TABLES, LakeTable


class UpkeepConfig(Config):
    vacuum_retention_hours: int = Field(
        default=value("CRYPTO_VACUUM_RETENTION_HOURS"),
        ge=0,
        description="Old Delta versions younger than this stay readable (CRYPTO_VACUUM_RETENTION_HOURS).",
    )


def _files_on_disk(uri: str) -> int:
    """Data files stored under the table, referenced or not (a folder or an object store); the log's
    checkpoints are Parquet too but not data."""
    return sum(
        1
        for entry in obstore.list(lake_files.store(uri)).collect()
        if entry["path"].endswith(".parquet") and not entry["path"].startswith("_delta_log/")
    )


def compact_closed_days(
    context: OpExecutionContext, lakehouse: LakehouseResource, table: LakeTable, today: str
) -> tuple[DeltaTable, dict]:
    """Compact the days before ``today``, retried on a fresh snapshot if a late write won the race."""
    for attempt in range(1, REPLAN_ATTEMPTS + 1):
        delta = lakehouse.delta_table(table)
        assert delta is not None, table.path  # the caller skips tables not created yet
        try:
            return delta, delta.optimize.compact(partition_filters=[("ingest_date", "<", today)])
        except CommitFailedError as error:
            if attempt == REPLAN_ATTEMPTS:
                raise
            context.log.warning(
                "%s: a write committed during compaction (%s); compacting again", table.path, str(error).splitlines()[0]
            )
    raise AssertionError("unreachable")


@op(description="Compact closed days and vacuum unreferenced files of every lakehouse Delta table.")
def compact_and_vacuum_tables(context: OpExecutionContext, config: UpkeepConfig, lakehouse: LakehouseResource):
    retention = config.vacuum_retention_hours
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    summary = {}
    for table in ALL_TABLES:
        delta = lakehouse.delta_table(table)
        if delta is None:
            context.log.info("%s: no table yet", table.path)
            continue
        uri = lakehouse.table_uri(table)
        before = {"active": len(delta.file_uris()), "on_disk": _files_on_disk(uri), "version": delta.version()}
        delta, metrics = compact_closed_days(context, lakehouse, table, today)
        vacuumed = delta.vacuum(retention_hours=retention, dry_run=False, enforce_retention_duration=False)
        delta.update_incremental()
        after = {"active": len(delta.file_uris()), "on_disk": _files_on_disk(uri), "version": delta.version()}
        context.log.info(
            "%s: %d → %d active files (%d compacted into %d), %d files vacuumed, %d → %d on disk",
            table.path,
            before["active"],
            after["active"],
            metrics["numFilesRemoved"],
            metrics["numFilesAdded"],
            len(vacuumed),
            before["on_disk"],
            after["on_disk"],
        )
        metadata = {
            "files_before": before["active"],
            "files_after": after["active"],
            "files_compacted": metrics["numFilesRemoved"],
            "files_written": metrics["numFilesAdded"],
            "files_vacuumed": len(vacuumed),
            "files_on_disk_before": before["on_disk"],
            "files_on_disk_after": after["on_disk"],
            "delta_version": after["version"],
            "retention_hours": retention,
        }
        summary[table.path] = metadata
        yield AssetObservation(asset_key=table.asset_key, description="table maintenance", metadata=metadata)
    rows = [
        f"| {path} | {m['files_before']} | {m['files_after']} | {m['files_vacuumed']} |" for path, m in summary.items()
    ]
    yield Output(
        None,
        metadata={
            "tables": len(summary),
            "summary": MetadataValue.md(
                "\n".join(["| table | files before | after | vacuumed |", "|---|---|---|---|", *rows])
            ),
        },
    )


@job(name="crypto_table_maintenance", description="Daily Delta upkeep: compact closed days, vacuum old files.")
def maintenance_job():
    compact_and_vacuum_tables()


maintenance_schedule = ScheduleDefinition(
    job=maintenance_job,
    cron_schedule="30 3 * * *",  # between hourly runs (minute 5), at a quiet hour
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
)
