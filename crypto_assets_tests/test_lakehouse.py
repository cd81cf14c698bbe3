"""The lakehouse resource on real Delta tables in a temp folder."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from crypto_assets.resources.lakehouse import LakehouseError, LakehouseResource
from crypto_assets.tables import GOLD_OVERVIEW

T0 = datetime(2026, 11, 24, 22, tzinfo=timezone.utc)


def hour(i: int) -> datetime:
    return T0 + timedelta(hours=i)


def overview_rows(hours, coins: int) -> pa.Table:
    rows = [
        {"ingest_hour": hour(i), "vs_currency": "usd", "coins_tracked": coins, "total_market_cap": 1.5e12,
         "total_volume": 8e10, "btc_dominance_pct": 55.0, "eth_dominance_pct": 12.0, "advancers": 3,
         "decliners": 2, "unchanged": 0, "high_volume_coins": 1, "stale_coins": 0}
        for i in hours
    ]
    return pa.Table.from_pylist(rows, schema=pa.schema([f for f in GOLD_OVERVIEW.arrow_schema if f.name != "ingest_date"]))


def coins_by_hour(lake: LakehouseResource) -> dict[datetime, int]:
    table = lake.read_window_arrow(GOLD_OVERVIEW, hour(-100), hour(100))
    return {row["ingest_hour"]: row["coins_tracked"] for row in table.to_pylist()}


@pytest.fixture
def lake(tmp_path) -> LakehouseResource:
    return LakehouseResource(root=str(tmp_path / "lake"))


def test_writing_a_window_replaces_exactly_its_hours(lake):
    lake.write_window(GOLD_OVERVIEW, overview_rows(range(4), coins=10), hour(0), hour(4), "run-1")
    result = lake.write_window(GOLD_OVERVIEW, overview_rows([1, 2], coins=20), hour(1), hour(3), "run-2")

    assert coins_by_hour(lake) == {hour(0): 10, hour(1): 20, hour(2): 20, hour(3): 10}
    assert result.rows == 2 and result.version == 1
    assert list(result.rows_per_hour.values()) == [1, 1]
    # the commit records which run wrote it
    assert DeltaTable(lake.table_uri(GOLD_OVERVIEW)).history(1)[0]["dagster_run_id"] == "run-2"


def test_an_empty_window_deletes_its_hours_only(lake):
    lake.write_window(GOLD_OVERVIEW, overview_rows(range(3), coins=10), hour(0), hour(3), "run-1")
    lake.write_window(GOLD_OVERVIEW, overview_rows([], coins=0), hour(1), hour(2), "run-2")
    assert coins_by_hour(lake) == {hour(0): 10, hour(2): 10}


def test_rewriting_the_same_window_gives_the_same_table(lake):
    lake.write_window(GOLD_OVERVIEW, overview_rows(range(3), coins=10), hour(0), hour(3), "run-1")
    before = lake.read_window_arrow(GOLD_OVERVIEW, hour(0), hour(3)).sort_by("ingest_hour")
    for run in range(2):
        lake.write_window(GOLD_OVERVIEW, overview_rows(range(3), coins=10), hour(0), hour(3), f"again-{run}")
    assert lake.read_window_arrow(GOLD_OVERVIEW, hour(0), hour(3)).sort_by("ingest_hour").equals(before)


def test_rows_outside_the_window_are_refused_and_nothing_is_written(lake):
    lake.write_window(GOLD_OVERVIEW, overview_rows([0], coins=10), hour(0), hour(1), "run-1")
    with pytest.raises(LakehouseError, match="outside the window"):
        lake.write_window(GOLD_OVERVIEW, overview_rows([0, 5], coins=99), hour(0), hour(1), "run-2")
    assert coins_by_hour(lake) == {hour(0): 10}
    assert lake.table_version(GOLD_OVERVIEW) == 0


def test_windows_spanning_days_read_back_from_both_partitions(lake, spark):
    lake.write_window(GOLD_OVERVIEW, overview_rows(range(4), coins=7), hour(0), hour(4), "run-1")
    assert set(lake.read_window_arrow(GOLD_OVERVIEW, hour(0), hour(4)).column("ingest_date").to_pylist()) == {
        "2026-11-24", "2026-11-25"}
    frame = lake.read_window(spark, GOLD_OVERVIEW, hour(1), hour(3))
    assert frame.columns == GOLD_OVERVIEW.arrow_schema.names
    assert sorted(r["ingest_hour"].replace(tzinfo=timezone.utc) for r in frame.collect()) == [hour(1), hour(2)]


def test_reading_a_table_that_does_not_exist_gives_an_empty_frame_with_the_schema(lake, spark):
    assert lake.read_window_arrow(GOLD_OVERVIEW, hour(0), hour(1)).schema == GOLD_OVERVIEW.arrow_schema
    frame = lake.read_window(spark, GOLD_OVERVIEW, hour(0), hour(1))
    assert frame.count() == 0 and frame.columns == GOLD_OVERVIEW.arrow_schema.names


def test_landing_folders_appear_whole_and_are_never_rewritten(lake):
    path = lake.write_landing("coingecko/markets/x", {"page-0001.json": b"[1]", "page-0002.json": b"[]"})
    assert sorted(p.name for p in path.iterdir()) == ["page-0001.json", "page-0002.json"]
    assert (path / "page-0001.json").read_bytes() == b"[1]"
    with pytest.raises(LakehouseError, match="never rewritten"):
        lake.write_landing("coingecko/markets/x", {"page-0001.json": b"[2]"})
    assert (path / "page-0001.json").read_bytes() == b"[1]"
    # no staging folder is left behind
    assert [p.name for p in path.parent.iterdir()] == ["x"]
