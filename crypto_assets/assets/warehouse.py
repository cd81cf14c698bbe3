"""Warehouse: the SQL star schema, loaded per hour window in one transaction.

One step loads every dimension and fact table of the window together, so a reader never sees
facts of an hour without their dimensions, and a failed load leaves the previous state. The
window is the run's hours plus the later hours whose Gold rows the run recomputed (see
``assets/gold.py``). Write, audit, publish: the blocking checks run inside the transaction, on
the loaded window, and a failure rolls it back. A long window is loaded a slice at a time.
"""

from collections import Counter
from dataclasses import dataclass

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    multi_asset,
)

from crypto_assets import star_schema as star
from crypto_assets.assets.checks import Check, audit, failed_blocking, publish_in_slices, specs
from crypto_assets.assets.common import BACKFILL_POLICY, FRESHNESS_POLICY, run_window
from crypto_assets.assets.gold import MAX_LOOKBACK_HOURS, affected_window
from crypto_assets.partitions import hourly_partitions, window_label
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.resources.warehouse import WarehouseResource, WindowLoad
from crypto_assets.star_schema import StarTable
from crypto_assets.tables import GOLD_TABLES, SILVER


def warehouse_key(table: StarTable) -> AssetKey:
    return AssetKey(["warehouse", table.name])


# The checks hang on the fact every hour has.
ANCHOR = warehouse_key(star.FACT_MARKET_SNAPSHOT)


def _deps(table: StarTable) -> list[AssetKey]:
    """A fact depends on the lakehouse table it is loaded from; the dimensions on Silver."""
    return [(table.source or SILVER).asset_key]


@dataclass(frozen=True)
class LoadedWindow:
    """The loaded, not yet committed window, and the lakehouse rows it must hold."""

    load: WindowLoad
    expected: dict[str, int]  # fact table -> rows its lakehouse table has for the window


def _fact_rows_match_lakehouse(window: LoadedWindow) -> tuple[bool, dict]:
    mismatched = {
        fact: {"lakehouse": n, "warehouse": window.load.counts.get(fact)}
        for fact, n in window.expected.items()
        if window.load.counts.get(fact) != n
    }
    return not mismatched, {"mismatched": MetadataValue.json(mismatched)}


def _no_orphan_keys(window: LoadedWindow) -> tuple[bool, dict]:
    orphans = {table: n for table, n in window.load.orphans.items() if n}
    return not orphans, {"orphans": MetadataValue.json(orphans)}


CHECKS = (
    Check(
        "fact_rows_match_lakehouse",
        "Every fact table holds exactly its Silver/Gold table's rows for the window.",
        _fact_rows_match_lakehouse,
        blocking=True,
    ),
    Check(
        "no_orphan_keys",
        "Every fact row's coin_key and time_key exist in the dimensions.",
        _no_orphan_keys,
        blocking=True,
    ),
)


@multi_asset(
    specs=[
        AssetSpec(
            warehouse_key(table),
            deps=_deps(table),
            group_name="warehouse",
            kinds={"sql", "odbc"},
            description=f"Star schema table {table.name}: {table.description}",
            metadata={
                "dagster/column_schema": TableSchema(
                    columns=[TableColumn(c.name, c.kind, description=c.description) for c in table.columns]
                )
            },
            freshness_policy=FRESHNESS_POLICY,
        )
        for table in star.STAR_TABLES
    ],
    check_specs=specs(ANCHOR, CHECKS),
    partitions_def=hourly_partitions,
    backfill_policy=BACKFILL_POLICY,
    can_subset=False,
)
def warehouse_star_schema(context: AssetExecutionContext, lakehouse: LakehouseResource, warehouse: WarehouseResource):
    start, run_end = run_window(context, lakehouse)
    _, end = affected_window(lakehouse, start, run_end, MAX_LOOKBACK_HOURS)

    def plan_and_commit(slice_start, slice_end):
        read, results = {}, []

        def read_lakehouse():  # called under the warehouse's lock: the freshest lakehouse state
            read["silver"] = lakehouse.read_window_arrow(SILVER, slice_start, slice_end)
            read["gold"] = {
                table.name: lakehouse.read_window_arrow(table, slice_start, slice_end) for table in GOLD_TABLES
            }
            return read["silver"], read["gold"]

        def accept(load: WindowLoad) -> bool:
            sizes = {SILVER.name: len(read["silver"]), **{name: len(rows) for name, rows in read["gold"].items()}}
            expected = {fact.name: sizes[fact.source_table.name] for fact in star.FACTS}
            results[:] = audit(ANCHOR, CHECKS, LoadedWindow(load, expected))
            return not failed_blocking(results)

        load = warehouse.load_fresh_window(slice_start, slice_end, read_lakehouse, accept)
        return load, results, load if load.committed else None

    written: Counter[str] = Counter()
    counts: Counter[str] = Counter()

    def on_committed(label, load, _):
        written.update(load.written)
        counts.update(load.counts)
        context.log.info("%s: loaded %s", label, load.written)

    results = yield from publish_in_slices(
        "warehouse", lakehouse.slices(SILVER, start, end), plan_and_commit, on_committed
    )
    for table in star.STAR_TABLES:
        yield MaterializeResult(
            asset_key=warehouse_key(table),
            metadata={
                "rows_written": written.get(table.name, 0),
                "rows_in_window": counts.get(table.name, written.get(table.name, 0)),
                "dialect": warehouse.sql_dialect().name,
                "hours_loaded": window_label(start, end),
            },
        )
    yield from results
