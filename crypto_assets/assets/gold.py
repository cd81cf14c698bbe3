"""Gold: business tables over Silver, per hour window, declared as data (``GOLD``).

The overview and distribution read just the window; volatility and trends look back over
earlier Silver hours (the step's ``TimeWindowPartitionMapping`` shows the longest in the graph).
Because of the lookback the tables must not depend on the order hours were materialised in:
when Silver hours [A, B) change (a late hour, a refetch), the Gold hours that read them —
up to B + lookback, as far as Silver exists — are recomputed in the same run
(``affected_window``). One step computes every selected table (``gold_tables``): per slice, one
Silver frame and the four queries side by side. Write, audit, publish: a slice's tables are
committed only once all of them pass their blocking checks.
"""

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetCheckKey,
    AssetDep,
    AssetExecutionContext,
    AssetSpec,
    MaterializeResult,
    TimeWindowPartitionMapping,
    multi_asset,
)
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

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
from crypto_assets.tables import GOLD_DISTRIBUTION, GOLD_OVERVIEW, GOLD_TRENDS, GOLD_VOLATILITY, SILVER, TS, LakeTable
from crypto_assets.transforms import gold as transforms

# Distribution shares are sums of floats: equal to 1 within this.
SHARE_TOLERANCE = 1e-9
# The Silver columns the overview's totals are checked against, read with pyarrow, apart from Spark.
TOTALS_COLUMNS = ("ingest_hour", "coin_id", "market_cap", "total_volume")


@dataclass(frozen=True)
class GoldWindow:
    """A Gold table's staged rows and Silver's rows of the same hours (``TOTALS_COLUMNS``)."""

    rows: pa.Table
    silver: pa.Table


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
    mismatched, missing = totals_mismatch(window.silver, window.rows)
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

# Gold's slices hold this many times CRYPTO_SLICE_ROWS of Silver: every slice reads and computes
# its lookback again (a week before it, for the trends), which at two days a slice (1,000 coins)
# was three quarters of Gold's work. A 744-hour backfill's Gold step: 54 -> 38 s, its peak 1,226
# -> 1,261 MB, the driver's JVM smaller and Python larger (benchmarks/RESULTS.md).
SLICE_ROWS_FACTOR = 3


def affected_window(lakehouse: LakehouseResource, start: datetime, end: datetime, lookback_hours: int):
    """The hours whose rows read Silver hours [start, end) with this lookback: [start, end)
    itself and the later hours up to ``end + lookback`` that Silver has (newest one included)."""
    if not lookback_hours:
        return start, end
    newest = lakehouse.last_hour(SILVER, end, end + lookback_hours * HOUR)
    return start, newest + HOUR if newest is not None else end


# The step reads Silver back as far as the longest lookback, for every table (Dagster takes one
# mapping per upstream asset and step).
SILVER_DEP = AssetDep(
    SILVER.asset_key,
    partition_mapping=TimeWindowPartitionMapping(
        start_offset=-MAX_LOOKBACK_HOURS, allow_nonexistent_upstream_partitions=True
    ),
)


def _compute(spark: SparkResource, lakehouse: LakehouseResource, writing: dict[GoldTable, datetime], start: datetime):
    """Each table's rows for hours [start, its end) from one Silver frame reaching back as far as
    the longest lookback; the queries run side by side (Spark plans each on its own thread)."""
    lookback = max(gold.lookback_hours for gold in writing) * HOUR
    silver = lakehouse.read_window(spark.spark_session, SILVER, start - lookback, max(writing.values()))

    def rows(gold: GoldTable) -> pa.Table:
        hours = F.col("ingest_hour")
        own = silver.where((hours >= F.lit(start - gold.lookback_hours * HOUR)) & (hours < F.lit(writing[gold])))
        return gold.transform(own, start, writing[gold]).toArrow()

    with ThreadPoolExecutor(len(writing), thread_name_prefix="gold") as pool:
        return dict(zip(writing, pool.map(rows, writing)))


@multi_asset(
    specs=[
        AssetSpec(
            gold.table.asset_key,
            description=gold.table.description,
            metadata=table_definition_metadata(gold.table),
            deps=[SILVER_DEP],
            group_name="gold",
            kinds={"spark", "deltalake"},
            freshness_policy=FRESHNESS_POLICY,
        )
        for gold in GOLD
    ],
    check_specs=[spec for gold in GOLD for spec in specs(gold.table.asset_key, gold.checks)],
    partitions_def=hourly_partitions,
    backfill_policy=BACKFILL_POLICY,
    can_subset=True,
)
def gold_tables(context: AssetExecutionContext, spark: SparkResource, lakehouse: LakehouseResource):
    """The selected Gold tables in one step: a slice's tables are computed from one Silver frame,
    audited together, and committed only if every one passes its blocking checks."""
    start, end = run_window(context, lakehouse)
    chosen = [gold for gold in GOLD if gold.table.asset_key in context.selected_asset_keys]
    checks = {
        gold: [
            c for c in gold.checks if AssetCheckKey(gold.table.asset_key, c.name) in context.selected_asset_check_keys
        ]
        for gold in chosen
    }
    ends = {gold: affected_window(lakehouse, start, end, gold.lookback_hours)[1] for gold in chosen}

    def plan_and_commit(slice_start, slice_end):
        writing = {gold: min(slice_end, ends[gold]) for gold in chosen if ends[gold] > slice_start}
        pins = {gold: lakehouse.pin(gold.table) for gold in writing}
        rows = _compute(spark, lakehouse, writing, slice_start)
        totals = lakehouse.read_window_arrow(SILVER, slice_start, slice_end, columns=list(TOTALS_COLUMNS))
        windows = {
            gold: GoldWindow(rows[gold], totals.filter(pc.field("ingest_hour") < pa.scalar(writing[gold], TS)))
            for gold in writing
        }
        results = [result for gold in writing for result in audit(gold.table.asset_key, checks[gold], windows[gold])]
        if failed_blocking(results):
            return windows, results, None
        written = {}
        for gold, window in windows.items():
            written[gold] = lakehouse.write_window(
                gold.table, window.rows, slice_start, writing[gold], context.run.run_id, base=pins[gold]
            )
            crashpoints.reached("gold.committed")
        return windows, results, written

    writes: dict[GoldTable, list] = {gold: [] for gold in chosen}
    newest_rows: dict[GoldTable, pa.Table] = {}

    def on_committed(label, windows, written):
        for gold, result in written.items():
            writes[gold].append(result)
            newest_rows[gold] = windows[gold].rows  # the charts and the preview show the newest slice
        context.log.info("%s: %s", label, ", ".join(f"{gold.table.name} {w.rows} rows" for gold, w in written.items()))

    union_end = max(ends.values())
    results = yield from publish_in_slices(
        "Gold", lakehouse.slices(SILVER, start, union_end, SLICE_ROWS_FACTOR), plan_and_commit, on_committed
    )
    spark.done_with(context.selected_asset_keys)
    for gold in chosen:
        later = int((ends[gold] - end) / HOUR)
        if later:
            context.log.info("%s: %d later hours recomputed (they read the hours of this run)", gold.table.path, later)
        rows = newest_rows[gold]
        newest = {"preview": preview(rows), **(gold.chart(rows) if gold.chart else {})}
        metadata = table_metadata(
            context, gold.table, lakehouse, writes[gold][-1].version, merged_rows_per_hour(writes[gold]), newest
        )
        metadata.update(later_hours_recomputed=later, slices=len(writes[gold]))
        yield MaterializeResult(asset_key=gold.table.asset_key, metadata=metadata)
    yield from results
