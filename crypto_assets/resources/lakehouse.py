"""The lakehouse: Delta tables at ``{root}/{schema}/{table}`` and the immutable landing files.

delta-rs owns the transaction log (no Delta jars needed on Spark's classpath, see DESIGN §2);
Spark reads a snapshot's Parquet files directly. Writes are per hour window: writing hours
[start, end) replaces exactly those hours in one Delta commit, so a failed run leaves the table
as it was and a rerun gives the same table.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from dagster import ConfigurableResource, get_dagster_logger
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError
from pydantic import Field

from crypto_assets.partitions import hour_label, hours_in
from crypto_assets.tables import LakeTable

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# A Dagster logger: inside a run its lines go to the run log (and the UI), outside to stderr.
log = get_dagster_logger("crypto_assets.lakehouse")


class LakehouseError(Exception):
    """A table or landing write that was refused; the lakehouse is unchanged."""


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int  # the Delta version this write committed
    rows: int
    rows_per_hour: dict[str, int]  # hour label -> rows, every hour of the window (0 included)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def window_predicate(start: datetime, end: datetime) -> str:
    """SQL predicate selecting the rows of hours [start, end)."""
    return f"ingest_hour >= '{_iso(start)}' AND ingest_hour < '{_iso(end)}'"


def _date_predicate(start: datetime, end: datetime) -> str:
    """Partition predicate on ``ingest_date`` covering [start, end): prunes whole days of files."""
    last = hours_in(start, end)[-1] if end > start else start
    return f"ingest_date >= '{start:%Y-%m-%d}' AND ingest_date <= '{last:%Y-%m-%d}'"


def rows_per_hour(data: pa.Table, start: datetime, end: datetime) -> dict[str, int]:
    """Rows of ``data`` per hour label, for every hour of [start, end) (0 included)."""
    per_hour = {hour_label(hour): 0 for hour in hours_in(start, end)}
    for row in data.group_by("ingest_hour").aggregate([("ingest_hour", "count")]).to_pylist():
        per_hour[hour_label(row["ingest_hour"])] = row["ingest_hour_count"]
    return per_hour


class LakehouseResource(ConfigurableResource):
    """Delta tables and landing files under one root (``CRYPTO_LAKE_ROOT``)."""

    root: str = Field(default="./data/lake", description="CRYPTO_LAKE_ROOT: a folder (object storage later).")

    # ---- Delta tables -------------------------------------------------------------------

    def table_uri(self, table: LakeTable) -> str:
        return os.path.abspath(os.path.join(self.root, table.schema_name, table.name))

    def delta_table(self, table: LakeTable) -> DeltaTable | None:
        try:
            return DeltaTable(self.table_uri(table))
        except TableNotFoundError:
            return None

    def conform(self, table: LakeTable, data: pa.Table) -> pa.Table:
        """``data`` with the table's columns, in its order and types, and ``ingest_date`` derived."""
        hours = data.column("ingest_hour").cast(table.arrow_schema.field("ingest_hour").type)
        dates = pc.strftime(hours, format="%Y-%m-%d")
        columns = []
        for field in table.arrow_schema:
            if field.name == "ingest_date":
                columns.append(dates)
            elif field.name in data.column_names:
                columns.append(data.column(field.name).cast(field.type))
            else:
                raise LakehouseError(f"{table.path}: the data has no column {field.name!r}")
        return pa.Table.from_arrays(columns, schema=table.arrow_schema)

    def write_window(
        self, table: LakeTable, data: pa.Table, start: datetime, end: datetime, run_id: str
    ) -> WriteResult:
        """Replace hours [start, end) of ``table`` with ``data`` in one commit, nothing else."""
        data = self.conform(table, data)
        hours = data.column("ingest_hour")
        if len(data) and (
            pc.min(hours).as_py() < start or pc.max(hours).as_py() >= end
        ):
            raise LakehouseError(
                f"{table.path}: rows outside the window [{_iso(start)}, {_iso(end)}) refused"
            )
        uri = self.table_uri(table)
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        write_deltalake(
            uri,
            data,
            mode="overwrite",
            predicate=window_predicate(start, end),
            partition_by=["ingest_date"],
            commit_properties=CommitProperties(
                custom_metadata={"dagster_run_id": run_id, "window": f"{_iso(start)}/{_iso(end)}"}
            ),
        )
        version = DeltaTable(uri).version()
        per_hour = rows_per_hour(data, start, end)
        log.info("%s: wrote %d rows for %d hours (version %d)", table.path, len(data), len(per_hour), version)
        return WriteResult(table.path, version, len(data), per_hour)

    def read_window_arrow(
        self, table: LakeTable, start: datetime, end: datetime, columns: list[str] | None = None
    ) -> pa.Table:
        """Rows of hours [start, end) as Arrow (empty, with the table's schema, if none).

        ``columns`` reads only those (the window columns excluded). Reads the snapshot's Parquet
        files with pyarrow.dataset: DeltaTable.to_pyarrow_* makes the process abort at exit now
        and then (shared/notes/deltalake.md).
        """
        delta = self.delta_table(table)
        files = delta.file_uris(file_pruning_predicate=_date_predicate(start, end)) if delta else []
        physical = pa.schema([f for f in table.arrow_schema if f.name != "ingest_date"])
        if files:
            hour_type = physical.field("ingest_hour").type
            rows = pads.dataset(files, format="parquet", schema=physical).to_table(
                columns=columns,
                filter=(pc.field("ingest_hour") >= pa.scalar(start, hour_type))
                & (pc.field("ingest_hour") < pa.scalar(end, hour_type)),
            )
        else:
            rows = physical.empty_table().select(columns) if columns else physical.empty_table()
        return rows if columns else self.conform(table, rows)

    def read_window(
        self, spark: SparkSession, table: LakeTable, start: datetime, end: datetime
    ) -> DataFrame:
        """Rows of hours [start, end) as a Spark DataFrame, read from the Delta snapshot's files."""
        delta = self.delta_table(table)
        files = delta.file_uris(file_pruning_predicate=_date_predicate(start, end)) if delta else []
        if not files:
            return spark.createDataFrame(table.arrow_schema.empty_table())
        from pyspark.sql import functions as F

        frame = spark.read.parquet(*files)
        frame = frame.where((F.col("ingest_hour") >= F.lit(start)) & (F.col("ingest_hour") < F.lit(end)))
        frame = frame.withColumn("ingest_date", F.date_format("ingest_hour", "yyyy-MM-dd"))
        return frame.select(*table.arrow_schema.names)

    def table_version(self, table: LakeTable) -> int | None:
        delta = self.delta_table(table)
        return None if delta is None else delta.version()

    # ---- landing files ------------------------------------------------------------------

    def landing_path(self, relative: str) -> Path:
        return Path(self.root).absolute() / "raw_data" / "landing" / relative

    def write_landing(self, relative_dir: str, files: dict[str, bytes]) -> Path:
        """Write a capture's response bodies byte for byte into a new folder, all or nothing.

        The folder appears only once every file is written (rename of a temporary folder), and
        an existing capture is never rewritten.
        """
        final = self.landing_path(relative_dir)
        if final.exists():
            raise LakehouseError(f"landing folder {relative_dir} exists already: captures are never rewritten")
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            for name, body in files.items():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                (staging / name).write_bytes(body)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return final
