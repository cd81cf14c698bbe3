"""Gold: business tables over Silver, per hour window, declared as data (``GOLD``).

The overview and distribution read just the window; volatility and trends look back over
earlier Silver hours, declared with a ``TimeWindowPartitionMapping`` so the graph shows it.
Because of the lookback the tables must not depend on the order hours were materialised in:
when Silver hours [A, B) change (a late hour, a refetch), the Gold hours that read them —
up to B + lookback, as far as Silver exists — are recomputed in the same run
(``affected_window``). Write, audit, publish: each table's blocking checks run on the staged
rows before its commit.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa
from dagster import AssetDep, AssetExecutionContext, MaterializeResult, TimeWindowPartitionMapping, asset
from pyspark.sql import DataFrame

from crypto_assets import charts, crashpoints
from crypto_assets.assets.checks import Check, audit, failed_blocking, publish_in_slices, specs
from crypto_assets.assets.common import (
    BACKFILL_POLICY,
    FRESHNESS_POLICY,
    merged_rows_per_hour,
    preview,
    run_window,
    table_definition_metadata,
    table_metadata,
)
from crypto_assets.partitions import HOUR, hour_label, hourly_partitions
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.resources.spark import SparkResource
from crypto_assets.tables import GOLD_DISTRIBUTION, GOLD_OVERVIEW, GOLD_TRENDS, GOLD_VOLATILITY, SILVER, LakeTable
from crypto_assets.transforms import gold as transforms

# Distribution shares are sums of floats: equal to 1 within this.
SHARE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class GoldWindow:
    """A Gold table's staged rows and the Silver frame they were computed from."""

    rows: pa.Table
    silver: DataFrame


def shares_off(distribution: pa.Table) -> dict[str, float]:
    """Hours whose tiers' market-cap shares do not sum to 1 (hours without any cap are skipped)."""
    sums: dict = {}
    for row in distribution.to_pylist():
        sums[row["ingest_hour"]] = sums.get(row["ingest_hour"], 0.0) + (row["market_cap_share"] or 0.0)
    return {hour_label(hour): total for hour, total in sums.items() if total and abs(total - 1) > SHARE_TOLERANCE}


def _close(a, b) -> bool:
    """Equal within rounding, and both finite: a total that overflowed is no market total, so it
    is refused rather than published (inf would pass a relative tolerance)."""
    a, b = a or 0.0, b or 0.0
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= 1e-9 * max(1.0, abs(a))


def totals_mismatch(silver: pa.Table, overview: pa.Table) -> tuple[list[str], list[str]]:
    """Hours whose overview totals differ from Silver's own sums, and Silver hours missing from it."""
    sums = silver.group_by("ingest_hour").aggregate(
        [("coin_id", "count"), ("market_cap", "sum"), ("total_volume", "sum")]
    )
    expected = {row["ingest_hour"]: row for row in sums.to_pylist()}
    mismatched, seen = [], set()
    for row in overview.to_pylist():
        seen.add(row["ingest_hour"])
        want = expected.get(row["ingest_hour"])
        if (
            want is None
            or want["coin_id_count"] != row["coins_tracked"]
            or not _close(want["market_cap_sum"], row["total_market_cap"])
            or not _close(want["total_volume_sum"], row["total_volume"])
        ):
            mismatched.append(hour_label(row["ingest_hour"]))
    return mismatched, sorted(hour_label(hour) for hour in set(expected) - seen)


def _totals_match_silver(window: GoldWindow) -> tuple[bool, dict]:
    totals = window.silver.select("ingest_hour", "coin_id", "market_cap", "total_volume").toArrow()
    mismatched, missing = totals_mismatch(totals, window.rows)
    return not mismatched and not missing, {"mismatched_hours": mismatched, "hours_missing": missing}


def _shares_sum_to_one(window: GoldWindow) -> tuple[bool, dict]:
    off = shares_off(window.rows)
    return not off, {"hours_off": {hour: round(total, 12) for hour, total in off.items()}}


@dataclass(frozen=True)
class GoldTable:
    """One Gold table: how it is computed from Silver, how far back it reads, what checks it."""

    table: LakeTable
    transform: Callable[[DataFrame, datetime, datetime], DataFrame]  # Silver with lookback, window -> rows
    lookback_hours: int = 0
    checks: tuple[Check[GoldWindow], ...] = ()
    chart: Callable[[pa.Table], dict] | None = field(default=None)


GOLD = (
    GoldTable(
        GOLD_OVERVIEW,
        lambda silver, start, end: transforms.market_overview(silver),
        checks=(
            Check(
                "totals_match_silver",
                "Coins, market cap and volume equal Silver's sums per hour.",
                _totals_match_silver,
                blocking=True,
            ),
        ),
    ),
    GoldTable(
        GOLD_DISTRIBUTION,
        lambda silver, start, end: transforms.market_distribution(silver),
        checks=(
            Check(
                "shares_sum_to_one",
                "Market-cap shares of the tiers sum to 1 in every hour with a market cap.",
                _shares_sum_to_one,
                blocking=True,
            ),
        ),
        chart=lambda rows: charts.chart_metadata(charts.distribution_chart(rows), "market distribution"),
    ),
    GoldTable(GOLD_VOLATILITY, transforms.price_volatility, transforms.VOLATILITY_LOOKBACK_HOURS),
    GoldTable(
        GOLD_TRENDS,
        transforms.market_trends,
        transforms.TRENDS_LOOKBACK_HOURS,
        chart=lambda rows: charts.chart_metadata(charts.movers_chart(rows), "top movers"),
    ),
)
MAX_LOOKBACK_HOURS = max(gold.lookback_hours for gold in GOLD)


def affected_window(lakehouse: LakehouseResource, start: datetime, end: datetime, lookback_hours: int):
    """The hours whose rows read Silver hours [start, end) with this lookback: [start, end)
    itself and the later hours up to ``end + lookback`` that Silver has (newest one included)."""
    if not lookback_hours:
        return start, end
    newest = lakehouse.last_hour(SILVER, end, end + lookback_hours * HOUR)
    return start, newest + HOUR if newest is not None else end


def _materialize(context: AssetExecutionContext, spark: SparkResource, lakehouse: LakehouseResource, gold: GoldTable):
    start, end = run_window(context, lakehouse)
    write_start, write_end = affected_window(lakehouse, start, end, gold.lookback_hours)

    def plan_and_commit(slice_start, slice_end):
        pin = lakehouse.pin(gold.table)
        silver = lakehouse.read_window(spark.spark_session, SILVER, slice_start - gold.lookback_hours * HOUR, slice_end)
        window = GoldWindow(gold.transform(silver, slice_start, slice_end).toArrow(), silver)
        results = audit(gold.table.asset_key, gold.checks, window)
        if failed_blocking(results):
            return window, results, None
        written = lakehouse.write_window(gold.table, window.rows, slice_start, slice_end, context.run.run_id, base=pin)
        crashpoints.reached("gold.committed")
        return window, results, written

    writes: list = []
    chart_rows: list[pa.Table] = []

    def on_committed(label, window, written):
        writes.append(written)
        chart_rows[:] = [window.rows]  # the charts and the preview show the newest slice
        context.log.info("%s: %d rows", label, written.rows)

    results = yield from publish_in_slices(
        gold.table.path, lakehouse.slices(SILVER, write_start, write_end), plan_and_commit, on_committed
    )
    later = int((write_end - end) / HOUR)
    if later:
        context.log.info("%s: %d later hours recomputed (they read the hours of this run)", gold.table.path, later)
    newest = {"preview": preview(chart_rows[0]), **(gold.chart(chart_rows[0]) if gold.chart else {})}
    metadata = table_metadata(context, gold.table, lakehouse, writes[-1].version, merged_rows_per_hour(writes), newest)
    metadata.update(later_hours_recomputed=later, slices=len(writes))
    yield MaterializeResult(asset_key=gold.table.asset_key, metadata=metadata)
    yield from results


def _gold_asset(gold: GoldTable):
    silver_dep = AssetDep(
        SILVER.asset_key,
        partition_mapping=TimeWindowPartitionMapping(
            start_offset=-gold.lookback_hours, allow_nonexistent_upstream_partitions=True
        ),
    )

    @asset(
        name=gold.table.name,
        key_prefix=[gold.table.schema_name],
        description=gold.table.description,
        metadata=table_definition_metadata(gold.table),
        deps=[silver_dep],
        group_name="gold",
        kinds={"spark", "deltalake"},
        partitions_def=hourly_partitions,
        backfill_policy=BACKFILL_POLICY,
        check_specs=specs(gold.table.asset_key, gold.checks),
        freshness_policy=FRESHNESS_POLICY,
    )
    def gold_asset(context: AssetExecutionContext, spark: SparkResource, lakehouse: LakehouseResource):
        yield from _materialize(context, spark, lakehouse, gold)

    return gold_asset


gold_market_overview, gold_market_distribution, gold_price_volatility, gold_market_trends = map(_gold_asset, GOLD)
