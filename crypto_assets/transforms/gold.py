"""Silver → Gold: hourly market aggregates (pure PySpark, no I/O).

Each function returns exactly the columns of its GOLD table in tables.py, one row per key.
The windowed tables take Silver from ``start - lookback`` to ``end`` and emit only hours in
[start, end), so a window's first hours see the same history as a full recompute would.
Coin windows are ``rangeBetween`` frames on the epoch seconds of ``ingest_hour``: a missing
hour shortens the window instead of shifting it. Silver is unique per coin × hour, which the
exact-offset frames (the price 1/24/168 h earlier) rely on.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.window import WindowSpec

from crypto_assets.tables import (
    GOLD_DISTRIBUTION,
    GOLD_OVERVIEW,
    GOLD_TRENDS,
    GOLD_VOLATILITY,
    MARKET_CAP_TIERS,
    LakeTable,
)

VOLATILITY_LOOKBACK_HOURS = 23  # the trailing 24 h window includes the hour itself
TRENDS_LOOKBACK_HOURS = 168  # 7 d moving average + the price exactly 7 d earlier

_HOUR = 3600
_DAY = 24  # hours
_EPOCH = "_epoch"
_HOUR_KEY = ("ingest_hour", "ingest_date")


def _by_coin() -> WindowSpec:
    """Each coin's rows in hour order (built per call: a Window needs an active session)."""
    return Window.partitionBy("coin_id").orderBy(_EPOCH)


def _trailing(hours: int) -> WindowSpec:
    """The coin's rows from ``hours`` hours before the current hour up to and including it."""
    return _by_coin().rangeBetween(-hours * _HOUR, 0)


def _hours_ago(column: str, hours: int) -> Column:
    """The coin's value exactly ``hours`` hours earlier, null when that hour is absent."""
    return F.max(column).over(_by_coin().rangeBetween(-hours * _HOUR, -hours * _HOUR))


def _stable_sum(column: Column | str) -> Column:
    """Sum of the non-null values added in value order, null if there are none.

    A plain ``sum`` of doubles depends on the order Spark merges partial sums, so re-running
    an hour could change the last bits; sorting first makes the result a function of the data.
    """
    column = F.col(column) if isinstance(column, str) else column
    values = F.array_sort(F.collect_list(column))
    return F.when(F.count(column) > 0, F.aggregate(values, F.lit(0.0), lambda acc, x: acc + x))


def _finish(df: DataFrame, table: LakeTable) -> DataFrame:
    return df.select(*table.arrow_schema.names)


def _in_window(df: DataFrame, start: datetime, end: datetime) -> DataFrame:
    return df.where((F.col("ingest_hour") >= F.lit(start)) & (F.col("ingest_hour") < F.lit(end)))


def market_overview(silver: DataFrame) -> DataFrame:
    """One row per hour: totals, BTC/ETH dominance (% of the total cap) and market breadth."""
    change = F.col("price_change_percentage_24h")
    hourly = silver.groupBy(*_HOUR_KEY).agg(
        # Normally one currency; several are listed ("eur,usd") so a check can catch the mix.
        F.array_join(F.array_sort(F.collect_set("vs_currency")), ",").alias("vs_currency"),
        F.count("coin_id").alias("coins_tracked"),
        _stable_sum("market_cap").alias("total_market_cap"),
        _stable_sum("total_volume").alias("total_volume"),
        F.max(F.when(F.col("coin_id") == "bitcoin", F.col("market_cap"))).alias("_btc_cap"),
        F.max(F.when(F.col("coin_id") == "ethereum", F.col("market_cap"))).alias("_eth_cap"),
        F.count(F.when(change > 0, 1)).alias("advancers"),
        F.count(F.when(change < 0, 1)).alias("decliners"),
        F.count(F.when(F.col("is_high_volume"), 1)).alias("high_volume_coins"),
        F.count(F.when(F.col("is_stale"), 1)).alias("stale_coins"),
    )
    return _finish(
        hourly.select(
            "*",
            (F.try_divide("_btc_cap", "total_market_cap") * 100).alias("btc_dominance_pct"),
            (F.try_divide("_eth_cap", "total_market_cap") * 100).alias("eth_dominance_pct"),
            (F.col("coins_tracked") - F.col("advancers") - F.col("decliners")).alias("unchanged"),
        ),
        GOLD_OVERVIEW,
    )


def market_distribution(silver: DataFrame) -> DataFrame:
    """One row per hour and market-cap tier that has coins, with its share of the hour."""
    cap = F.col("market_cap")
    tier_order = F.when(cap.isNull(), F.lit(len(MARKET_CAP_TIERS) + 1))
    for order, (_, lower_bound) in enumerate(MARKET_CAP_TIERS, start=1):
        tier_order = tier_order.when(cap >= lower_bound, F.lit(order))
    names = F.array(*[F.lit(name) for name, _ in MARKET_CAP_TIERS], F.lit("unknown"))
    tiers = (
        silver.withColumn("tier_order", tier_order.cast("int"))
        .withColumn("market_cap_tier", F.element_at(names, F.col("tier_order")))
        .groupBy(*_HOUR_KEY, "market_cap_tier", "tier_order")
        .agg(
            F.count("coin_id").alias("coin_count"),
            _stable_sum("market_cap").alias("total_market_cap"),
            _stable_sum("total_volume").alias("total_volume"),
        )
    )
    hour_totals = silver.groupBy("ingest_hour").agg(
        _stable_sum("market_cap").alias("_hour_cap"),
        _stable_sum("total_volume").alias("_hour_volume"),
    )

    def share(part: str, total: str) -> Column:
        """0 when the hour's total is 0 or unknown, so shares stay within 0..1."""
        return F.coalesce(F.try_divide(F.coalesce(F.col(part), F.lit(0.0)), total), F.lit(0.0))

    return _finish(
        tiers.join(hour_totals, "ingest_hour").select(
            "*",
            share("total_market_cap", "_hour_cap").alias("market_cap_share"),
            share("total_volume", "_hour_volume").alias("volume_share"),
        ),
        GOLD_DISTRIBUTION,
    )


def price_volatility(silver_with_lookback: DataFrame, start: datetime, end: datetime) -> DataFrame:
    """Per coin and hour H, price statistics over the Silver hours in [H-23h, H].

    A log return needs both of its hours inside the window, so returns ending in
    [H-22h, H] are used, and only between hours exactly 1 h apart (a gap yields none).
    """
    epoch = F.unix_seconds("ingest_hour")
    price = F.col("current_price")
    coins = silver_with_lookback.withColumn(_EPOCH, epoch)
    coins = coins.withColumn(
        "_log_return",
        F.when(
            F.col(_EPOCH) - F.lag(_EPOCH).over(_by_coin()) == _HOUR,
            F.ln(F.try_divide(price, F.lag(price).over(_by_coin()))),
        ),
    )
    window = _trailing(VOLATILITY_LOOKBACK_HOURS)
    stats = coins.select(
        "*",
        F.count(price).over(window).alias("observations"),
        F.avg(price).over(window).alias("avg_price"),
        F.min(price).over(window).alias("min_price"),
        F.max(price).over(window).alias("max_price"),
        F.stddev_samp("_log_return").over(_trailing(VOLATILITY_LOOKBACK_HOURS - 1)).alias("stddev_log_return"),
    )
    range_pct = F.try_divide(F.col("max_price") - F.col("min_price"), "min_price") * 100
    return _finish(_in_window(stats, start, end).withColumn("price_range_pct", range_pct), GOLD_VOLATILITY)


def market_trends(silver_with_lookback: DataFrame, start: datetime, end: datetime) -> DataFrame:
    """Per coin and hour: 24 h / 7 d moving averages, 1 h / 24 h / 7 d returns, trend, rank move.

    The trend is 'up' when price > ma_24h > ma_7d, 'down' when price < ma_24h < ma_7d,
    'sideways' otherwise, and null with fewer than 24 Silver hours in the 7 d window.
    """
    price = F.col("current_price")
    coins = silver_with_lookback.withColumn(_EPOCH, F.unix_seconds("ingest_hour"))
    week = _trailing(TRENDS_LOOKBACK_HOURS - 1)

    def return_pct(hours: int) -> Column:
        return (F.try_divide(price, _hours_ago("current_price", hours)) - 1) * 100

    stats = coins.select(
        "*",
        F.avg(price).over(_trailing(_DAY - 1)).alias("ma_24h"),
        F.avg(price).over(week).alias("ma_7d"),
        F.count(price).over(week).alias("_observations_7d"),
        return_pct(1).alias("return_1h_pct"),
        return_pct(_DAY).alias("return_24h_pct"),
        return_pct(TRENDS_LOOKBACK_HOURS).alias("return_7d_pct"),
        (_hours_ago("market_cap_rank", _DAY) - F.col("market_cap_rank")).cast("int").alias("rank_change_24h"),
    )
    ma_24h, ma_7d = F.col("ma_24h"), F.col("ma_7d")
    trend = (
        F.when(F.col("_observations_7d") < _DAY, F.lit(None).cast("string"))
        .when((price > ma_24h) & (ma_24h > ma_7d), F.lit("up"))
        .when((price < ma_24h) & (ma_24h < ma_7d), F.lit("down"))
        .otherwise(F.lit("sideways"))
    )
    return _finish(_in_window(stats, start, end).withColumn("trend", trend), GOLD_TRENDS)
