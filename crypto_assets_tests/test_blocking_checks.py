"""Write, audit, publish, through the real CLI: an hour whose every record is unusable (the API
served null prices) fails Silver's blocking check on the staged window, so nothing is committed —
every Delta table keeps its version, the warehouse its rows — and the check shows red with the
offending hour. Bronze keeps the capture: it is history, and a rerun after a fix re-uses it."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance

from crypto_assets.partitions import HOUR, current_hour, hour_label, partition_key
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.resources.warehouse import WarehouseResource
from crypto_assets.simulator import Simulator
from crypto_assets.tables import ALL_TABLES, BRONZE
from support import dump, materialize, pipeline_env

COINS = 20
pytestmark = pytest.mark.usefixtures("hour_settled")


def test_a_failed_blocking_check_commits_nothing_and_shows_the_hour(tmp_path):
    now = current_hour()
    odbc = f"DRIVER={{SQLite3}};Database={tmp_path / 'wh.sqlite'};BigInt=1"
    with Simulator(coins=60) as sim:
        env = pipeline_env(sim.base_url, tmp_path / "home", tmp_path / "lake", odbc, COINS)
        materialize(env, "--partition-range", f"{partition_key(now - 2 * HOUR)}...{partition_key(now - HOUR)}")
        lake = LakehouseResource(root=env["CRYPTO_LAKE_ROOT"])
        versions = {table.path: lake.table_version(table) for table in ALL_TABLES}
        warehouse = WarehouseResource(odbc_connection_string=odbc)
        warehouse_before = dump(warehouse)

        sim.inject("null_prices", times=99)
        failed = materialize(env, "--partition", partition_key(now), expect_success=False)
    assert failed.returncode != 0
    assert (
        "blocking check(s) hours_not_all_rejected failed on the staged window; nothing was committed"
        in failed.stdout + failed.stderr
    )

    after = {table.path: lake.table_version(table) for table in ALL_TABLES}
    assert after[BRONZE.path] == versions[BRONZE.path] + 1  # the capture is kept as history
    assert {path: v for path, v in after.items() if path != BRONZE.path} == {
        path: v for path, v in versions.items() if path != BRONZE.path
    }
    assert dump(warehouse) == warehouse_before

    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [run] = instance.get_runs(limit=1)
        evaluations = [
            record.event_log_entry.asset_check_evaluation
            for record in instance.get_records_for_run(run.run_id, limit=10000).records
            if record.event_log_entry.asset_check_evaluation
        ]
    [check] = [e for e in evaluations if e.check_name == "hours_not_all_rejected"]
    assert not check.passed and check.blocking
    assert check.metadata["hours_all_rejected"].value == {hour_label(now): {"non_positive_price": COINS}}
    assert {e.check_name for e in evaluations if e.passed} >= {"accounts_for_bronze", "unique_coin_hour"}
