"""Warehouse: the SQL star schema, loaded per hour window in one transaction.

One step loads every dimension and fact table of the window together, so a reader never sees
facts of an hour without their dimensions, and a failed load leaves the previous state.
"""


from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from crypto_assets.assets.common import BACKFILL_POLICY, FRESHNESS_POLICY, run_window
from crypto_assets.partitions import hourly_partitions
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.resources.warehouse import WarehouseResource
from crypto_assets.tables import GOLD_TABLES, SILVER

# Each fact table and the lakehouse table it must match row for row in every window.
FACT_SOURCES = {
    "fact_market_snapshot": SILVER,
    **{table.name.replace("gold_", "fact_"): table for table in GOLD_TABLES},
}
STAR_TABLES = ("dim_coin", "dim_time", *FACT_SOURCES)
ANCHOR = AssetKey(["warehouse", "fact_market_snapshot"])


def warehouse_key(table: str) -> AssetKey:
    return AssetKey(["warehouse", table])


def _deps(table: str) -> list[AssetKey]:
    if table in FACT_SOURCES:
        return [FACT_SOURCES[table].asset_key]
    return [SILVER.asset_key]


@multi_asset(
    specs=[
        AssetSpec(warehouse_key(table), deps=_deps(table), group_name="warehouse", kinds={"sql", "odbc"},
                  description=f"Star schema table {table}, loaded per hour window.",
                  freshness_policy=FRESHNESS_POLICY)
        for table in STAR_TABLES
    ],
    check_specs=[
        AssetCheckSpec("fact_rows_match_lakehouse", asset=ANCHOR, blocking=True,
                       description="Every fact table holds exactly its Silver/Gold table's rows for the window."),
        AssetCheckSpec("no_orphan_keys", asset=ANCHOR, blocking=True,
                       description="Every fact row's coin_key and time_key exist in the dimensions."),
    ],
    partitions_def=hourly_partitions,
    backfill_policy=BACKFILL_POLICY,
    can_subset=False,
)
def warehouse_star_schema(context: AssetExecutionContext, lakehouse: LakehouseResource, warehouse: WarehouseResource):
    start, end = run_window(context)
    silver = lakehouse.read_window_arrow(SILVER, start, end)
    gold = {table.name: lakehouse.read_window_arrow(table, start, end) for table in GOLD_TABLES}
    written = warehouse.load_window(silver, gold, start, end)
    counts = warehouse.window_counts(start, end)
    expected = {fact: len(silver) if source is SILVER else len(gold[source.name]) for fact, source in FACT_SOURCES.items()}
    mismatched = {fact: {"lakehouse": n, "warehouse": counts.get(fact)} for fact, n in expected.items() if counts.get(fact) != n}
    orphans = {table: n for table, n in warehouse.orphan_counts(start, end).items() if n}
    context.log.info("Warehouse: loaded %s", written)
    for table in STAR_TABLES:
        yield MaterializeResult(
            asset_key=warehouse_key(table),
            metadata={
                "rows_written": written.get(table, 0),
                "dagster/row_count": counts.get(table, written.get(table, 0)),
                "dialect": warehouse.sql_dialect().name,
            },
        )
    yield AssetCheckResult(asset_key=ANCHOR, check_name="fact_rows_match_lakehouse", passed=not mismatched,
                           metadata={"mismatched": MetadataValue.json(mismatched)})
    yield AssetCheckResult(asset_key=ANCHOR, check_name="no_orphan_keys", passed=not orphans,
                           metadata={"orphans": MetadataValue.json(orphans)})
