"""The tables do not depend on the order hours were materialised in: hours filled one by one in a
shuffled order (late hours, out-of-order backfills) give exactly what one in-order run over the
same hours gives — Gold's trailing windows included, and the warehouse built from them. The
in-order reference run goes one-hour slices at a time (CRYPTO_SLICE_HOURS=1), as a year-long
backfill goes a week at a time: slicing must not change a row either."""

from __future__ import annotations

from crypto_assets.partitions import HOUR, hour_label, partition_key, window_label
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.tables import BRONZE, GOLD_TABLES, SILVER
from support import REFERENCE_COINS, REFERENCE_HOURS, lake_content, materialize, pipeline_env, star_content

SHUFFLED = (1, 0, 2)  # hour offsets from the first hour, in the order they are materialised


def test_hours_in_a_shuffled_order_give_the_tables_of_one_in_order_run(still_simulator, reference_run, tmp_path):
    first, end = reference_run["window"]
    assert sorted(SHUFFLED) == list(range(REFERENCE_HOURS))
    run = reference_run["run"]
    assert f"Silver {hour_label(end - HOUR)}: " in run.stdout + run.stderr  # the reference went slice by slice

    odbc = f"DRIVER={{SQLite3}};Database={tmp_path / 'wh.sqlite'};BigInt=1"
    shuffled = pipeline_env(still_simulator.base_url, tmp_path / "home", tmp_path / "lake", odbc, REFERENCE_COINS)
    for offset in SHUFFLED:
        materialize(shuffled, "--partition", partition_key(first + offset * HOUR))

    expected = reference_run["lake"]
    got = lake_content(LakehouseResource(root=shuffled["CRYPTO_LAKE_ROOT"]), first, end)
    assert all(expected[table.path] for table in (BRONZE, SILVER, *GOLD_TABLES))
    for table, rows in expected.items():
        assert got[table] == rows, table
    assert star_content(odbc) == reference_run["warehouse"]


def test_slices_cut_by_rows_give_the_same_tables_and_gold_slices_hold_three_times_the_rows(
    still_simulator, reference_run, tmp_path
):
    """CRYPTO_SLICE_ROWS of one hour's coins: Silver and the warehouse go an hour at a time, Gold
    (SLICE_ROWS_FACTOR) the whole window at once, and not a row differs from the reference."""
    first, end = reference_run["window"]
    odbc = f"DRIVER={{SQLite3}};Database={tmp_path / 'wh.sqlite'};BigInt=1"
    env = pipeline_env(
        still_simulator.base_url, tmp_path / "home", tmp_path / "lake", odbc, REFERENCE_COINS,
        CRYPTO_SLICE_ROWS=str(REFERENCE_COINS),
    )  # fmt: skip
    run = materialize(env, "--partition-range", f"{partition_key(first)}...{partition_key(end - HOUR)}")
    log = run.stdout + run.stderr
    hours = [first + offset * HOUR for offset in range(REFERENCE_HOURS)]
    assert all(f"Silver {hour_label(hour)}: " in log for hour in hours)
    assert f"Gold {window_label(first, end)}: " in log
    assert not any(f"Gold {hour_label(hour)}: " in log for hour in hours)

    got = lake_content(LakehouseResource(root=env["CRYPTO_LAKE_ROOT"]), first, end)
    for table, rows in reference_run["lake"].items():
        assert got[table] == rows, table
    assert star_content(odbc) == reference_run["warehouse"]
