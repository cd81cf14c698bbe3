"""Write, audit, publish, through the real CLI: a blocking check that fails on the staged window
commits nothing for its table and nothing downstream, the run fails, the check shows red with
what it found, and every table keeps its previous version of the hour. One per layer that has
blocking checks (Silver, Gold, the warehouse), each made to fail by what real data or a real
database can do. Bronze keeps its capture: it is history, and a rerun after a fix re-uses it."""

from __future__ import annotations

import json
import shutil

import pyodbc
import pytest
import requests
from dagster import DagsterInstance

from crypto_assets import star_schema as star
from crypto_assets.partitions import HOUR, current_hour, hour_label, partition_key
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.resources.warehouse import WarehouseResource
from crypto_assets.simulator import Simulator
from crypto_assets.tables import ALL_TABLES, BRONZE, GOLD_OVERVIEW, GOLD_TABLES, SILVER
from support import dump, materialize, pipeline_env

COINS = 20
pytestmark = pytest.mark.usefixtures("hour_settled")


@pytest.fixture(scope="module")
def api():
    """The module's CoinGecko simulator; a test that injects a fault clears it."""
    with Simulator(coins=60) as sim:
        yield sim


@pytest.fixture(scope="module")
def baseline(api, tmp_path_factory):
    """Two past hours through the whole graph, once for the module; each test starts from a copy."""
    now = current_hour()
    root = tmp_path_factory.mktemp("baseline")
    odbc = f"DRIVER={{SQLite3}};Database={root / 'wh.sqlite'};BigInt=1"
    env = pipeline_env(api.base_url, root / "home", root / "lake", odbc, COINS)
    materialize(env, "--partition-range", f"{partition_key(now - 2 * HOUR)}...{partition_key(now - HOUR)}")
    return root


class Pipeline:
    """A copy of the baseline's lake and warehouse, with a fresh Dagster instance."""

    def __init__(self, baseline, tmp_path, base_url: str):
        shutil.copytree(baseline / "lake", tmp_path / "lake")
        shutil.copy(baseline / "wh.sqlite", tmp_path / "wh.sqlite")
        self.odbc = f"DRIVER={{SQLite3}};Database={tmp_path / 'wh.sqlite'};BigInt=1"
        self.env = pipeline_env(base_url, tmp_path / "home", tmp_path / "lake", self.odbc, COINS)
        self.lake = LakehouseResource(root=self.env["CRYPTO_LAKE_ROOT"])
        self.warehouse = WarehouseResource(odbc_connection_string=self.odbc)
        self.versions = self.table_versions()
        self.warehouse_rows = dump(self.warehouse)

    def table_versions(self) -> dict[str, int | None]:
        return {table.path: self.lake.table_version(table) for table in ALL_TABLES}

    def fail_hour(self, hour, refused: str, **extra: str) -> None:
        """Materialise ``hour``: the run must fail on blocking check ``refused``."""
        failed = materialize({**self.env, **extra}, "--partition", partition_key(hour), expect_success=False)
        assert failed.returncode != 0
        assert (
            f"blocking check(s) {refused} failed on the staged window; nothing was committed"
            in failed.stdout + failed.stderr
        )

    def committed_since(self) -> set[str]:
        """The tables whose Delta version moved since the copy was made."""
        return {path for path, version in self.table_versions().items() if version != self.versions[path]}

    def check(self, name: str):
        """The evaluation of check ``name`` in the newest run."""
        with DagsterInstance.from_config(self.env["DAGSTER_HOME"]) as instance:
            [run] = instance.get_runs(limit=1)
            records = instance.get_records_for_run(run.run_id, limit=10000).records
        [evaluation] = [
            r.event_log_entry.asset_check_evaluation
            for r in records
            if r.event_log_entry.asset_check_evaluation and r.event_log_entry.asset_check_evaluation.check_name == name
        ]
        return evaluation


@pytest.fixture
def pipeline(baseline, tmp_path, api) -> Pipeline:
    """A fresh copy of the baseline for each test, run against the module's simulator."""
    return Pipeline(baseline, tmp_path, api.base_url)


def test_silver_refusing_an_hour_of_unusable_records_commits_nothing(pipeline, api):
    """The API served null prices: every record is quarantined, so the hour would be empty."""
    now = current_hour()
    api.inject("null_prices", times=99)
    try:
        pipeline.fail_hour(now, "hours_not_all_rejected")
    finally:
        api.clear_faults()
    assert pipeline.committed_since() == {BRONZE.path}  # the capture is kept as history
    assert pipeline.table_versions()[BRONZE.path] == pipeline.versions[BRONZE.path] + 1
    assert dump(pipeline.warehouse) == pipeline.warehouse_rows

    check = pipeline.check("hours_not_all_rejected")
    assert not check.passed and check.blocking
    assert check.metadata["hours_all_rejected"].value == {hour_label(now): {"non_positive_price": COINS}}
    assert pipeline.check("accounts_for_bronze").passed and pipeline.check("unique_coin_hour").passed


def test_gold_refusing_an_overflowed_total_commits_no_gold_table_and_no_warehouse(pipeline, api, tmp_path):
    """Two market caps of 1e308 are finite, so Silver takes them, but their sum overflows: the
    overview's total is no market total, totals_match_silver refuses it, no Gold table of the
    hour is committed, and the warehouse, which reads every Gold table, does not run."""
    now = current_hour()
    records = requests.get(
        f"{api.base_url}/coins/markets", params={"vs_currency": "usd", "per_page": COINS}, timeout=10
    ).json()
    for record in records[:2]:
        record["market_cap"] = 1e308
    body = tmp_path / "markets.json"
    body.write_text(json.dumps(records))
    with Simulator(markets_file=body) as served:
        pipeline.fail_hour(now, "totals_match_silver", COINGECKO_BASE_URL=served.base_url)

    committed = pipeline.committed_since()
    # the four Gold tables are published together: none of this hour's is
    assert not committed & {table.path for table in GOLD_TABLES} and {BRONZE.path, SILVER.path} <= committed
    assert len(pipeline.lake.read_window_arrow(GOLD_OVERVIEW, now, now + HOUR)) == 0
    assert len(pipeline.lake.read_window_arrow(SILVER, now, now + HOUR)) == COINS
    assert dump(pipeline.warehouse) == pipeline.warehouse_rows

    check = pipeline.check("totals_match_silver")
    assert not check.passed and check.blocking
    assert check.metadata["mismatched_hours"].value == [hour_label(now)]


def test_the_warehouse_refusing_a_load_that_lost_rows_rolls_it_back(pipeline):
    """A trigger in the database drops every new fact_market_snapshot row (as a rule, a filter or
    another tool on the database could): the loaded window holds fewer rows than Silver, so
    fact_rows_match_lakehouse refuses it and the whole load is rolled back."""
    now = current_hour()
    fact = pipeline.warehouse.sql_dialect().table(pipeline.warehouse.schema_name, star.FACT_MARKET_SNAPSHOT.name)
    connection = pyodbc.connect(pipeline.odbc, autocommit=True)
    try:
        connection.execute(f"CREATE TRIGGER lose_rows BEFORE INSERT ON {fact} BEGIN SELECT RAISE(IGNORE); END")
    finally:
        connection.close()
    pipeline.fail_hour(now, "fact_rows_match_lakehouse")

    published = {BRONZE.path, SILVER.path, *(table.path for table in GOLD_TABLES)}
    assert published <= pipeline.committed_since()  # the lake passed its checks
    assert dump(pipeline.warehouse) == pipeline.warehouse_rows  # dimensions and facts alike

    check = pipeline.check("fact_rows_match_lakehouse")
    assert not check.passed and check.blocking
    assert check.metadata["mismatched"].value == {star.FACT_MARKET_SNAPSHOT.name: {"lakehouse": COINS, "warehouse": 0}}
