"""End to end, as the CI and users run it: `dagster asset materialize` subprocesses against the
simulator, over three past hours (one single-run backfill, reconstructed from history) and then
the current hour (a snapshot); every table is then checked, and a rerun must change nothing.
"""

from __future__ import annotations

import os

import pyarrow.compute as pc
import pytest
from dagster import AssetRecordsFilter, DagsterInstance, MaterializeResult, asset
from dagster import materialize as materialize_in_process

from crypto_assets.assets import common
from crypto_assets.definitions import defs
from crypto_assets.partitions import HOUR, RANGE_TAGS, current_hour, hour_label, hourly_partitions, partition_key
from crypto_assets.resources.lakehouse import LakehouseResource, rows_per_hour
from crypto_assets.resources.warehouse import WarehouseResource
from crypto_assets.tables import BRONZE, GOLD_TABLES, QUARANTINE, SILVER
from support import dump, lake_state, materialize, settle_hour

COINS_LIMIT = 40


@pytest.fixture(scope="module")
def pipeline(simulator, tmp_path_factory, sqlite_odbc):
    settle_hour()
    home = tmp_path_factory.mktemp("dagster_home")
    lake_root = tmp_path_factory.mktemp("lake")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "COINGECKO_BASE_URL": simulator.base_url,
        "COINGECKO_CALLS_PER_MINUTE": "60000",
        "CRYPTO_COINS_LIMIT": str(COINS_LIMIT),
        "CRYPTO_LAKE_ROOT": str(lake_root),
        "CRYPTO_WAREHOUSE_ODBC": sqlite_odbc,
    }
    now = current_hour()
    first = now - 3 * HOUR
    past_range = f"{partition_key(first)}...{partition_key(now - HOUR)}"
    requests_before = len(simulator.requests)
    backfill = materialize(env, "--partition-range", past_range)
    materialize(env, "--partition", partition_key(now))
    lake = LakehouseResource(root=str(lake_root))
    first_state = lake_state(lake, first, now + HOUR)
    api_calls = len(simulator.requests) - requests_before
    return {
        "env": env,
        "home": home,
        "lake": lake,
        "first": first,
        "now": now,
        "end": now + HOUR,
        "past_range": past_range,
        "state": first_state,
        "api_calls": api_calls,
        "backfill_log": backfill.stdout + backfill.stderr,
    }


def test_a_history_fetch_reports_its_plan_and_progress_and_keeps_per_chunk_lines_at_debug(pipeline):
    lines = pipeline["backfill_log"].splitlines()
    info = [line for line in lines if " - INFO - " in line]
    assert any(f"history: {COINS_LIMIT} coins for 3 hours: {COINS_LIMIT} calls, at least" in line for line in info)
    assert any(f"history: {COINS_LIMIT}/{COINS_LIMIT} coins in " in line for line in info)
    chunks = [line for line in lines if " chunk 1: " in line and "history " in line]
    assert chunks and all(" - DEBUG - " in line for line in chunks)


def test_past_hours_are_reconstructed_from_history_and_the_current_hour_is_a_snapshot(pipeline, simulator):
    bronze = pipeline["state"][BRONZE.path]
    per_hour_source = {}
    for row in bronze.select(["ingest_hour", "source"]).to_pylist():
        per_hour_source.setdefault(row["ingest_hour"], set()).add(row["source"])
    hours = [pipeline["first"] + i * HOUR for i in range(4)]
    assert per_hour_source == {**{hour: {"history"} for hour in hours[:3]}, hours[3]: {"snapshot"}}
    counts = rows_per_hour(bronze, pipeline["first"], pipeline["end"])
    assert list(counts.values()) == [COINS_LIMIT] * 4


def test_the_snapshot_in_bronze_is_what_the_simulator_served(pipeline, simulator):
    bronze = pipeline["state"][BRONZE.path]
    snapshot = bronze.filter(pc.equal(bronze.column("source"), "snapshot"))
    served = {record["id"]: record for record in simulator.market_at(pipeline["now"])[:COINS_LIMIT]}
    import json

    stored = {row["coin_id"]: json.loads(row["record_json"]) for row in snapshot.to_pylist()}
    assert set(stored) == set(served)
    for coin_id, record in stored.items():
        assert record["current_price"] == served[coin_id]["current_price"]
        assert record["market_cap"] == served[coin_id]["market_cap"]


def test_silver_and_quarantine_account_for_every_bronze_record(pipeline):
    state, first, end = pipeline["state"], pipeline["first"], pipeline["end"]
    bronze = rows_per_hour(state[BRONZE.path], first, end)
    silver = rows_per_hour(state[SILVER.path], first, end)
    quarantine = rows_per_hour(state[QUARANTINE.path], first, end)
    assert all(bronze[h] == silver[h] + quarantine[h] for h in bronze)
    assert sum(silver.values()) > 0


def test_gold_covers_every_hour(pipeline):
    for table in GOLD_TABLES:
        counts = rows_per_hour(pipeline["state"][table.path], pipeline["first"], pipeline["end"])
        assert all(n > 0 for n in counts.values()), (table.path, counts)


def test_each_hour_of_a_range_run_has_its_own_row_count_and_the_newest_the_preview(pipeline):
    """Dagster copies a result's metadata to every hour of a range run: what differs per hour
    (rows) or is large (the preview, charts) is put on its hour, so a year's run stays small."""
    first, last = pipeline["first"], pipeline["now"] - HOUR  # the three-hour range run
    with DagsterInstance.from_config(str(pipeline["home"])) as instance:
        for table in (BRONZE, SILVER, QUARANTINE, *GOLD_TABLES):
            counted = rows_per_hour(pipeline["state"][table.path], first, pipeline["end"])
            expected = {hour_label(first + i * HOUR): counted[hour_label(first + i * HOUR)] for i in range(3)}
            records = instance.fetch_materializations(
                AssetRecordsFilter(table.asset_key, asset_partitions=[partition_key(h) for h in (first, last)]), 50
            ).records
            by_hour = {
                record.asset_materialization.partition: record.asset_materialization.metadata for record in records
            }
            assert set(by_hour) == {partition_key(first), partition_key(last)}, table.path
            for hour in (first, last):
                metadata = by_hour[partition_key(hour)]
                assert metadata["dagster/row_count"].value == expected[hour_label(hour)], (table.path, hour)
                assert metadata["rows_in_window"].value == sum(expected.values()) or table in GOLD_TABLES
            assert "preview" in by_hour[partition_key(last)] and "preview" not in by_hour[partition_key(first)]
            spec = next(spec for spec in defs.resolve_all_asset_specs() if spec.key == table.asset_key)
            names = [column.name for column in spec.metadata["dagster/column_schema"].columns]
            assert names == table.arrow_schema.names, table.path


@pytest.mark.parametrize(("cap", "counted"), [(3, True), (2, False)])
def test_hours_get_their_own_row_counts_only_in_runs_up_to_the_cap(monkeypatch, tmp_path, cap, counted):
    """Dagster's per-hour metadata costs the square of the hours (120 s for Gold at a year)."""
    monkeypatch.setattr(common, "ROW_COUNT_HOURS", cap)
    lakehouse = LakehouseResource(root=str(tmp_path))
    last = current_hour() - HOUR
    hours = [last - 2 * HOUR, last - HOUR, last]

    @asset(key=SILVER.asset_key, partitions_def=hourly_partitions, backfill_policy=common.BACKFILL_POLICY)
    def probe(context) -> MaterializeResult:
        rows = {hour_label(hour): i + 1 for i, hour in enumerate(hours)}
        return MaterializeResult(metadata=common.table_metadata(context, SILVER, lakehouse, 0, rows, {}))

    tags = dict(zip(RANGE_TAGS, [partition_key(hours[0]), partition_key(last)]))
    with DagsterInstance.ephemeral() as instance:
        assert materialize_in_process([probe], instance=instance, tags=tags).success
        records = instance.fetch_materializations(SILVER.asset_key, limit=10).records
    counts = {
        r.asset_materialization.partition: r.asset_materialization.metadata.get("dagster/row_count") for r in records
    }
    assert set(counts) == {partition_key(hour) for hour in hours}
    if counted:
        assert {key: value.value for key, value in counts.items()} == {
            partition_key(h): i + 1 for i, h in enumerate(hours)
        }
    else:
        assert set(counts.values()) == {None}
    assert all(r.asset_materialization.metadata["rows_in_window"].value == 6 for r in records)


def test_the_warehouse_holds_exactly_the_lakehouse_rows(pipeline):
    warehouse = WarehouseResource(odbc_connection_string=pipeline["env"]["CRYPTO_WAREHOUSE_ODBC"])
    counts = warehouse.window_counts(pipeline["first"], pipeline["end"])
    state = pipeline["state"]
    assert counts["fact_market_snapshot"] == len(state[SILVER.path])
    for table in GOLD_TABLES:
        assert counts[table.name.replace("gold_", "fact_")] == len(state[table.path])
    assert not any(warehouse.orphan_counts(pipeline["first"], pipeline["end"]).values())


def test_a_rerun_changes_nothing_and_calls_no_api(pipeline, simulator):
    env, lake = pipeline["env"], pipeline["lake"]
    warehouse = WarehouseResource(odbc_connection_string=env["CRYPTO_WAREHOUSE_ODBC"])
    warehouse_before = dump(warehouse)
    requests_before = len(simulator.requests)
    # the history hours and the snapshot hour again, in one run: every capture is re-used
    materialize(env, "--partition-range", f"{partition_key(pipeline['first'])}...{partition_key(pipeline['now'])}")
    assert len(simulator.requests) == requests_before, "captured hours must be re-used, not fetched again"
    after = lake_state(lake, pipeline["first"], pipeline["end"])
    for path, table in pipeline["state"].items():
        assert after[path].equals(table), path
    assert dump(warehouse) == warehouse_before


def test_the_same_hours_load_into_postgresql(pipeline, postgres_odbc):
    env = {**pipeline["env"], "CRYPTO_WAREHOUSE_ODBC": postgres_odbc}
    materialize(
        env,
        "--partition-range",
        f"{partition_key(pipeline['first'])}...{partition_key(pipeline['now'])}",
        select="key:warehouse/*",
    )
    sqlite = WarehouseResource(odbc_connection_string=pipeline["env"]["CRYPTO_WAREHOUSE_ODBC"])
    postgres = WarehouseResource(odbc_connection_string=postgres_odbc)
    assert postgres.window_counts(pipeline["first"], pipeline["end"]) == sqlite.window_counts(
        pipeline["first"], pipeline["end"]
    )
    assert not any(postgres.orphan_counts(pipeline["first"], pipeline["end"]).values())


def test_one_gold_table_materialises_alone(pipeline):
    """The Gold tables are one step (one read of Silver), yet each is its own asset: selecting one
    rewrites that table, with the same rows, and leaves the other three at their versions."""
    lake = pipeline["lake"]
    before = {table.path: lake.table_version(table) for table in GOLD_TABLES}
    trends = next(table for table in GOLD_TABLES if table.name == "gold_market_trends")
    materialize(
        pipeline["env"], "--partition", partition_key(pipeline["now"]), select=trends.asset_key.to_user_string()
    )
    after = {table.path: lake.table_version(table) for table in GOLD_TABLES}
    assert {path for path in after if after[path] != before[path]} == {trends.path}
    now = pipeline["now"]
    rewritten = lake_state(lake, now, now + HOUR)[trends.path]
    assert len(rewritten) and rewritten.equals(pipeline["state"][trends.path].filter(pc.field("ingest_hour") >= now))
