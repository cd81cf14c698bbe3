"""A fresh Spark JVM warmed by the pipeline's own queries over one made-up record.

A fresh JVM's first queries load, verify and compile what every later one reuses: seconds on a
small machine. ``warm_up`` runs a run's queries over a throwaway lake — Bronze read back from its
Parquet files, Silver's plan, Silver read back, the four Gold queries — so that

* the archive of Spark's classes (``resources/spark_classes.py``) is made from a JVM that loaded
  what a run's loads: Parquet's reader and Gold's window and aggregate functions too, not only
  Silver's plan over rows handed over from Python (8,800 classes a run still loaded from the jars);
* a run whose Spark steps follow a long Bronze step finds Spark warm (``SparkResource.spark_assets``).
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone

import pyarrow as pa
from deltalake import write_deltalake

from crypto_assets.partitions import HOUR
from crypto_assets.tables import BRONZE, SILVER, LakeTable

_HOUR = datetime(2000, 1, 1, tzinfo=timezone.utc)
_RECORD = {
    "coin_id": "warm-up",
    "record_json": '{"id": "warm-up", "current_price": 1, "market_cap": 1, "total_volume": 1}',
    "source": "snapshot",
    "vs_currency": "usd",
    "capture_id": "warm-up",
    "page": 1,
    "position": 0,
    "request": "",
    "http_status": 200,
    "payload_sha256": "",
    "ingested_at": _HOUR,
    "run_id": "",
    "ingest_hour": _HOUR,
}


def warm_up(spark) -> None:
    """Run Silver's and Gold's queries once over one record, in a temporary lake."""
    from crypto_assets.assets.gold import GOLD
    from crypto_assets.resources.lakehouse import LakehouseResource
    from crypto_assets.transforms.silver import SilverRules, clean_markets

    with tempfile.TemporaryDirectory(prefix="crypto_warm_up_") as root:
        lake = LakehouseResource(root=root)

        def put(table: LakeTable, rows: pa.Table) -> None:  # delta-rs as the pipeline writes, without its log lines
            write_deltalake(lake.table_uri(table), lake.conform(table, rows), partition_by=["ingest_date"])

        put(BRONZE, pa.Table.from_pylist([_RECORD]))
        silver, _, _ = clean_markets(lake.read_window(spark, BRONZE, _HOUR, _HOUR + HOUR), SilverRules())
        put(SILVER, silver)
        frame = lake.read_window(spark, SILVER, _HOUR, _HOUR + HOUR)
        for gold in GOLD:
            gold.transform(frame, _HOUR, _HOUR + HOUR).toArrow()
