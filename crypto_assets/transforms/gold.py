"""Silver → Gold: hourly market aggregates (Spark SQL, no I/O).

Each function returns exactly the columns of its GOLD table in tables.py, one row per key.
The windowed tables take Silver from ``start - lookback`` to ``end`` and emit only hours in
[start, end), so a window's first hours see the same history as a full recompute would.
Coin windows are time frames on ``ingest_hour``: a missing hour shortens the window instead of
shifting it. Silver is unique per coin × hour, which the exact-offset frames (the price 1/24/168 h
earlier) rely on. They are written one of two ways (``Frames``), which give the same bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pyspark.sql import DataFrame

from crypto_assets.tables import (
    GOLD_DISTRIBUTION,
    GOLD_OVERVIEW,
    GOLD_TRENDS,
    GOLD_VOLATILITY,
    INGEST_DATE_SQL,
    MARKET_CAP_TIERS,
    LakeTable,
)
from crypto_assets.transforms.sql import double

VOLATILITY_LOOKBACK_HOURS = 23  # the trailing 24 h window includes the hour itself
TRENDS_LOOKBACK_HOURS = 168  # 7 d moving average + the price exactly 7 d earlier

# Windows of at most this many hours use per-hour frames: over a week of history at 1,000 coins
# with the quick compiler, trends took 0.9 s against 2.9 s for one hour, and as long at four
# hours (benchmarks/RESULTS.md).
PER_HOUR_FRAMES_MAX_HOURS = 2

_HOUR = 3600
_DAY = 24  # hours
_BY_COIN = "PARTITION BY coin_id ORDER BY unix_seconds(ingest_hour)"
_IN_WINDOW = "WHERE ingest_hour >= :start AND ingest_hour < :end"
# A coin's rows paired with one output hour (_at), all of them in one frame, in time order.
_BY_COIN_AND_HOUR = (
    "(PARTITION BY coin_id, _at ORDER BY unix_seconds(ingest_hour)"
    " ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)"
)


@dataclass(frozen=True)
class Frames:
    """A coin's trailing windows as SQL, over the rows ``rows`` makes of a query of Silver.

    Sliding frames (any window): ``RANGE`` frames over the coin's rows. Spark recomputes such a
    frame from scratch for every row, lookback rows included, whose results are then dropped: an
    hourly run with a week of history adds up 168 prices for each of 169 hours to keep one.

    Per-hour frames (short windows): each output hour is paired with its coin's rows of the
    lookback before it, and each pair group is aggregated once; a row outside a trailing window
    enters it as null. An average adds 0 for a null and skips it in the count, and the rows are
    added in the same time order, so the values are the same bits as the sliding frames'.
    """

    output_hours: int
    lookback_hours: int

    @classmethod
    def for_window(cls, start: datetime, end: datetime, lookback_hours: int) -> Frames:
        return cls((end - start) // timedelta(hours=1), lookback_hours)

    @property
    def per_hour(self) -> bool:
        return self.output_hours <= PER_HOUR_FRAMES_MAX_HOURS

    def rows(self, source: str) -> str:
        """SQL: ``source``'s rows, each paired with the output hours it is lookback for (per-hour)."""
        if not self.per_hour:
            return source
        reach = f"rows.ingest_hour BETWEEN _at - INTERVAL {self.lookback_hours} HOURS AND _at"
        if self.output_hours == 1:  # the hourly run: no join to plan (trends over a week: 2.9 → 2.2 s cold)
            return f"SELECT * FROM (SELECT rows.*, :start AS _at FROM ({source}) rows) rows WHERE {reach}"
        hours = "SELECT explode(sequence(:start, :end - INTERVAL 1 HOUR, INTERVAL 1 HOUR)) AS _at"
        return f"SELECT rows.*, hours._at FROM ({source}) rows JOIN ({hours}) hours ON {reach}"

    @property
    def output(self) -> str:
        """SQL ``WHERE``: the rows of the output hours."""
        return "WHERE ingest_hour = _at" if self.per_hour else _IN_WINDOW

    def trailing(self, aggregate: str, column: str, hours: int) -> str:
        """SQL: ``aggregate(column)`` over the coin's rows from ``hours`` hours before the row's hour
        up to and including it."""
        if self.per_hour:
            return f"{aggregate}(CASE WHEN ingest_hour >= _at - INTERVAL {hours} HOURS THEN {column} END) OVER {_BY_COIN_AND_HOUR}"
        return f"{aggregate}({column}) OVER ({_BY_COIN} RANGE BETWEEN {hours * _HOUR} PRECEDING AND CURRENT ROW)"

    def hours_ago(self, column: str, hours: int) -> str:
        """SQL: the coin's value exactly ``hours`` hours earlier, null when that hour is absent."""
        if self.per_hour:
            return (
                f"max(CASE WHEN ingest_hour = _at - INTERVAL {hours} HOURS THEN {column} END) OVER {_BY_COIN_AND_HOUR}"
            )
        offset = hours * _HOUR
        return f"max({column}) OVER ({_BY_COIN} RANGE BETWEEN {offset} PRECEDING AND {offset} PRECEDING)"


def _stable_sum(column: str) -> str:
    """SQL: sum of the non-null values added in value order, null if there are none.

    A plain ``sum`` of doubles depends on the order Spark merges partial sums, so re-running
    an hour could change the last bits; sorting first makes the result a function of the data.
    """
    return (
        f"CASE WHEN count({column}) > 0 THEN aggregate(array_sort(collect_list({column})), 0D, (acc, x) -> acc + x) END"
    )


def _query(
    table: LakeTable, source: str, silver: DataFrame, computed: dict[str, str] | None = None, **args
) -> DataFrame:
    """``SELECT`` the columns of ``table`` in its order (those in ``computed`` as their SQL, and
    ``ingest_date`` from ``ingest_hour``) from ``source``, a query over ``{silver}``; ``args`` fill
    its ``:name`` markers. One statement, so Spark is asked once per table, not once per column
    expression. The date is derived here, at the output: a column taken from the source would travel
    with every lookback row through a window's shuffle and sort (trends: 168 rows a coin, one kept)."""
    computed = {"ingest_date": INGEST_DATE_SQL, **(computed or {})}
    columns = ", ".join(
        f"{computed[name]} AS {name}" if name in computed else name for name in table.arrow_schema.names
    )
    return silver.sparkSession.sql(f"SELECT {columns} FROM ({source})", args=args or None, silver=silver)


def market_overview(silver: DataFrame) -> DataFrame:
    """One row per hour: totals, BTC/ETH dominance (% of the total cap) and market breadth."""
    hourly = f"""
        SELECT ingest_hour,
            -- Normally one currency; several are listed ("eur,usd") so a check can catch the mix.
            array_join(array_sort(collect_set(vs_currency)), ',') AS vs_currency,
            count(coin_id) AS coins_tracked,
            {_stable_sum("market_cap")} AS total_market_cap,
            {_stable_sum("total_volume")} AS total_volume,
            max(CASE WHEN coin_id = 'bitcoin' THEN market_cap END) AS _btc_cap,
            max(CASE WHEN coin_id = 'ethereum' THEN market_cap END) AS _eth_cap,
            count(CASE WHEN price_change_percentage_24h > 0 THEN 1 END) AS advancers,
            count(CASE WHEN price_change_percentage_24h < 0 THEN 1 END) AS decliners,
            count(CASE WHEN is_high_volume THEN 1 END) AS high_volume_coins,
            count(CASE WHEN is_stale THEN 1 END) AS stale_coins
        FROM {{silver}} GROUP BY ingest_hour"""
    return _query(
        GOLD_OVERVIEW,
        hourly,
        silver,
        {
            "btc_dominance_pct": "try_divide(_btc_cap, total_market_cap) * 100",
            "eth_dominance_pct": "try_divide(_eth_cap, total_market_cap) * 100",
            "unchanged": "coins_tracked - advancers - decliners",
        },
    )


def market_distribution(silver: DataFrame) -> DataFrame:
    """One row per hour and market-cap tier that has coins, with its share of the hour."""
    tier_order = " ".join(
        f"WHEN market_cap >= {double(lower_bound)} THEN {order}"
        for order, (_, lower_bound) in enumerate(MARKET_CAP_TIERS, start=1)
    )
    names = ", ".join(f"'{name}'" for name, _ in (*MARKET_CAP_TIERS, ("unknown", None)))
    tiers = f"""
        SELECT ingest_hour, market_cap_tier, tier_order,
            count(coin_id) AS coin_count,
            {_stable_sum("market_cap")} AS total_market_cap,
            {_stable_sum("total_volume")} AS total_volume
        FROM (
            SELECT *, element_at(array({names}), tier_order) AS market_cap_tier
            FROM (SELECT *, CAST(CASE WHEN market_cap IS NULL THEN {len(MARKET_CAP_TIERS) + 1} {tier_order} END AS INT)
                            AS tier_order FROM {{silver}}))
        GROUP BY ingest_hour, market_cap_tier, tier_order"""
    hour_totals = f"""
        SELECT ingest_hour, {_stable_sum("market_cap")} AS _hour_cap, {_stable_sum("total_volume")} AS _hour_volume
        FROM {{silver}} GROUP BY ingest_hour"""

    def share(part: str, total: str) -> str:
        """0 when the hour's total is 0 or unknown, so shares stay within 0..1."""
        return f"coalesce(try_divide(coalesce({part}, 0D), {total}), 0D)"

    return _query(
        GOLD_DISTRIBUTION,
        f"SELECT * FROM ({tiers}) JOIN ({hour_totals}) USING (ingest_hour)",
        silver,
        {
            "market_cap_share": share("total_market_cap", "_hour_cap"),
            "volume_share": share("total_volume", "_hour_volume"),
        },
    )


def price_volatility(silver_with_lookback: DataFrame, start: datetime, end: datetime) -> DataFrame:
    """Per coin and hour H, price statistics over the Silver hours in [H-23h, H].

    A log return needs both of its hours inside the window, so returns ending in
    [H-22h, H] are used, and only between hours exactly 1 h apart (a gap yields none).
    """
    returns = f"""
        SELECT *, CASE WHEN unix_seconds(ingest_hour) - lag(unix_seconds(ingest_hour)) OVER ({_BY_COIN}) = {_HOUR}
                       THEN ln(try_divide(current_price, lag(current_price) OVER ({_BY_COIN}))) END AS _log_return
        FROM {{silver}}"""
    frames = Frames.for_window(start, end, VOLATILITY_LOOKBACK_HOURS)
    day = VOLATILITY_LOOKBACK_HOURS
    stats = f"""
        SELECT *,
            {frames.trailing("count", "current_price", day)} AS observations,
            {frames.trailing("avg", "current_price", day)} AS avg_price,
            {frames.trailing("min", "current_price", day)} AS min_price,
            {frames.trailing("max", "current_price", day)} AS max_price,
            {frames.trailing("stddev_samp", "_log_return", day - 1)} AS stddev_log_return
        FROM ({frames.rows(returns)})"""
    return _query(
        GOLD_VOLATILITY,
        f"SELECT * FROM ({stats}) {frames.output}",
        silver_with_lookback,
        {"price_range_pct": "try_divide(max_price - min_price, min_price) * 100"},
        start=start,
        end=end,
    )


def market_trends(silver_with_lookback: DataFrame, start: datetime, end: datetime) -> DataFrame:
    """Per coin and hour: 24 h / 7 d moving averages, 1 h / 24 h / 7 d returns, trend, rank move.

    The trend is 'up' when price > ma_24h > ma_7d, 'down' when price < ma_24h < ma_7d,
    'sideways' otherwise, and null with fewer than 24 Silver hours in the 7 d window.
    """
    frames = Frames.for_window(start, end, TRENDS_LOOKBACK_HOURS)
    week = TRENDS_LOOKBACK_HOURS - 1

    def return_pct(hours: int) -> str:
        return f"(try_divide(current_price, {frames.hours_ago('current_price', hours)}) - 1) * 100"

    stats = f"""
        SELECT *,
            {frames.trailing("avg", "current_price", _DAY - 1)} AS ma_24h,
            {frames.trailing("avg", "current_price", week)} AS ma_7d,
            {frames.trailing("count", "current_price", week)} AS _observations_7d,
            {return_pct(1)} AS return_1h_pct,
            {return_pct(_DAY)} AS return_24h_pct,
            {return_pct(TRENDS_LOOKBACK_HOURS)} AS return_7d_pct,
            CAST({frames.hours_ago("market_cap_rank", _DAY)} - market_cap_rank AS INT) AS rank_change_24h
        FROM ({frames.rows("SELECT * FROM {silver}")})"""
    trend = f"""CASE WHEN _observations_7d < {_DAY} THEN CAST(NULL AS STRING)
        WHEN current_price > ma_24h AND ma_24h > ma_7d THEN 'up'
        WHEN current_price < ma_24h AND ma_24h < ma_7d THEN 'down'
        ELSE 'sideways' END"""
    return _query(
        GOLD_TRENDS,
        f"SELECT * FROM ({stats}) {frames.output}",
        silver_with_lookback,
        {"trend": trend},
        start=start,
        end=end,
    )
