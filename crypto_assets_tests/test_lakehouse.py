"""The lakehouse resource on real Delta tables, in a temp folder and on S3 (moto's server)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import obstore
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from crypto_assets.assets.gold import GOLD, MAX_LOOKBACK_HOURS, affected_window
from crypto_assets.partitions import HOUR
from crypto_assets.resources import lake_files
from crypto_assets.resources.lakehouse import (
    STATS_PROPERTY,
    LakehouseError,
    LakehouseResource,
    WindowConflict,
    replanned,
)
from crypto_assets.resources.landing import LandingError
from crypto_assets.tables import (
    ALL_TABLES,
    BRONZE,
    GOLD_DISTRIBUTION,
    GOLD_OVERVIEW,
    GOLD_TRENDS,
    GOLD_VOLATILITY,
    SILVER,
    LakeTable,
)

T0 = datetime(2026, 11, 24, 22, tzinfo=timezone.utc)


def hour(i: int) -> datetime:
    return T0 + timedelta(hours=i)


def overview_rows(hours, coins: int) -> pa.Table:
    rows = [
        {
            "ingest_hour": hour(i),
            "vs_currency": "usd",
            "coins_tracked": coins,
            "total_market_cap": 1.5e12,
            "total_volume": 8e10,
            "btc_dominance_pct": 55.0,
            "eth_dominance_pct": 12.0,
            "advancers": 3,
            "decliners": 2,
            "unchanged": 0,
            "high_volume_coins": 1,
            "stale_coins": 0,
        }
        for i in hours
    ]
    return pa.Table.from_pylist(
        rows, schema=pa.schema([f for f in GOLD_OVERVIEW.arrow_schema if f.name != "ingest_date"])
    )


def marked_rows(table: LakeTable, hours, mark: str) -> pa.Table:
    """One row per hour of any table, its first text column ``mark`` and the rest null: what
    statistics and conflicts look at is the window columns."""
    physical = pa.schema([f for f in table.arrow_schema if f.name != "ingest_date"])
    return pa.Table.from_pylist([{"ingest_hour": hour(i), _text_column(table): mark} for i in hours], schema=physical)


def _text_column(table: LakeTable) -> str:
    return next(f.name for f in table.arrow_schema if f.type == pa.string())


def marks_by_hour(lake: LakehouseResource, table: LakeTable) -> dict[datetime, str]:
    rows = lake.read_window_arrow(table, hour(-100), hour(500))
    return {row["ingest_hour"]: row[_text_column(table)] for row in rows.to_pylist()}


def coins_by_hour(lake: LakehouseResource) -> dict[datetime, int]:
    table = lake.read_window_arrow(GOLD_OVERVIEW, hour(-100), hour(100))
    return {row["ingest_hour"]: row["coins_tracked"] for row in table.to_pylist()}


@pytest.fixture(params=["folder", "s3"])
def lake(request, tmp_path) -> LakehouseResource:
    """Every guarantee of the lake, on a local folder and on S3 (moto's server)."""
    if request.param == "s3":
        request.getfixturevalue("s3")
        return LakehouseResource(root=f"s3://lake/{tmp_path.name}")
    return LakehouseResource(root=str(tmp_path / "lake"))


def test_writing_a_window_replaces_exactly_its_hours(lake):
    lake.write_window(GOLD_OVERVIEW, overview_rows(range(4), coins=10), hour(0), hour(4), "run-1")
    result = lake.write_window(GOLD_OVERVIEW, overview_rows([1, 2], coins=20), hour(1), hour(3), "run-2")

    assert coins_by_hour(lake) == {hour(0): 10, hour(1): 20, hour(2): 20, hour(3): 10}
    assert result.rows == 2 and result.version == 2  # 0 creates the table, 1 the first window
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
    assert lake.table_version(GOLD_OVERVIEW) == 1  # version 0 creates the table empty


def test_windows_spanning_days_read_back_from_both_partitions(lake, spark):
    lake.write_window(GOLD_OVERVIEW, overview_rows(range(4), coins=7), hour(0), hour(4), "run-1")
    assert set(lake.read_window_arrow(GOLD_OVERVIEW, hour(0), hour(4)).column("ingest_date").to_pylist()) == {
        "2026-11-24",
        "2026-11-25",
    }
    frame = lake.read_window(spark, GOLD_OVERVIEW, hour(1), hour(3))
    assert frame.columns == GOLD_OVERVIEW.arrow_schema.names
    assert sorted(r["ingest_hour"].replace(tzinfo=timezone.utc) for r in frame.collect()) == [hour(1), hour(2)]


def test_spark_looks_up_a_windows_many_files_without_a_job_of_its_own(lake, spark):
    """Above 32 files Spark's default lists them in a job (a quarter of a second a read)."""
    for i in range(40):  # a file each
        lake.write_window(GOLD_OVERVIEW, overview_rows([i], coins=3), hour(i), hour(i + 1), f"run-{i}")
    assert len(lake.delta_table(GOLD_OVERVIEW).file_uris()) == 40
    spark.sparkContext.setJobGroup("window-read", "read_window's planning")
    try:
        frame = lake.read_window(spark, GOLD_OVERVIEW, hour(0), hour(40))
        planning_jobs = spark.sparkContext.statusTracker().getJobIdsForGroup("window-read")
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    assert planning_jobs == [] and frame.count() == 40


def test_spark_reads_the_current_snapshot_never_the_files_a_rewrite_removed(lake, spark):
    lake.write_window(GOLD_OVERVIEW, overview_rows(range(4), coins=10), hour(0), hour(4), "run-1")
    lake.write_window(GOLD_OVERVIEW, overview_rows([1, 2], coins=20), hour(1), hour(3), "run-2")
    store = lake_files.store(lake.table_uri(GOLD_OVERVIEW))
    stored = [o["path"] for o in obstore.list(store).collect() if o["path"].endswith(".parquet")]
    current = lake.delta_table(GOLD_OVERVIEW).file_uris()
    assert len(stored) > len(current)  # the replaced files are still there until a vacuum
    frame = lake.read_window(spark, GOLD_OVERVIEW, hour(0), hour(4))
    got = sorted((r["ingest_hour"].replace(tzinfo=timezone.utc), r["coins_tracked"]) for r in frame.collect())
    assert got == [(hour(0), 10), (hour(1), 20), (hour(2), 20), (hour(3), 10)]


def test_reading_a_table_that_does_not_exist_gives_an_empty_frame_with_the_schema(lake, spark):
    assert lake.read_window_arrow(GOLD_OVERVIEW, hour(0), hour(1)).schema == GOLD_OVERVIEW.arrow_schema
    frame = lake.read_window(spark, GOLD_OVERVIEW, hour(0), hour(1))
    assert frame.count() == 0 and frame.columns == GOLD_OVERVIEW.arrow_schema.names


def landed_objects(lake: LakehouseResource) -> dict[str, bytes]:
    store = lake_files.store(lake.landing_uri())
    return {o["path"]: bytes(obstore.get(store, o["path"]).bytes()) for o in obstore.list(store).collect()}


def land(lake: LakehouseResource, capture_id: str, files: dict[str, bytes]) -> None:
    for name, body in files.items():
        lake.landing.put(capture_id, name, body)
    lake.landing.put_manifest(capture_id, {"files": [{"name": name} for name in files]})


def test_a_capture_is_its_files_plus_a_manifest_written_last_and_never_rewritten(lake):
    land(lake, "coingecko/markets/x", {"page-0001.json": b"[1]", "page-0002.json": b"[]"})
    assert sorted(landed_objects(lake)) == [
        f"coingecko/markets/x/{name}" for name in ("manifest.json", "page-0001.json", "page-0002.json")
    ]
    with pytest.raises(LandingError, match="never rewritten"):
        land(lake, "coingecko/markets/x", {"page-0001.json": b"[2]"})
    assert landed_objects(lake)["coingecko/markets/x/page-0001.json"] == b"[1]"
    assert lake.landing.captures("coingecko") == ["coingecko/markets/x"]
    assert lake.landing.children("coingecko") == ["markets"]
    assert [e["name"] for e in lake.landing.manifest("coingecko/markets/x")["files"]] == [
        "page-0001.json",
        "page-0002.json",
    ]
    assert lake.landing.read("coingecko/markets/x", "page-0001.json") == b"[1]"


def test_a_folder_without_its_manifest_is_no_capture(lake):
    # a run died after landing a page, before writing the manifest
    obstore.put(lake_files.store(lake.landing_uri()), "coingecko/markets/crashed/page-0001.json", b"[1]")
    assert lake.landing.captures("coingecko") == []
    with pytest.raises(LandingError, match="exists already"):  # and its files are never overwritten
        land(lake, "coingecko/markets/crashed", {"page-0001.json": b"[2]"})
    assert landed_objects(lake) == {"coingecko/markets/crashed/page-0001.json": b"[1]"}


def test_a_file_name_that_leaves_its_capture_folder_is_refused(lake, tmp_path):
    with pytest.raises(LandingError, match="leaves its folder"):
        land(lake, "coingecko/markets/y", {"../../escape.json": b"[]"})
    with pytest.raises(LandingError, match="leaves its folder"):
        lake.landing.put_manifest("coingecko/markets/y", {"files": [{"name": "/etc/passwd"}]})
    assert landed_objects(lake) == {} and not list(tmp_path.rglob("escape.json"))


TABLES = pytest.mark.parametrize("table", ALL_TABLES, ids=lambda table: table.name)


@TABLES
def test_every_table_keeps_file_statistics_on_its_window_and_key(lake, table):
    """Silver's ingest_hour is its 39th column, past the 32 delta-rs covers by default: without
    statistics on it a window write reads every file and writers of other hours conflict."""
    lake.write_window(table, marked_rows(table, [0, 2], "a"), hour(0), hour(3), "run-1")
    delta = DeltaTable(lake.table_uri(table))
    assert delta.metadata().configuration["delta.dataSkippingStatsColumns"] == table.stats_columns
    adds = pa.table(delta.get_add_actions(flatten=True)).to_pylist()
    assert sorted((a["min.ingest_hour"], a["max.ingest_hour"]) for a in adds) == [
        (hour(0), hour(0)),
        (hour(2), hour(2)),
    ]


def test_a_table_checkpoints_its_log_every_tenth_commit_even_one_made_before(lake):
    """Opening a table replays its JSON commits since the last checkpoint; delta-rs alone writes
    one every 100 commits, so a year's backfill left Bronze replaying 83 at each of a dozen opens
    a step. A table made before the property gets it at its next write."""
    uri = lake.table_uri(GOLD_OVERVIEW)
    if lake.lake_root.is_local:
        Path(uri).parent.mkdir(parents=True)
    DeltaTable.create(
        uri,
        schema=GOLD_OVERVIEW.arrow_schema,
        partition_by=["ingest_date"],
        configuration={STATS_PROPERTY: GOLD_OVERVIEW.stats_columns},  # as tables were made before
    )
    for i in range(10):
        lake.write_window(GOLD_OVERVIEW, overview_rows([i], coins=3), hour(i), hour(i + 1), f"run-{i}")
    delta = DeltaTable(uri)
    assert delta.metadata().configuration["delta.checkpointInterval"] == "10"
    log = {
        entry["path"].rsplit("/", 1)[1] for entry in obstore.list(lake_files.store(uri), prefix="_delta_log/").collect()
    }
    checkpoints = sorted(name for name in log if name.endswith(".checkpoint.parquet"))
    assert checkpoints and int(checkpoints[-1].split(".")[0]) >= delta.version() - 9
    assert coins_by_hour(lake) == {hour(i): 3 for i in range(10)}


@TABLES
@pytest.mark.parametrize("hours", [(1, 2), (2, 3)], ids=["different days", "one day"])
def test_two_writers_of_different_hours_both_commit(lake, table, hours):
    """Both planned on one snapshot: across days the ingest_date bound tells their hours apart,
    within a day only the files' ingest_hour statistics do (Silver's conflicted without them)."""
    for i in range(4):  # a file per hour, as hourly runs leave them
        lake.write_window(table, marked_rows(table, [i], "run-0"), hour(i), hour(i + 1), "run-0")
    first, second = lake.pin(table), lake.pin(table)  # both plan on the same version
    for (i, pin), run in zip(zip(hours, (first, second)), ("run-1", "run-2")):
        lake.write_window(table, marked_rows(table, [i], run), hour(i), hour(i + 1), run, base=pin)
    expected = {hour(i): "run-0" for i in range(4)} | {hour(hours[0]): "run-1", hour(hours[1]): "run-2"}
    assert marks_by_hour(lake, table) == expected


def test_a_writer_that_lost_the_race_for_its_hours_gets_a_conflict_and_writes_nothing(lake):
    lake.write_window(GOLD_OVERVIEW, overview_rows(range(2), coins=10), hour(0), hour(2), "run-0")
    stale, fresh = lake.pin(GOLD_OVERVIEW), lake.pin(GOLD_OVERVIEW)
    lake.write_window(GOLD_OVERVIEW, overview_rows([1], coins=20), hour(1), hour(2), "run-1", base=fresh)
    with pytest.raises(
        WindowConflict, match="gold_market_overview hours 2026-11-24T23:00Z: another run committed first"
    ):
        lake.write_window(GOLD_OVERVIEW, overview_rows([1], coins=30), hour(1), hour(2), "run-2", base=stale)
    assert coins_by_hour(lake) == {hour(0): 10, hour(1): 20}


def test_a_table_kept_open_for_reading_sees_what_another_run_committed_and_never_moves_a_pin(lake):
    """A run reads each table through one open table (``latest``), brought up to date on each use:
    it must see another run's commits, while a pin taken before them still conflicts."""
    other_run = LakehouseResource(root=lake.root)
    other_run.write_window(GOLD_OVERVIEW, overview_rows(range(2), coins=10), hour(0), hour(2), "other-0")
    assert coins_by_hour(lake) == {hour(0): 10, hour(1): 10}
    with lake.latest(GOLD_OVERVIEW) as opened:
        assert opened is not None and opened.version() == 1
    pin = lake.pin(GOLD_OVERVIEW)

    other_run.write_window(GOLD_OVERVIEW, overview_rows([1], coins=20), hour(1), hour(2), "other-1")
    assert coins_by_hour(lake) == {hour(0): 10, hour(1): 20}
    assert lake.table_version(GOLD_OVERVIEW) == 2
    with lake.latest(GOLD_OVERVIEW) as still_open:
        assert still_open is opened  # brought up to date, not opened again
    with pytest.raises(WindowConflict, match="another run committed first"):
        lake.write_window(GOLD_OVERVIEW, overview_rows([1], coins=30), hour(1), hour(2), "me", base=pin)
    assert coins_by_hour(lake) == {hour(0): 10, hour(1): 20}


def test_replanning_recomputes_on_the_fresh_snapshot_and_gives_up_with_a_clear_message(lake):
    lake.write_window(GOLD_OVERVIEW, overview_rows([0], coins=10), hour(0), hour(1), "run-0")
    attempts = []

    def plan_and_commit():
        pin = lake.pin(GOLD_OVERVIEW)
        attempts.append(pin.version)
        if len(attempts) == 1:  # another run commits between this run's read and its commit
            lake.write_window(GOLD_OVERVIEW, overview_rows([0], coins=20), hour(0), hour(1), "other")
        return lake.write_window(GOLD_OVERVIEW, overview_rows([0], coins=30), hour(0), hour(1), "me", base=pin)

    replanned("overview", plan_and_commit)
    assert attempts == [1, 2] and coins_by_hour(lake) == {hour(0): 30}

    def always_late():
        pin = lake.pin(GOLD_OVERVIEW)
        lake.write_window(GOLD_OVERVIEW, overview_rows([0], coins=40), hour(0), hour(1), "other")
        return lake.write_window(GOLD_OVERVIEW, overview_rows([0], coins=50), hour(0), hour(1), "me", base=pin)

    with pytest.raises(
        LakehouseError, match="overview: .* lost the race 4 times; nothing of this attempt was committed"
    ):
        replanned("overview", always_late)
    assert coins_by_hour(lake) == {hour(0): 40}


def test_a_capture_is_appended_at_most_once(lake):
    rows = quarantine_like_bronze_rows()
    assert lake.append_capture(BRONZE, rows, "cap-1", "run-1") == 1  # version 0 creates the table
    assert lake.append_capture(BRONZE, rows, "cap-1", "run-2") is None  # a rerun recovering the same capture
    assert lake.append_capture(BRONZE, rows, "cap-2", "run-2") == 2
    assert len(lake.read_window_arrow(BRONZE, hour(0), hour(1))) == 2 * len(rows)


def quarantine_like_bronze_rows() -> pa.Table:
    physical = pa.schema([f for f in BRONZE.arrow_schema if f.name != "ingest_date"])
    row = {
        "coin_id": "bitcoin",
        "record_json": "{}",
        "source": "snapshot",
        "vs_currency": "usd",
        "capture_id": "c",
        "page": 1,
        "position": 0,
        "request": "/coins/markets",
        "http_status": 200,
        "payload_sha256": "0",
        "ingested_at": hour(0),
        "run_id": "r",
        "ingest_hour": hour(0),
    }
    return pa.Table.from_pylist([row, {**row, "position": 1}], schema=physical)


def test_two_captures_of_one_hour_appended_at_once_are_both_kept(lake):
    rows = quarantine_like_bronze_rows()
    lake.append_capture(BRONZE, rows, "cap-0", "run-0")  # the table exists: every writer sees version 1
    with ThreadPoolExecutor(max_workers=4) as pool:
        versions = list(pool.map(lambda n: lake.append_capture(BRONZE, rows, f"cap-{n}", f"run-{n}"), range(1, 5)))
    assert sorted(versions) == [2, 3, 4, 5]
    bronze = lake.read_window_arrow(BRONZE, hour(0), hour(1))
    assert len(bronze) == 5 * len(rows)


def test_two_runs_writing_the_first_window_of_a_new_table_never_both_add_their_rows(lake):
    """delta-rs lets two writes that each create a table both commit, each adding its rows; the
    table is created empty first, so the later window write conflicts or replaces, never adds."""
    pins = [lake.pin(GOLD_OVERVIEW) for _ in range(2)]  # both planned before either wrote

    def write(n: int) -> str:
        try:
            lake.write_window(
                GOLD_OVERVIEW, overview_rows(range(2), coins=n), hour(0), hour(2), f"run-{n}", pins[n - 1]
            )
            return "committed"
        except WindowConflict:
            return "conflict"

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = sorted(pool.map(write, (1, 2)))
    assert outcomes == ["committed", "conflict"]
    assert len(lake.read_window_arrow(GOLD_OVERVIEW, hour(0), hour(2))) == 2


def test_a_lake_at_an_az_uri_replaces_windows_and_lands_captures(azure, tmp_path):
    """``az://container/prefix`` (the CLI tests run ``abfss://``): Delta and the landing files on Azurite."""
    lake = LakehouseResource(root=f"az://lake/{tmp_path.name}")
    lake.write_window(GOLD_OVERVIEW, overview_rows(range(3), coins=10), hour(0), hour(3), "run-1")
    lake.write_window(GOLD_OVERVIEW, overview_rows([1], coins=20), hour(1), hour(2), "run-2")
    assert coins_by_hour(lake) == {hour(0): 10, hour(1): 20, hour(2): 10}
    land(lake, "coingecko/markets/x", {"page-0001.json": b"[1]"})
    assert lake.landing.captures("coingecko") == ["coingecko/markets/x"]


@pytest.mark.parametrize(
    "table, later_hours",
    [(GOLD_OVERVIEW, 0), (GOLD_DISTRIBUTION, 0), (GOLD_VOLATILITY, 23), (GOLD_TRENDS, 168)],
    ids=["overview", "distribution", "volatility", "trends"],
)
def test_a_silver_change_brings_the_gold_hours_reading_it_into_the_window_and_no_more(tmp_path, table, later_hours):
    """Silver hours [A, B) changed: Gold's hour H reads Silver back to H - lookback, so the hours
    B … B + later_hours - 1 are recomputed with them (trends: up to B + 167 h, the last that reads
    B - 1), no later one, and only as far as Silver goes. The warehouse reloads the widest."""
    [gold] = [g for g in GOLD if g.table is table]
    lake = LakehouseResource(root=str(tmp_path / "lake"))
    a, b = hour(0), hour(2)
    lake.write_window(SILVER, marked_rows(SILVER, range(-10, 400), "x"), hour(-10), hour(400), "run-1")
    assert affected_window(lake, a, b, gold.lookback_hours) == (a, b + later_hours * HOUR)
    assert affected_window(lake, a, b, MAX_LOOKBACK_HOURS) == (a, b + 168 * HOUR)
    lake.write_window(SILVER, marked_rows(SILVER, [], "x"), hour(30), hour(400), "run-2")  # Silver ends at 29
    assert affected_window(lake, a, b, gold.lookback_hours) == (a, min(b + later_hours * HOUR, hour(30)))
    lake.write_window(SILVER, marked_rows(SILVER, [], "x"), b, hour(30), "run-3")  # nothing after B
    assert affected_window(lake, a, b, gold.lookback_hours) == (a, b)
