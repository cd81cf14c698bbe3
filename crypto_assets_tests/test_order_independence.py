"""The tables do not depend on the order hours were materialised in: hours filled one by one in a
shuffled order (late hours, out-of-order backfills) give exactly what one in-order run over the
same hours gives — Gold's trailing windows included, and the warehouse built from them. The
in-order run goes one-hour slices at a time (CRYPTO_SLICE_HOURS=1), as a year-long backfill goes
a week at a time: slicing must not change a row either."""

from __future__ import annotations

from conftest import settle_hour
from support import lake_content, materialize, pipeline_env, star_content

from crypto_assets.partitions import HOUR, current_hour, hour_label, partition_key
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.tables import BRONZE, GOLD_TABLES, SILVER

COINS = 20
SHUFFLED = (2, 0, 3, 1)  # hour offsets from the first hour, in the order they are materialised


def test_hours_in_a_shuffled_order_give_the_tables_of_one_in_order_run(simulator, tmp_path):
    settle_hour(margin_seconds=600)  # one universe (today's top coins) for every run
    first = current_hour() - len(SHUFFLED) * HOUR
    end = first + len(SHUFFLED) * HOUR

    def env(name: str, **extra: str) -> dict[str, str]:
        odbc = f"DRIVER={{SQLite3}};Database={tmp_path / f'{name}.sqlite'};BigInt=1"
        return pipeline_env(simulator.base_url, tmp_path / f"home-{name}", tmp_path / f"lake-{name}", odbc, COINS, **extra)

    in_order, shuffled = env("in-order", CRYPTO_SLICE_HOURS="1"), env("shuffled")
    run = materialize(in_order, "--partition-range", f"{partition_key(first)}...{partition_key(end - HOUR)}")
    assert f"Silver {hour_label(end - HOUR)}: " in run.stdout + run.stderr  # a slice of its own
    for offset in SHUFFLED:
        materialize(shuffled, "--partition", partition_key(first + offset * HOUR))

    expected = lake_content(LakehouseResource(root=in_order["CRYPTO_LAKE_ROOT"]), first, end)
    got = lake_content(LakehouseResource(root=shuffled["CRYPTO_LAKE_ROOT"]), first, end)
    assert all(expected[table.path] for table in (BRONZE, SILVER, *GOLD_TABLES))
    for table, rows in expected.items():
        assert got[table] == rows, table
    assert star_content(shuffled["CRYPTO_WAREHOUSE_ODBC"]) == star_content(in_order["CRYPTO_WAREHOUSE_ODBC"])
