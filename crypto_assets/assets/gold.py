"""Gold: business tables over Silver, per hour window.

The overview and distribution read just the window; volatility and trends look back over
earlier Silver hours, declared with a ``TimeWindowPartitionMapping`` so the graph shows it.
"""


from datetime import timedelta

import pyarrow as pa

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    MaterializeResult,
    TimeWindowPartitionMapping,
    asset,
)

from crypto_assets import charts
from crypto_assets.assets.common import BACKFILL_POLICY, FRESHNESS_POLICY, run_window, table_metadata
from crypto_assets.partitions import hour_label, hourly_partitions
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.resources.spark import SparkResource
from crypto_assets.tables import GOLD_DISTRIBUTION, GOLD_OVERVIEW, GOLD_TRENDS, GOLD_VOLATILITY, SILVER, LakeTable
from crypto_assets.transforms import gold as transforms

# Distribution shares are sums of floats: equal to 1 within this.
SHARE_TOLERANCE = 1e-9


def _silver_dep(lookback_hours: int) -> AssetDep:
    return AssetDep(
        SILVER.asset_key,
        partition_mapping=TimeWindowPartitionMapping(
            start_offset=-lookback_hours, allow_nonexistent_upstream_partitions=True
        ),
    )


def _gold_asset(table: LakeTable, lookback_hours: int, check_specs=()):
    return asset(
        key=table.asset_key,
        description=table.description,
        deps=[_silver_dep(lookback_hours)],
        group_name="gold",
        kinds={"spark", "deltalake"},
        partitions_def=hourly_partitions,
        backfill_policy=BACKFILL_POLICY,
        check_specs=list(check_specs),
        freshness_policy=FRESHNESS_POLICY,
    )


def _build(context: AssetExecutionContext, spark: SparkResource, lakehouse: LakehouseResource, table: LakeTable,
           transform, lookback_hours: int = 0):
    """Read Silver for the run's window (and its lookback), transform, write ``table``'s window.

    Returns the Silver frame, the rows written and the table's metadata.
    """
    start, end = run_window(context)
    silver = lakehouse.read_window(spark.spark_session, SILVER, start - timedelta(hours=lookback_hours), end)
    # Windowed transforms take the window to cut their lookback off; the others use all rows.
    frame = transform(silver, start, end) if lookback_hours else transform(silver)
    data = frame.toArrow()
    written = lakehouse.write_window(table, data, start, end, context.run.run_id)
    context.log.info("%s: %d rows for %d hours", table.path, written.rows, len(written.rows_per_hour))
    return silver, data, table_metadata(table, lakehouse, written.version, written.rows_per_hour, data)


def shares_off(distribution: pa.Table) -> dict[str, float]:
    """Hours whose tiers' market-cap shares do not sum to 1 (hours without any cap are skipped)."""
    sums: dict = {}
    for row in distribution.to_pylist():
        sums[row["ingest_hour"]] = sums.get(row["ingest_hour"], 0.0) + (row["market_cap_share"] or 0.0)
    return {hour_label(hour): total for hour, total in sums.items() if total and abs(total - 1) > SHARE_TOLERANCE}


def _close(a, b) -> bool:
    return abs((a or 0.0) - (b or 0.0)) <= 1e-9 * max(1.0, abs(a or 0.0))


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


@_gold_asset(
    GOLD_OVERVIEW, 0,
    check_specs=[AssetCheckSpec("totals_match_silver", asset=GOLD_OVERVIEW.asset_key, blocking=True,
                                description="Coins, market cap and volume equal Silver's sums per hour.")],
)
def gold_market_overview(context: AssetExecutionContext, spark: SparkResource, lakehouse: LakehouseResource):
    silver, data, metadata = _build(context, spark, lakehouse, GOLD_OVERVIEW, transforms.market_overview)
    totals = silver.select("ingest_hour", "coin_id", "market_cap", "total_volume").toArrow()
    mismatched, missing = totals_mismatch(totals, data)
    return MaterializeResult(
        metadata=metadata,
        check_results=[AssetCheckResult(
            check_name="totals_match_silver", passed=not mismatched and not missing,
            metadata={"mismatched_hours": mismatched, "hours_missing": missing},
        )],
    )


@_gold_asset(
    GOLD_DISTRIBUTION, 0,
    check_specs=[AssetCheckSpec("shares_sum_to_one", asset=GOLD_DISTRIBUTION.asset_key, blocking=True,
                                description="Market-cap shares of the tiers sum to 1 in every hour with a market cap.")],
)
def gold_market_distribution(context: AssetExecutionContext, spark: SparkResource, lakehouse: LakehouseResource):
    _, data, metadata = _build(context, spark, lakehouse, GOLD_DISTRIBUTION, transforms.market_distribution)
    metadata.update(charts.chart_metadata(charts.distribution_chart(data), "market distribution"))
    off = shares_off(data)
    return MaterializeResult(
        metadata=metadata,
        check_results=[AssetCheckResult(check_name="shares_sum_to_one", passed=not off,
                                        metadata={"hours_off": {k: round(v, 12) for k, v in off.items()}})],
    )


@_gold_asset(GOLD_VOLATILITY, transforms.VOLATILITY_LOOKBACK_HOURS)
def gold_price_volatility(context: AssetExecutionContext, spark: SparkResource, lakehouse: LakehouseResource):
    _, _, metadata = _build(context, spark, lakehouse, GOLD_VOLATILITY, transforms.price_volatility,
                            transforms.VOLATILITY_LOOKBACK_HOURS)
    return MaterializeResult(metadata=metadata)


@_gold_asset(GOLD_TRENDS, transforms.TRENDS_LOOKBACK_HOURS)
def gold_market_trends(context: AssetExecutionContext, spark: SparkResource, lakehouse: LakehouseResource):
    _, data, metadata = _build(context, spark, lakehouse, GOLD_TRENDS, transforms.market_trends,
                               transforms.TRENDS_LOOKBACK_HOURS)
    metadata.update(charts.chart_metadata(charts.movers_chart(data), "top movers"))
    return MaterializeResult(metadata=metadata)
