"""What a user might pick instead: Silver's and Gold's logic in DuckDB over the same Bronze and
Silver files, beside the Spark path over the same window, compute only (no writes) in both.

`python -m benchmarks.duckdb_reference LAKE START/END…` (windows of hours as ISO times) —
benchmarks/scale.py runs it, in a process of its own (PySpark keeps a stopped session's JVM, and
its 3g heap, until the process ends), on the lake its 744-hour backfill left. The SQL follows
``transforms/silver.py`` and ``transforms/gold.py`` rule for rule (fields parsed once per
record, the same quarantine reasons in the same order, the same precedence, flags and windows);
the one simplification is plain ``sum`` where Spark sorts values before adding them (bit-exact
reruns), which only makes DuckDB's side cheaper. Row counts of both sides are printed so a
reader sees they did the same work.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import datetime, timedelta

from crypto_assets.captures import CAPTURE_STAMP
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.tables import BRONZE, MARKET_CAP_TIERS, NUMERIC_FIELDS, SILVER, TIMESTAMP_FIELDS

# The Spark side's driver heap: see compare.
COMPARE_HEAP = "3g"

NUMBERS = (
    "current_price",
    "market_cap",
    "market_cap_rank",
    *[f for f in NUMERIC_FIELDS if f not in ("current_price", "market_cap")],
)  # Silver's check order
FIELDS = ("symbol", "name", *NUMBERS, *TIMESTAMP_FIELDS, "roi")
SUPPLY = ("circulating_supply", "total_supply", "max_supply")


def _finite(expression: str) -> str:
    return f"CASE WHEN isfinite(TRY_CAST({expression} AS DOUBLE)) THEN TRY_CAST({expression} AS DOUBLE) END"


def silver_sql(high_volume: float = 1e9, stale_seconds: int = 7200) -> str:
    paths = ", ".join(f"'$.{f}'" for f in FIELDS)
    texts = {f: f"_v[{i + 1}]" for i, f in enumerate(FIELDS)}
    texts.update(
        roi_times="json_extract_string(_v[{0}], '$.times')".format(FIELDS.index("roi") + 1),
        roi_percentage="json_extract_string(_v[{0}], '$.percentage')".format(FIELDS.index("roi") + 1),
    )
    numbers = {f: _finite(texts[f]) for f in (*NUMBERS, "roi_times", "roi_percentage")}
    numbers["market_cap_rank"] = f"TRY_CAST({numbers['market_cap_rank']} AS INTEGER)"
    not_numeric = " ".join(
        f"WHEN {texts[f]} IS NOT NULL AND {numbers[f]} IS NULL THEN 'not_numeric:{f}'"
        for f in (*NUMBERS, "roi_times", "roi_percentage")
    )
    supply = " ".join(f"WHEN {numbers[f]} < 0 THEN 'negative_supply:{f}'" for f in SUPPLY)
    typed = ", ".join(f"{numbers[f]} AS {f}" for f in (*NUMBERS, "roi_times", "roi_percentage"))
    stamps = ", ".join(f"TRY_CAST({texts[f]} AS TIMESTAMPTZ) AS {f}" for f in TIMESTAMP_FIELDS)
    return f"""
    WITH parsed AS (
        SELECT *, json_extract_string(record_json, [{paths}]) AS _v,
               json_valid(record_json) AND json_type(record_json) = 'OBJECT' AS _is_object
        FROM bronze),
    checked AS (
        SELECT coin_id, _v[1] AS symbol, _v[2] AS name, vs_currency, {typed}, {stamps},
               json_extract_string(_v[{FIELDS.index("roi") + 1}], '$.currency') AS roi_currency,
               source, capture_id, page, position, ingested_at, ingest_hour, record_json,
               CASE WHEN NOT _is_object THEN 'malformed_json'
                    WHEN coin_id IS NULL OR trim(coin_id) = '' THEN 'missing_id'
                    {not_numeric}
                    WHEN coalesce({numbers["current_price"]} <= 0, true) THEN 'non_positive_price'
                    WHEN {numbers["total_volume"]} < 0 THEN 'negative_volume'
                    {supply}
                    WHEN {numbers["market_cap"]} < 0 THEN 'negative_market_cap' END AS _reason
        FROM parsed),
    ranked AS (
        SELECT *, row_number() OVER best AS _rank, first(capture_id) OVER best AS _best
        FROM checked
        WINDOW best AS (PARTITION BY _reason IS NULL, coin_id, ingest_hour
                        ORDER BY source <> 'snapshot', string_split(capture_id, '{CAPTURE_STAMP}')[-1] DESC,
                                 capture_id DESC, page, position))
    SELECT * EXCLUDE (_rank, _best, _reason),
           CASE WHEN _reason IS NULL AND _rank > 1 AND capture_id = _best THEN 'duplicate_in_hour'
                WHEN _reason IS NULL AND _rank > 1 THEN '_superseded' ELSE _reason END AS fate,
           total_volume >= {high_volume} AS is_high_volume,
           epoch_us(least(ingested_at, ingest_hour + INTERVAL 1 HOUR)) - epoch_us(last_updated)
               > {stale_seconds * 1_000_000} AS is_stale
    FROM ranked"""


TIER = (
    "CASE "
    + " ".join(f"WHEN market_cap >= {bound} THEN '{name}'" for name, bound in MARKET_CAP_TIERS)
    + " ELSE 'unknown' END"
)
GOLD_SQL = {
    "overview": """
        SELECT ingest_hour, string_agg(DISTINCT vs_currency, ',' ORDER BY vs_currency) AS vs_currency,
               count(coin_id) AS coins_tracked, sum(market_cap) AS total_market_cap, sum(total_volume) AS total_volume,
               max(market_cap) FILTER (coin_id = 'bitcoin') / sum(market_cap) * 100 AS btc_dominance_pct,
               max(market_cap) FILTER (coin_id = 'ethereum') / sum(market_cap) * 100 AS eth_dominance_pct,
               count(*) FILTER (price_change_percentage_24h > 0) AS advancers,
               count(*) FILTER (price_change_percentage_24h < 0) AS decliners,
               count(*) FILTER (is_high_volume) AS high_volume_coins, count(*) FILTER (is_stale) AS stale_coins
        FROM silver WHERE ingest_hour >= $start GROUP BY ingest_hour""",
    "distribution": f"""
        WITH tiers AS (SELECT ingest_hour, {TIER} AS market_cap_tier, count(coin_id) AS coin_count,
                              sum(market_cap) AS total_market_cap, sum(total_volume) AS total_volume
                       FROM silver WHERE ingest_hour >= $start GROUP BY ALL),
             hours AS (SELECT ingest_hour, sum(market_cap) AS cap, sum(total_volume) AS volume
                       FROM silver WHERE ingest_hour >= $start GROUP BY ALL)
        SELECT tiers.*, coalesce(coalesce(total_market_cap, 0) / nullif(cap, 0), 0) AS market_cap_share,
               coalesce(coalesce(total_volume, 0) / nullif(volume, 0), 0) AS volume_share
        FROM tiers JOIN hours USING (ingest_hour)""",
    "volatility": """
        WITH returns AS (
            SELECT *, CASE WHEN ingest_hour - lag(ingest_hour) OVER coin = INTERVAL 1 HOUR
                           THEN ln(current_price / lag(current_price) OVER coin) END AS log_return
            FROM silver WHERE ingest_hour >= $start - INTERVAL 23 HOUR WINDOW coin AS (PARTITION BY coin_id ORDER BY ingest_hour)),
        stats AS (
            SELECT coin_id, ingest_hour, count(current_price) OVER day AS observations, avg(current_price) OVER day AS avg_price,
                   min(current_price) OVER day AS min_price, max(current_price) OVER day AS max_price,
                   stddev_samp(log_return) OVER (PARTITION BY coin_id ORDER BY ingest_hour
                       RANGE BETWEEN INTERVAL 22 HOUR PRECEDING AND CURRENT ROW) AS stddev_log_return
            FROM returns WINDOW day AS (PARTITION BY coin_id ORDER BY ingest_hour RANGE BETWEEN INTERVAL 23 HOUR PRECEDING AND CURRENT ROW))
        SELECT *, (max_price - min_price) / min_price * 100 AS price_range_pct FROM stats WHERE ingest_hour >= $start""",
    "trends": """
        WITH stats AS (
            SELECT coin_id, ingest_hour, current_price,
                   avg(current_price) OVER (coin RANGE BETWEEN INTERVAL 23 HOUR PRECEDING AND CURRENT ROW) AS ma_24h,
                   avg(current_price) OVER (coin RANGE BETWEEN INTERVAL 167 HOUR PRECEDING AND CURRENT ROW) AS ma_7d,
                   count(current_price) OVER (coin RANGE BETWEEN INTERVAL 167 HOUR PRECEDING AND CURRENT ROW) AS observations_7d,
                   (current_price / max(current_price) OVER (coin RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND INTERVAL 1 HOUR PRECEDING) - 1) * 100 AS return_1h_pct,
                   (current_price / max(current_price) OVER (coin RANGE BETWEEN INTERVAL 24 HOUR PRECEDING AND INTERVAL 24 HOUR PRECEDING) - 1) * 100 AS return_24h_pct,
                   (current_price / max(current_price) OVER (coin RANGE BETWEEN INTERVAL 168 HOUR PRECEDING AND INTERVAL 168 HOUR PRECEDING) - 1) * 100 AS return_7d_pct,
                   max(market_cap_rank) OVER (coin RANGE BETWEEN INTERVAL 24 HOUR PRECEDING AND INTERVAL 24 HOUR PRECEDING) - market_cap_rank AS rank_change_24h
            FROM silver WHERE ingest_hour >= $start - INTERVAL 168 HOUR WINDOW coin AS (PARTITION BY coin_id ORDER BY ingest_hour))
        SELECT *, CASE WHEN observations_7d < 24 THEN NULL WHEN current_price > ma_24h AND ma_24h > ma_7d THEN 'up'
                       WHEN current_price < ma_24h AND ma_24h < ma_7d THEN 'down' ELSE 'sideways' END AS trend
        FROM stats WHERE ingest_hour >= $start""",
}


def duckdb_path(lake: LakehouseResource, start: datetime, end: datetime) -> dict[str, int]:
    """Silver from Bronze, and the four Gold tables from Silver (with its lookback), in DuckDB."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("bronze", lake.read_window_arrow(BRONZE, start, end))
    counts = {"silver": con.execute(f"SELECT count(*) FILTER (fate IS NULL) FROM ({silver_sql()})").fetchone()[0]}
    con.register("silver", lake.read_window_arrow(SILVER, start - timedelta(hours=168), end))
    for name, sql in GOLD_SQL.items():
        counts[name] = len(con.execute(sql, {"start": start}).fetch_arrow_table())
    return counts


def spark_path(lake: LakehouseResource, spark, start: datetime, end: datetime) -> dict[str, int]:
    """The pipeline's own transforms over the same window, each result brought back as Arrow."""
    from crypto_assets.transforms import gold
    from crypto_assets.transforms.silver import SilverRules, clean_markets

    silver, _, _ = clean_markets(lake.read_window(spark, BRONZE, start, end), SilverRules())
    counts = {"silver": len(silver)}
    frame = lake.read_window(spark, SILVER, start - timedelta(hours=168), end)
    window = frame.where(frame.ingest_hour >= start)
    counts["overview"] = len(gold.market_overview(window).toArrow())
    counts["distribution"] = len(gold.market_distribution(window).toArrow())
    counts["volatility"] = len(gold.price_volatility(frame, start, end).toArrow())
    counts["trends"] = len(gold.market_trends(frame, start, end).toArrow())
    return counts


def compare(lake_root: str, windows: dict[str, tuple[datetime, datetime]], repeat: int = 3) -> None:
    """Print, per window, the median seconds of each path (Spark warm: its session started
    before the clock) and their ratio."""
    from crypto_assets.resources.spark import SparkResource

    lake = LakehouseResource(root=lake_root)
    # Each path holds the whole window at once here (compute only, no slices): the pipeline's
    # small default heap is sized for a slice and loses task results over 744 hours.
    resource = SparkResource(driver_memory=COMPARE_HEAP)
    spark = resource.spark_session
    try:
        for name, (start, end) in windows.items():
            timings = {}
            for path, run in (
                ("spark", lambda: spark_path(lake, spark, start, end)),
                ("duckdb", lambda: duckdb_path(lake, start, end)),
            ):
                seconds = []
                for _ in range(repeat):
                    began = time.monotonic()
                    counts = run()
                    seconds.append(time.monotonic() - began)
                timings[path] = statistics.median(seconds)
                print(f"  {name:14s} {path:7s} {timings[path]:7.2f}s  rows {counts}")
            print(
                f"  {name:14s} Spark path / DuckDB {timings['spark'] / timings['duckdb']:.2f}×  target ≤ 3×  "
                f"{'met' if timings['spark'] <= 3 * timings['duckdb'] else 'NOT met'}"
            )
    finally:
        resource.teardown_after_execution(None)


def window_argument(start: datetime, end: datetime) -> str:
    return f"{start.isoformat()}/{end.isoformat()}"


def _named_window(argument: str) -> tuple[str, tuple[datetime, datetime]]:
    start, end = (datetime.fromisoformat(when) for when in argument.split("/"))
    hours = int((end - start) / timedelta(hours=1))
    return (f"{hours} hours" if hours != 1 else "one hour"), (start, end)


if __name__ == "__main__":
    root, *windows = sys.argv[1:]
    compare(root, dict(map(_named_window, windows)))
