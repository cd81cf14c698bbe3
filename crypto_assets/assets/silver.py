"""Silver: Bronze's JSON typed and validated, one row per coin and hour; rejects kept with a reason.

Both tables are written for the same hour window by one step, so they always account for
Bronze together: Bronze rows = Silver + quarantined + superseded rows, for every hour (a blocking
check). Write, audit, publish: the window is computed and checked first; only if every blocking
check passes are Silver and the quarantine committed, each on the snapshot it was planned on.
"""

import statistics
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
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

from crypto_assets import crashpoints
from crypto_assets.assets.checks import Check, audit, failed_blocking, publish_in_slices, specs
from crypto_assets.assets.common import (
    BACKFILL_POLICY,
    merged_rows_per_hour,
    preview,
    run_window,
    table_definition_metadata,
    table_metadata,
)
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
    stablecoins = silver.filter(pc.is_in(silver.column("coin_id"), pa.array(USD_STABLECOINS)))
    for row in stablecoins.select(["ingest_hour", "coin_id", "vs_currency", "current_price"]).to_pylist():
        if row["vs_currency"] == "usd" and row["coin_id"] in USD_STABLECOINS and row["current_price"]:
            prices.setdefault(hour_label(row["ingest_hour"]), []).append(row["current_price"])
    medians = {hour: statistics.median(values) for hour, values in prices.items()}
    return {hour: median for hour, median in medians.items() if abs(median - 1) > PEG_TOLERANCE}


# Silver columns carried over from Bronze's own columns; every other one is parsed from record_json.
_BRONZE_COLUMNS = {
    "coin_id",
    "vs_currency",
    "source",
    "capture_id",
    "page",
    "position",
    "ingested_at",
    "ingest_hour",
    "ingest_date",
}
COLUMN_LINEAGE = TableColumnLineage(
    deps_by_column={
        name: [
            TableColumnDep(asset_key=BRONZE.asset_key, column_name=name if name in _BRONZE_COLUMNS else "record_json")
        ]
        for name in SILVER.arrow_schema.names
    }
)


@dataclass(frozen=True)
class SilverWindow:
    """The staged window: what would be committed, and the Bronze counts it must account for."""

    silver: pa.Table
    quarantine: pa.Table
    bronze_per_hour: dict[str, int]
    superseded_per_hour: dict[str, int]
    max_quarantine_ratio: float

    def per_hour(self, table: pa.Table) -> dict[str, int]:
        counts = dict.fromkeys(self.bronze_per_hour, 0)
        grouped = table.group_by("ingest_hour").aggregate([([], "count_all")])
        for hour, n in zip(grouped.column("ingest_hour").to_pylist(), grouped.column("count_all").to_pylist()):
            counts[hour_label(hour)] = n
        return counts

    @property
    def quarantine_ratios(self) -> dict[str, float]:
        quarantined = self.per_hour(self.quarantine)
        return {hour: round(quarantined[hour] / n, 4) for hour, n in self.bronze_per_hour.items() if n}


def _accounts_for_bronze(window: SilverWindow) -> tuple[bool, dict]:
    silver, quarantine = window.per_hour(window.silver), window.per_hour(window.quarantine)
    unaccounted = {
        hour: {"bronze": n, "silver": silver[hour], "quarantine": quarantine[hour],
               "superseded": window.superseded_per_hour.get(hour, 0)}
        for hour, n in window.bronze_per_hour.items()
        if n != silver[hour] + quarantine[hour] + window.superseded_per_hour.get(hour, 0)
    }  # fmt: skip
    return not unaccounted, {
        "hours_not_accounted": MetadataValue.json(unaccounted),
        "superseded_per_hour": MetadataValue.json(window.superseded_per_hour),
    }


def _unique_coin_hour(window: SilverWindow) -> tuple[bool, dict]:
    keys = window.silver.group_by(["coin_id", "ingest_hour"]).aggregate([([], "count_all")])
    twice = keys.filter(pc.greater(keys.column("count_all"), 1))
    repeated = sorted(
        f"{hour_label(hour)} {coin}"
        for coin, hour in zip(twice.column("coin_id").to_pylist(), twice.column("ingest_hour").to_pylist())
    )
    return not repeated, {"repeated": MetadataValue.json(repeated[:50]), "count": len(repeated)}


def _keys_and_price_valid(window: SilverWindow) -> tuple[bool, dict]:
    silver = window.silver
    price = silver.column("current_price")
    bad = pc.or_kleene(
        pc.or_kleene(pc.is_null(silver.column("coin_id")), pc.is_null(silver.column("ingest_hour"))),
        pc.fill_null(pc.less_equal(price, 0), True),
    )
    invalid = silver.filter(bad)
    examples = [
        f"{hour_label(row['ingest_hour']) if row['ingest_hour'] else None} {row['coin_id']}: price {row['current_price']}"
        for row in invalid.slice(0, 20).select(["coin_id", "ingest_hour", "current_price"]).to_pylist()
    ]
    return not len(invalid), {"invalid_rows": len(invalid), "examples": MetadataValue.json(examples)}


def _hours_not_all_rejected(window: SilverWindow) -> tuple[bool, dict]:
    silver = window.per_hour(window.silver)
    reasons: dict[str, Counter] = {}
    for hour, reason in zip(
        window.quarantine.column("ingest_hour").to_pylist(), window.quarantine.column("reason").to_pylist()
    ):
        reasons.setdefault(hour_label(hour), Counter())[reason] += 1
    rejected = {hour: dict(counts.most_common(5)) for hour, counts in reasons.items() if not silver.get(hour)}
    return not rejected, {"hours_all_rejected": MetadataValue.json(rejected)}


def _quarantine_ratio(window: SilverWindow) -> tuple[bool, dict]:
    ratios = window.quarantine_ratios
    too_many = {hour: ratio for hour, ratio in ratios.items() if ratio > window.max_quarantine_ratio}
    reasons = Counter(window.quarantine.column("reason").to_pylist())
    return not too_many, {
        "threshold": window.max_quarantine_ratio,
        "ratio_per_hour": MetadataValue.json(ratios),
        "top_reasons": MetadataValue.json(dict(reasons.most_common(5))),
    }


def _quote_currency_plausible(window: SilverWindow) -> tuple[bool, dict]:
    breaks = stablecoin_peg_breaks(window.silver)
    return not breaks, {"stablecoin_median_price_by_hour": MetadataValue.json(breaks), "tolerance": PEG_TOLERANCE}


CHECKS = (
    Check(
        "accounts_for_bronze",
        "Silver + quarantine + superseded = Bronze, for every hour.",
        _accounts_for_bronze,
        blocking=True,
    ),
    Check("unique_coin_hour", "One row per (coin_id, ingest_hour).", _unique_coin_hour, blocking=True),
    Check(
        "keys_and_price_valid",
        "coin_id and ingest_hour not null, current_price > 0.",
        _keys_and_price_valid,
        blocking=True,
    ),
    Check(
        "hours_not_all_rejected",
        "No hour with Bronze records loses every one of them to quarantine (that is a broken API, not a market).",
        _hours_not_all_rejected,
        blocking=True,
    ),
    Check(
        "quarantine_ratio",
        "Quarantined share of each hour's records under the configured threshold.",
        _quarantine_ratio,
    ),
    Check(
        "quote_currency_plausible",
        "USD stablecoins priced near 1: the data is really in USD.",
        _quote_currency_plausible,
    ),
)


@multi_asset(
    specs=[
        AssetSpec(
            SILVER.asset_key,
            description=SILVER.description,
            metadata=table_definition_metadata(SILVER),
            deps=[BRONZE.asset_key],
            group_name="silver",
            kinds={"spark", "deltalake"},
        ),
        AssetSpec(
            QUARANTINE.asset_key,
            description=QUARANTINE.description,
            metadata=table_definition_metadata(QUARANTINE),
            deps=[BRONZE.asset_key],
            group_name="silver",
            kinds={"spark", "deltalake"},
        ),
    ],
    check_specs=specs(SILVER.asset_key, CHECKS),
    partitions_def=hourly_partitions,
    backfill_policy=BACKFILL_POLICY,
    can_subset=False,
)
def silver_market_snapshots(
    context: AssetExecutionContext, config: SilverConfig, spark: SparkResource, lakehouse: LakehouseResource
):
    start, end = run_window(context, lakehouse)
    run_id = context.run.run_id
    rules = SilverRules(
        high_volume_threshold=config.high_volume_threshold, stale_after_seconds=config.stale_after_seconds
    )

    def plan_and_commit(slice_start, slice_end):
        silver_pin, quarantine_pin = lakehouse.pin(SILVER), lakehouse.pin(QUARANTINE)
        bronze = lakehouse.read_window(spark.spark_session, BRONZE, slice_start, slice_end)
        silver, quarantine, superseded = clean_markets(bronze, rules)
        # Counted apart from Spark's pass, so the accounting check can catch a lost record.
        bronze_hours = lakehouse.read_window_arrow(BRONZE, slice_start, slice_end, columns=["ingest_hour"])
        window = SilverWindow(
            silver=silver,
            quarantine=quarantine,
            bronze_per_hour=rows_per_hour(bronze_hours, slice_start, slice_end),
            superseded_per_hour=rows_per_hour(superseded, slice_start, slice_end),
            max_quarantine_ratio=config.max_quarantine_ratio,
        )
        results = audit(SILVER.asset_key, CHECKS, window)
        if failed_blocking(results):
            return window, results, None
        silver_written = lakehouse.write_window(SILVER, window.silver, slice_start, slice_end, run_id, base=silver_pin)
        crashpoints.reached("silver.committed")
        quarantine_written = lakehouse.write_window(
            QUARANTINE, window.quarantine, slice_start, slice_end, run_id, base=quarantine_pin
        )
        crashpoints.reached("quarantine.committed")
        return window, results, (silver_written, quarantine_written)

    summary: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    writes: list = []
    previews: list[pa.Table] = []

    def on_committed(label, window, written):
        slice_reasons = Counter(window.quarantine.column("reason").to_pylist())
        reasons.update(slice_reasons)
        summary.update(
            bronze_records=sum(window.bronze_per_hour.values()),
            superseded_records=sum(window.superseded_per_hour.values()),
            high_volume_rows=pc.sum(window.silver.column("is_high_volume")).as_py() or 0,
            stale_rows=pc.sum(window.silver.column("is_stale")).as_py() or 0,
        )
        writes.append(written)
        previews[:] = previews or [window.silver.slice(0, 5), window.quarantine.slice(0, 5)]
        context.log.info(
            "%s: %d Bronze records → %d rows, %d quarantined (%s), %d superseded by a preferred capture",
            label,
            sum(window.bronze_per_hour.values()),
            len(window.silver),
            len(window.quarantine),
            dict(slice_reasons.most_common(5)),
            sum(window.superseded_per_hour.values()),
        )

    results = yield from publish_in_slices(
        "Silver", lakehouse.slices(BRONZE, start, end), plan_and_commit, on_committed
    )
    spark.done_with(context.selected_asset_keys)
    silver_writes, quarantine_writes = [w[0] for w in writes], [w[1] for w in writes]
    yield MaterializeResult(
        asset_key=SILVER.asset_key,
        metadata={
            **dict(summary),
            "slices": len(writes),
            "dagster/column_lineage": COLUMN_LINEAGE,
            **table_metadata(
                context,
                SILVER,
                lakehouse,
                silver_writes[-1].version,
                merged_rows_per_hour(silver_writes),
                {"preview": preview(previews[0])},
            ),
        },
    )
    yield MaterializeResult(
        asset_key=QUARANTINE.asset_key,
        metadata={
            "top_reasons": MetadataValue.json(dict(reasons.most_common(10))),
            **table_metadata(
                context,
                QUARANTINE,
                lakehouse,
                quarantine_writes[-1].version,
                merged_rows_per_hour(quarantine_writes),
                {"preview": preview(previews[1])},
            ),
        },
    )
    yield from results
