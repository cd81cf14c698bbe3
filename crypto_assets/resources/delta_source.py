"""A Spark 4 Python data source that reads the files of a Delta snapshot on the executors.

Spark cannot open ``s3://`` or ``az://`` here (the pyspark wheel has no Hadoop cloud connectors)
and must never read a Delta folder as plain Parquet (removed files would come back). So the driver
asks delta-rs for the window's files and hands Spark the list; each file is one input partition,
read on an executor with ``lake_files`` (obstore, configured by the store's environment variables,
which the executors must have too) and filtered to the window's hours. The data never passes
through the driver, and no credential travels in the query plan.

Works the same under Spark Connect and on a cluster: the executors' Python (``PYSPARK_PYTHON``)
must have this package installed, as it has pyarrow and obstore.

A session gets it on its first object-store read (``registered_in``), not when it starts: registering
a Python data source makes Spark look up every installed one in a Python daemon and worker that
then stay for the session (0.1 GB of memory, a second of CPU at the start), which a lake on local
disk never needs.
"""

from __future__ import annotations

import json
import threading
import weakref
from datetime import datetime
from typing import Iterator

from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import StructType

NAME = "crypto_delta_files"
_registered: weakref.WeakSet = weakref.WeakSet()  # the sessions that have it
_registering = threading.Lock()


class _File(InputPartition):
    def __init__(self, index: int, uri: str):
        super().__init__(index)
        self.uri = uri


class DeltaFilesSource(DataSource):
    """Options: ``files`` (JSON list of the snapshot's file URIs), ``start`` and ``end`` (ISO, the
    window on ``ingest_hour``). The caller passes the table's schema with ``.schema(...)``."""

    @classmethod
    def name(cls) -> str:
        return NAME

    def schema(self):
        raise ValueError(f"{NAME}: pass the table's schema with .schema(...)")

    def reader(self, schema: StructType) -> DataSourceReader:
        return _Reader(schema, dict(self.options))


class _Reader(DataSourceReader):
    def __init__(self, schema: StructType, options: dict[str, str]):
        self.schema = schema
        self.files = json.loads(options["files"])
        self.start, self.end = datetime.fromisoformat(options["start"]), datetime.fromisoformat(options["end"])

    def partitions(self) -> list[InputPartition]:
        return [_File(index, uri) for index, uri in enumerate(self.files)]

    def read(self, partition: InputPartition) -> Iterator:
        assert isinstance(partition, _File)
        import pyarrow as pa
        import pyarrow.compute as pc
        from pyspark.sql.pandas.types import to_arrow_schema

        from crypto_assets.resources import lake_files

        target = to_arrow_schema(self.schema, timezone="UTC")  # Spark checks every batch against exactly this
        physical = pa.schema([f for f in target if f.name != "ingest_date"])
        hour = physical.field("ingest_hour").type
        window = (pc.field("ingest_hour") >= pa.scalar(self.start, hour)) & (
            pc.field("ingest_hour") < pa.scalar(self.end, hour)
        )
        rows = lake_files.read_parquet(partition.uri, physical, filter=window)
        if "ingest_date" in target.names:  # the partition column lives in the path, not the file
            rows = rows.append_column("ingest_date", pc.strftime(rows.column("ingest_hour"), format="%Y-%m-%d"))
        yield from rows.select(target.names).cast(target).to_batches()


def registered_in(spark) -> str:
    """The source's format name, registered with the session ``spark`` if it was not yet."""
    with _registering:
        if spark not in _registered:
            spark.dataSource.register(DeltaFilesSource)
            _registered.add(spark)
    return NAME
