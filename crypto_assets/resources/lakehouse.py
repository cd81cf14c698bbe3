"""The lakehouse: Delta tables at ``{root}/{schema}/{table}`` and the immutable landing files.

delta-rs owns the transaction log (no Delta jars needed on Spark's classpath, see
docs/deployment.md); Spark reads a snapshot's Parquet files directly. Two kinds of write:

* ``write_window``: hours [start, end) of a derived table replaced in one Delta commit, planned
  on a pinned snapshot (``pin``): if another run committed to the same hours since, the commit
  fails as a ``WindowConflict`` and the caller re-plans (``replanned``) instead of overwriting.
* ``append_capture``: one capture's rows added to Bronze, at most once (a Delta application
  transaction named after the capture), never touching another capture's rows.

Every table collects file statistics on ``ingest_hour`` and its key
(``delta.dataSkippingStatsColumns``), and every predicate bounds ``ingest_date`` too, so a
write reads only the files of its hours and writers of different hours never conflict.

Reads go through ``latest``: one open table per table and run, brought up to date before each
read. A pin is always opened on its own, so nothing but its own commit moves it.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

import obstore
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from dagster import ConfigurableResource, get_dagster_logger
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from pydantic import Field, PrivateAttr

from crypto_assets.partitions import hour_label, hours_in, iso_utc_seconds, window_label, window_slices
from crypto_assets.resources import lake_files
from crypto_assets.resources.lake_root import LakeRoot
from crypto_assets.resources.landing import Landing
from crypto_assets.tables import INGEST_DATE_SQL, LakeTable

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# A Dagster logger: inside a run its lines go to the run log (and the UI), outside to stderr.
log = get_dagster_logger("crypto_assets.lakehouse")

STATS_PROPERTY = "delta.dataSkippingStatsColumns"
# Every tenth commit also writes a checkpoint (Delta's own default; delta-rs's is 100), so opening
# a table replays at most nine JSON commits: a year's backfill leaves Bronze 83 commits adding
# 6,551 files, which took 73 ms to open against 23 ms checkpointed, and a step opens it a dozen times.
CHECKPOINT_INTERVAL = 10


def table_properties(table: LakeTable) -> dict[str, str]:
    """The Delta properties every lakehouse table carries."""
    return {STATS_PROPERTY: table.stats_columns, "delta.checkpointInterval": str(CHECKPOINT_INTERVAL)}


# Hours of ``ingest_hour`` read at once to count a window's rows per hour.
COUNT_HOURS = 168
# How often a window write is re-planned after losing a race before the run gives up.
REPLAN_ATTEMPTS = 4

# What a store's HTTP status means for a lake that cannot be listed, said before its own text.
REFUSALS = {
    "401 Unauthorized": "the store refused the credentials (401 Unauthorized)",
    "403 Forbidden": "the store refused the credentials (403 Forbidden)",
    "404 Not Found": "no such bucket or container (404 Not Found)",
}

T = TypeVar("T")


class LakehouseError(Exception):
    """A table or landing write that was refused; the lakehouse is unchanged."""


class WindowConflict(LakehouseError):
    """Another run committed to the same hours of a table after this run planned its write."""


@dataclass(frozen=True)
class Pin:
    """A table's snapshot as it was when a run started planning a write (``pin`` creates a missing table)."""

    table: LakeTable
    delta: DeltaTable

    @property
    def version(self) -> int:
        return self.delta.version()


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int  # the Delta version this write committed
    rows: int
    rows_per_hour: dict[str, int]  # hour label -> rows, every hour of the window (0 included)


def _date_predicate(start: datetime, end: datetime) -> str:
    """Partition predicate on ``ingest_date`` covering [start, end): prunes whole days of files."""
    last = hours_in(start, end)[-1] if end > start else start
    return f"ingest_date >= '{start:%Y-%m-%d}' AND ingest_date <= '{last:%Y-%m-%d}'"


def window_predicate(start: datetime, end: datetime) -> str:
    """SQL predicate selecting the rows of hours [start, end), days bounded for partition pruning."""
    return f"{_date_predicate(start, end)} AND ingest_hour >= '{iso_utc_seconds(start)}' AND ingest_hour < '{iso_utc_seconds(end)}'"


def replanned(what: str, plan_and_commit: Callable[[], T], attempts: int = REPLAN_ATTEMPTS) -> T:
    """Run ``plan_and_commit`` (read inputs, compute, commit on a fresh pin) until no other run
    committed the same hours in between; after ``attempts`` lost races, fail naming ``what``."""
    for attempt in range(1, attempts + 1):
        try:
            return plan_and_commit()
        except WindowConflict as conflict:
            if attempt == attempts:
                raise LakehouseError(
                    f"{what}: {conflict} — lost the race {attempts} times; nothing of this attempt was "
                    "committed, rerun the partition once the other runs have finished"
                ) from None
            log.warning(
                "%s: %s; re-planning on the fresh snapshot (attempt %d of %d)", what, conflict, attempt + 1, attempts
            )
    raise AssertionError("unreachable")


def parts_committed(delta: DeltaTable | None, capture_id: str) -> int:
    """How many parts of a capture a table holds (parts are committed in order)."""
    return (delta.transaction_version(capture_id) or 0) if delta is not None else 0


def rows_per_hour(data: pa.Table, start: datetime, end: datetime) -> dict[str, int]:
    """Rows of ``data`` per hour label, for every hour of [start, end) (0 included)."""
    per_hour = {hour_label(hour): 0 for hour in hours_in(start, end)}
    for row in data.group_by("ingest_hour").aggregate([("ingest_hour", "count")]).to_pylist():
        per_hour[hour_label(row["ingest_hour"])] = row["ingest_hour_count"]
    return per_hour


class LakehouseResource(ConfigurableResource):
    """Delta tables and landing files under one root (``CRYPTO_LAKE_ROOT``)."""

    root: str = Field(
        default="./data/lake",
        description="CRYPTO_LAKE_ROOT: a folder, file://, s3://bucket/prefix, az://container/prefix, abfss://… or "
        "gs://bucket/prefix; endpoints and credentials from the store's standard environment variables.",
    )

    slice_hours: int = Field(
        default=744,
        ge=1,
        description="CRYPTO_SLICE_HOURS: a long window is computed, checked and committed at most this many hours "
        "at a time (and at most CRYPTO_SLICE_ROWS rows), so the driver (which collects a slice's rows to commit "
        "them with delta-rs) holds at most a slice, whatever the window's length; a crash loses at most the slice "
        "in progress.",
    )

    slice_rows: int = Field(
        default=50_000,
        ge=1,
        description="CRYPTO_SLICE_ROWS: and at most this many rows of the table a slice reads (a step may take a "
        "multiple: ``slices``' rows_factor; an hour holding more is a slice of its own), so a slice's memory is the "
        "same at 1,000 coins or every coin, for a week of hourly points or months of daily ones.",
    )

    max_hours_per_run: int = Field(
        default=24 * 366,
        ge=1,
        description="CRYPTO_MAX_HOURS_PER_RUN: the longest window one run accepts, a guard against a mistaken "
        "range (memory does not grow with the window); a year and a day.",
    )

    # Tables open for reading, by path (see ``latest``); a run has its own copy of the resource.
    _read_tables: dict[str, DeltaTable] = PrivateAttr(default_factory=dict)
    _read_lock: threading.RLock = PrivateAttr(default_factory=threading.RLock)

    @property
    def lake_root(self) -> LakeRoot:
        return LakeRoot.parse(self.root)

    def check_reachable(self) -> None:
        """Fail fast, naming the store, the bucket and what to check (never a secret), when the
        lake cannot be listed: before a run spends API calls it could not land."""
        lake = self.lake_root
        try:
            obstore.list_with_delimiter(lake_files.store(lake.uri, probe=True), None)
        except Exception as error:  # obstore's errors, OSError, PermissionError…
            detail = lake.mask(str(error).split("\n")[0])[:300]
            refused = next((why for code, why in REFUSALS.items() if code in detail), None)
            raise LakehouseError(
                f"{lake.describe()} is not reachable: "
                + (f"{refused}; " if refused else "")
                + f"{type(error).__name__}: {detail} — {lake.hint}"
            ) from None

    # ---- Delta tables -------------------------------------------------------------------

    def table_uri(self, table: LakeTable) -> str:
        return self.lake_root.join(table.schema_name, table.name)

    def delta_table(self, table: LakeTable) -> DeltaTable | None:
        """The table opened now, at its latest version (None if it does not exist yet)."""
        try:
            return DeltaTable(self.table_uri(table))
        except TableNotFoundError:
            return None

    @contextmanager
    def latest(self, table: LakeTable) -> Iterator[DeltaTable | None]:
        """The table at its latest version, to read during the block (None if it does not exist yet).

        The table stays open for the run and is brought up to date on each use: with a year of
        history, opening Bronze replays a checkpoint of 6,550 files (about 80 ms), while bringing
        an open table up to date reads only the commits since (1–5 ms), and a run reads each table
        a dozen times or more. Never plan a write on it: use ``pin``.
        """
        with self._read_lock:
            delta = self._read_tables.get(table.path)
            if delta is None:
                delta = self.delta_table(table)
                if delta is not None:
                    self._read_tables[table.path] = delta
            else:
                delta.update_incremental()
            yield delta

    def pin(self, table: LakeTable) -> Pin:
        """The table's current snapshot, to plan a write on. A missing table is created empty
        first: two runs creating one table with their data would both succeed, each adding its
        rows (delta-rs checks no conflict against a table that did not exist), while writes on a
        snapshot conflict as they should. Tables made before a property of ``table_properties``
        get it first (files written later carry the statistics; the next tenth commit checkpoints)."""
        uri = self.table_uri(table)
        delta = self.delta_table(table)
        if delta is None:
            if self.lake_root.is_local:
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
            DeltaTable.create(
                uri,
                schema=table.arrow_schema,
                mode="ignore",  # another run's creation stands
                partition_by=["ingest_date"],
                configuration=table_properties(table),
            )
            delta = DeltaTable(uri)  # the table as created, by this run or the other
        properties = table_properties(table)
        configuration = delta.metadata().configuration
        if any(configuration.get(name) != value for name, value in properties.items()):
            delta.alter.set_table_properties(properties, raise_if_not_exists=False)
            delta = DeltaTable(uri)
        return Pin(table, delta)

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

    def _commit(self, pin: Pin, data: pa.Table, what: str, properties: CommitProperties, **write) -> int:
        """One delta-rs commit planned on ``pin``; a race lost to another run is a WindowConflict."""
        table = pin.table
        try:
            write_deltalake(
                pin.delta,
                data,
                partition_by=["ingest_date"],
                commit_properties=properties,
                **write,
            )
        except CommitFailedError as error:
            reason = str(error).splitlines()[0].removeprefix("Failed to commit transaction: ")
            raise WindowConflict(f"{table.path} {what}: another run committed first ({reason})") from None
        # the table object given to delta-rs is left at the version its commit made
        return pin.delta.version()

    def write_window(
        self, table: LakeTable, data: pa.Table, start: datetime, end: datetime, run_id: str, base: Pin | None = None
    ) -> WriteResult:
        """Replace hours [start, end) of ``table`` with ``data`` in one commit, nothing else.

        ``base`` is the snapshot the data was computed on (default: the current one); if another
        run committed rows of these hours since, nothing is written and WindowConflict is raised.
        """
        data = self.conform(table, data)
        hours = data.column("ingest_hour")
        if len(data) and (pc.min(hours).as_py() < start or pc.max(hours).as_py() >= end):
            raise LakehouseError(
                f"{table.path}: rows outside the window [{iso_utc_seconds(start)}, {iso_utc_seconds(end)}) refused"
            )
        properties = CommitProperties(
            custom_metadata={"dagster_run_id": run_id, "window": f"{iso_utc_seconds(start)}/{iso_utc_seconds(end)}"}
        )
        version = self._commit(
            base or self.pin(table),
            data,
            f"hours {window_label(start, end)}",
            properties,
            mode="overwrite",
            predicate=window_predicate(start, end),
        )
        per_hour = rows_per_hour(data, start, end)
        log.info("%s: wrote %d rows for %d hours (version %d)", table.path, len(data), len(per_hour), version)
        return WriteResult(table.path, version, len(data), per_hour)

    def append_capture(
        self, table: LakeTable, data: pa.Table, capture_id: str, run_id: str, part: int = 1
    ) -> int | None:
        """Add part ``part`` (1, 2, …) of one capture's rows, at most once: the commit carries an
        application transaction named after the capture with the part as its version, so a second
        commit of it (a rerun recovering a crash, two runs recovering the same capture) conflicts
        or is skipped, and a capture appended in parts resumes after its last committed part.
        Returns the version, or None when that part was committed already."""
        data = self.conform(table, data)
        properties = CommitProperties(
            custom_metadata={"dagster_run_id": run_id, "capture_id": capture_id, "capture_part": str(part)},
            app_transactions=[Transaction(app_id=capture_id, version=part)],
        )
        for attempt in range(1, REPLAN_ATTEMPTS + 1):
            pin = self.pin(table)
            if parts_committed(pin.delta, capture_id) >= part:
                return None
            try:
                version = self._commit(pin, data, f"capture {capture_id}", properties, mode="append")
            except WindowConflict as conflict:
                log.warning("%s; checking whether the capture is in and retrying (attempt %d)", conflict, attempt + 1)
                continue
            log.info(
                "%s: appended capture %s part %d, %d rows (version %d)",
                table.path,
                capture_id,
                part,
                len(data),
                version,
            )
            return version
        raise LakehouseError(
            f"{table.path}: capture {capture_id} could not be committed after {REPLAN_ATTEMPTS} attempts"
        )

    def _window_files(self, table: LakeTable, start: datetime, end: datetime) -> list[str]:
        with self.latest(table) as delta:
            return delta.file_uris(file_pruning_predicate=_date_predicate(start, end)) if delta else []

    def read_window_arrow(
        self, table: LakeTable, start: datetime, end: datetime, columns: list[str] | None = None
    ) -> pa.Table:
        """Rows of hours [start, end) as Arrow (empty, with the table's schema, if none).

        ``columns`` reads only those (the window columns excluded). Reads the snapshot's Parquet
        files with pyarrow (a folder) or through obstore (an object store), not with
        DeltaTable.to_pyarrow_*, which makes the process abort at exit now and then (a delta-rs
        background thread torn down late).
        """
        files = self._window_files(table, start, end)
        physical = pa.schema([f for f in table.arrow_schema if f.name != "ingest_date"])
        hour_type = physical.field("ingest_hour").type
        window = (pc.field("ingest_hour") >= pa.scalar(start, hour_type)) & (
            pc.field("ingest_hour") < pa.scalar(end, hour_type)
        )
        if not files:
            rows = physical.empty_table().select(columns) if columns else physical.empty_table()
        elif self.lake_root.is_local:  # pyarrow reads a folder's files in parallel
            rows = pads.dataset(files, format="parquet", schema=physical).to_table(columns=columns, filter=window)
        else:
            rows = pa.concat_tables([lake_files.read_parquet(uri, physical, columns, window) for uri in files])
        return rows if columns else self.conform(table, rows)

    def hour_counts(self, table: LakeTable, start: datetime, end: datetime) -> dict[str, int]:
        """Rows of ``table`` per hour label over [start, end), its ``ingest_hour`` read a week at
        a time (a year of every coin's hours would be hundreds of MB at once)."""
        counts: dict[str, int] = {}
        for week_start, week_end in window_slices(start, end, COUNT_HOURS):
            hours = self.read_window_arrow(table, week_start, week_end, columns=["ingest_hour"])
            counts.update(rows_per_hour(hours, week_start, week_end))
        return counts

    def slices(
        self, source: LakeTable, start: datetime, end: datetime, rows_factor: int = 1
    ) -> list[tuple[datetime, datetime]]:
        """[start, end) cut into the slices a step computes, checks and commits one at a time: at
        most ``slice_hours`` hours and ``rows_factor`` × ``slice_rows`` rows of ``source`` (the
        table it reads) each."""
        return self.cut(start, end, self.hour_counts(source, start, end), rows_factor)

    def cut(
        self, start: datetime, end: datetime, counts: dict[str, int], rows_factor: int = 1
    ) -> list[tuple[datetime, datetime]]:
        """``slices`` of [start, end) from rows per hour label already counted."""
        return window_slices(start, end, self.slice_hours, counts, self.slice_rows * rows_factor)

    def last_hour(self, table: LakeTable, start: datetime, end: datetime) -> datetime | None:
        """The latest hour in [start, end) that has rows, or None."""
        hours = self.read_window_arrow(table, start, end, columns=["ingest_hour"]).column("ingest_hour")
        return pc.max(hours).as_py() if len(hours) else None

    def read_window(self, spark: SparkSession, table: LakeTable, start: datetime, end: datetime) -> DataFrame:
        """Rows of hours [start, end) as a Spark DataFrame: the executors read the Delta snapshot's
        files themselves (Spark's Parquet reader on a folder, our data source on object stores)."""
        files = self._window_files(table, start, end)
        if not files:
            return spark.createDataFrame(table.arrow_schema.empty_table())
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema

        from crypto_assets.resources.delta_source import registered_in

        if not self.lake_root.is_local:
            window = {"files": json.dumps(files), "start": start.isoformat(), "end": end.isoformat()}
            source = spark.read.format(registered_in(spark)).schema(from_arrow_schema(table.arrow_schema))
            frame = source.options(**window).load()
            return frame.select(*table.arrow_schema.names)
        physical = pa.schema([f for f in table.arrow_schema if f.name != "ingest_date"])
        frame = spark.read.schema(from_arrow_schema(physical)).parquet(*files)  # no job to infer it
        frame = frame.where((F.col("ingest_hour") >= F.lit(start)) & (F.col("ingest_hour") < F.lit(end)))
        frame = frame.withColumn("ingest_date", F.expr(INGEST_DATE_SQL))
        return frame.select(*table.arrow_schema.names)

    def table_version(self, table: LakeTable) -> int | None:
        with self.latest(table) as delta:
            return None if delta is None else delta.version()

    # ---- landing files ------------------------------------------------------------------

    def landing_uri(self, relative: str = "") -> str:
        return self.lake_root.join("raw_data", "landing", relative)

    @property
    def landing(self) -> Landing:
        return Landing(self.landing_uri())
