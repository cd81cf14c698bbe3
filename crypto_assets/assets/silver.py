"""Silver: Bronze's JSON typed and validated, one row per coin and hour; rejects kept with a reason.

Both tables are written for the same hour window by one step, so they always account for
Bronze together: Bronze rows = Silver rows + quarantined rows, for every hour (a blocking check).
"""


import statistics
from collections import Counter

import pyarrow as pa

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    Config,
    MaterializeResult,
    MetadataValue,
    TableColumnDep,
    TableColumnLineage,
    multi_asset,
)
from pydantic import Field

from crypto_assets.assets.common import BACKFILL_POLICY, run_window, table_metadata
from crypto_assets.partitions import hour_label, hourly_partitions
from crypto_assets.resources.lakehouse import LakehouseResource, rows_per_hour
from crypto_assets.resources.spark import SparkResource
from crypto_assets.tables import BRONZE, QUARANTINE, SILVER
from crypto_assets.transforms.silver import SilverRules, clean_markets


class SilverConfig(Config):
    high_volume_threshold: float = Field(
        default=SilverRules.high_volume_threshold,
        description="is_high_volume: 24 h total_volume at or above this, in the quote currency.",
    )
    stale_after_seconds: int = Field(
        default=SilverRules.stale_after_seconds,
        description="is_stale: last_updated older than the capture by more than this.",
    )
    max_quarantine_ratio: float = Field(
        default=0.05, description="The quarantine_ratio check warns above this share of an hour's records."
    )


# USD stablecoins: in a USD snapshot their median price sits at 1. Far from it, the data is
# in another currency (a recorded "usd" file held EUR prices) or the market is in crisis;
# either way a person should look.
USD_STABLECOINS = ("tether", "usd-coin", "dai", "first-digital-usd", "true-usd", "paypal-usd", "usds")
PEG_TOLERANCE = 0.03


def stablecoin_peg_breaks(silver: pa.Table) -> dict[str, float]:
    """Hours whose USD stablecoins' median price is off 1 by more than PEG_TOLERANCE."""
    prices: dict[str, list[float]] = {}
    for row in silver.select(["ingest_hour", "coin_id", "vs_currency", "current_price"]).to_pylist():
        if row["vs_currency"] == "usd" and row["coin_id"] in USD_STABLECOINS and row["current_price"]:
            prices.setdefault(hour_label(row["ingest_hour"]), []).append(row["current_price"])
    medians = {hour: statistics.median(values) for hour, values in prices.items()}
    return {hour: median for hour, median in medians.items() if abs(median - 1) > PEG_TOLERANCE}


# Silver columns carried over from Bronze's own columns; every other one is parsed from record_json.
_BRONZE_COLUMNS = {"vs_currency", "source", "capture_id", "page", "position", "ingested_at", "ingest_hour", "ingest_date"}
COLUMN_LINEAGE = TableColumnLineage(
    deps_by_column={
        name: [TableColumnDep(asset_key=BRONZE.asset_key, column_name=name if name in _BRONZE_COLUMNS else "record_json")]
        for name in SILVER.arrow_schema.names
    }
)


def _check(name: str, description: str, blocking: bool = False) -> AssetCheckSpec:
    return AssetCheckSpec(name, asset=SILVER.asset_key, description=description, blocking=blocking)


@multi_asset(
    specs=[
        AssetSpec(SILVER.asset_key, description=SILVER.description, deps=[BRONZE.asset_key],
                  group_name="silver", kinds={"spark", "deltalake"}),
        AssetSpec(QUARANTINE.asset_key, description=QUARANTINE.description, deps=[BRONZE.asset_key],
                  group_name="silver", kinds={"spark", "deltalake"}),
    ],
    check_specs=[
        _check("accounts_for_bronze", "Silver + quarantine = Bronze, for every hour.", blocking=True),
        _check("unique_coin_hour", "One row per (coin_id, ingest_hour).", blocking=True),
        _check("keys_and_price_valid", "coin_id and ingest_hour not null, current_price > 0.", blocking=True),
        _check("quarantine_ratio", "Quarantined share of each hour's records under the configured threshold."),
        _check("quote_currency_plausible", "USD stablecoins priced near 1: the data is really in USD."),
    ],
    partitions_def=hourly_partitions,
    backfill_policy=BACKFILL_POLICY,
    can_subset=False,
)
def silver_market_snapshots(
    context: AssetExecutionContext, config: SilverConfig, spark: SparkResource, lakehouse: LakehouseResource
):
    start, end = run_window(context)
    session = spark.spark_session
    bronze = lakehouse.read_window(session, BRONZE, start, end)
    rules = SilverRules(high_volume_threshold=config.high_volume_threshold,
                        stale_after_seconds=config.stale_after_seconds)
    silver_df, quarantine_df = clean_markets(bronze, rules)
    silver = silver_df.toArrow()
    quarantine = quarantine_df.toArrow()
    run_id = context.run.run_id
    silver_written = lakehouse.write_window(SILVER, silver, start, end, run_id)
    quarantine_written = lakehouse.write_window(QUARANTINE, quarantine, start, end, run_id)

    bronze_hours = lakehouse.read_window_arrow(BRONZE, start, end, columns=["ingest_hour"])
    bronze_per_hour = rows_per_hour(bronze_hours, start, end)
    silver_per_hour = silver_written.rows_per_hour
    quarantine_per_hour = quarantine_written.rows_per_hour
    unaccounted = {
        hour: {"bronze": n, "silver": silver_per_hour[hour], "quarantine": quarantine_per_hour[hour]}
        for hour, n in bronze_per_hour.items()
        if n != silver_per_hour[hour] + quarantine_per_hour[hour]
    }
    keys = Counter(zip(silver.column("coin_id").to_pylist(), silver.column("ingest_hour").to_pylist()))
    repeated = sorted(f"{hour_label(hour)} {coin}" for (coin, hour), n in keys.items() if n > 1)
    invalid = sum(
        1 for coin, hour, price in zip(silver.column("coin_id").to_pylist(), silver.column("ingest_hour").to_pylist(),
                                       silver.column("current_price").to_pylist())
        if coin is None or hour is None or price is None or price <= 0
    )
    reasons = Counter(quarantine.column("reason").to_pylist())
    ratios = {
        hour: round(quarantine_per_hour[hour] / n, 4) for hour, n in bronze_per_hour.items() if n
    }
    too_many = {hour: ratio for hour, ratio in ratios.items() if ratio > config.max_quarantine_ratio}
    context.log.info(
        "Silver: %d Bronze records → %d rows, %d quarantined (%s)",
        sum(bronze_per_hour.values()), len(silver), len(quarantine), dict(reasons.most_common(5)),
    )
    yield MaterializeResult(
        asset_key=SILVER.asset_key,
        metadata={
            "bronze_records": sum(bronze_per_hour.values()),
            "high_volume_rows": sum(1 for flag in silver.column("is_high_volume").to_pylist() if flag),
            "stale_rows": sum(1 for flag in silver.column("is_stale").to_pylist() if flag),
            "dagster/column_lineage": COLUMN_LINEAGE,
            **table_metadata(SILVER, lakehouse, silver_written.version, silver_per_hour, silver),
        },
    )
    yield MaterializeResult(
        asset_key=QUARANTINE.asset_key,
        metadata={
            "top_reasons": MetadataValue.json(dict(reasons.most_common(10))),
            **table_metadata(QUARANTINE, lakehouse, quarantine_written.version, quarantine_per_hour, quarantine),
        },
    )
    yield AssetCheckResult(
        asset_key=SILVER.asset_key, check_name="accounts_for_bronze", passed=not unaccounted,
        metadata={"hours_not_accounted": MetadataValue.json(unaccounted)},
    )
    yield AssetCheckResult(
        asset_key=SILVER.asset_key, check_name="unique_coin_hour", passed=not repeated,
        metadata={"repeated": MetadataValue.json(repeated[:50]), "count": len(repeated)},
    )
    yield AssetCheckResult(
        asset_key=SILVER.asset_key, check_name="keys_and_price_valid", passed=invalid == 0,
        metadata={"invalid_rows": invalid},
    )
    peg_breaks = stablecoin_peg_breaks(silver)
    yield AssetCheckResult(
        asset_key=SILVER.asset_key, check_name="quote_currency_plausible", passed=not peg_breaks,
        severity=AssetCheckSeverity.WARN,
        metadata={"stablecoin_median_price_by_hour": MetadataValue.json(peg_breaks),
                  "tolerance": PEG_TOLERANCE},
    )
    yield AssetCheckResult(
        asset_key=SILVER.asset_key, check_name="quarantine_ratio", passed=not too_many,
        severity=AssetCheckSeverity.WARN,
        metadata={"threshold": config.max_quarantine_ratio, "ratio_per_hour": MetadataValue.json(ratios),
                  "top_reasons": MetadataValue.json(dict(reasons.most_common(5)))},
    )
