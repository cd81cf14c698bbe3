"""Names and Arrow schemas of the lakehouse tables (docs/design.md §4): the contract between layers.

Every table has ``ingest_hour`` (UTC start of the hour) and ``ingest_date`` (its date, the
Delta partition column, so a window read touches only the days it needs). No column varies
from one run to the next for the same input, so re-running an hour rewrites identical rows;
the run that wrote a version is recorded in the Delta commit instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import pyarrow as pa
from dagster import AssetKey

TS = pa.timestamp("us", tz="UTC")

# (name, Arrow type, description): the description is shown beside the type in the Dagster UI's
# column schema and carried into the warehouse as a column comment (star_schema.py).
ColumnSpec = tuple[str, pa.DataType, str]

WINDOW_COLUMNS: tuple[ColumnSpec, ...] = (
    ("ingest_hour", TS, "UTC start of the hour the row belongs to: the Dagster partition (ingestion hour)."),
    ("ingest_date", pa.string(), "UTC date of ingest_hour, YYYY-MM-DD: the Delta partition column."),
)
# Spark SQL deriving ``ingest_date`` from ``ingest_hour`` (Spark reads it from no file: it lives in the path).
INGEST_DATE_SQL = "date_format(ingest_hour, 'yyyy-MM-dd')"


@dataclass(frozen=True)
class LakeTable:
    schema_name: str  # the catalog schema of the Azure seed: raw_data, cleaned_data, aggregated_data
    name: str
    columns: tuple[ColumnSpec, ...]  # the table's own columns; the window columns follow them
    key: tuple[str, ...]  # unique within the table
    description: str

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(name, dtype) for name, dtype, _ in (*self.columns, *WINDOW_COLUMNS)])

    @cached_property
    def column_docs(self) -> dict[str, str]:
        """Column name -> its description, in schema order."""
        return {name: doc for name, _, doc in (*self.columns, *WINDOW_COLUMNS)}

    @property
    def path(self) -> str:
        return f"{self.schema_name}/{self.name}"

    @property
    def asset_key(self) -> AssetKey:
        return AssetKey([self.schema_name, self.name])

    @property
    def stats_columns(self) -> str:
        """The columns Delta keeps file statistics on: the window and the key, whatever their
        position (delta-rs otherwise covers only the first 32, and Silver's ingest_hour is 39th)."""
        return ",".join(dict.fromkeys(("ingest_hour", *self.key)))


_LINEAGE: tuple[ColumnSpec, ...] = (
    ("source", pa.string(), "How it was captured: 'snapshot' (/coins/markets) or 'history' (market_chart/range)."),
    ("capture_id", pa.string(), "The Bronze capture the record came from (names its landing folder)."),
    ("page", pa.int32(), "Page (snapshot) or chunk (history) of the capture, 1-based."),
    ("position", pa.int32(), "0-based index of the record in its page."),
    ("ingested_at", TS, "When the page was received (UTC)."),
)

BRONZE = LakeTable(
    "raw_data",
    "bronze_coingecko_markets",
    (
        ("coin_id", pa.string(), "The record's 'id' exactly as sent; null when missing or not a string."),
        ("record_json", pa.string(), "The record as the API sent it, JSON text (history: one reconstructed point)."),
        _LINEAGE[0],
        ("vs_currency", pa.string(), "The quote currency asked for (e.g. 'usd'); every amount is in it."),
        _LINEAGE[1],
        _LINEAGE[2],
        _LINEAGE[3],
        ("request", pa.string(), "Path and query of the request, never the API key."),
        ("http_status", pa.int32(), "HTTP status of the response the record came in."),
        ("payload_sha256", pa.string(), "SHA-256 of the landing file the record came from."),
        _LINEAGE[4],
        ("run_id", pa.string(), "The Dagster run that captured it."),
    ),
    key=("capture_id", "page", "position"),
    description="Every record CoinGecko returned, as JSON text, with where and when it came from.",
)

_CCY = "in vs_currency"
NUMERIC_DOCS = {
    "current_price": f"Price {_CCY}; always positive (zero or negative prices are quarantined).",
    "market_cap": f"Market capitalisation {_CCY} (price x circulating supply, as CoinGecko reports it); null if unknown.",
    "fully_diluted_valuation": f"Price x max (or total) supply {_CCY}; null if unknown.",
    "total_volume": f"Trading volume over the last 24 h {_CCY}.",
    "high_24h": f"Highest price over the last 24 h {_CCY}; null for coins without recent trades.",
    "low_24h": f"Lowest price over the last 24 h {_CCY}; null for coins without recent trades.",
    "price_change_24h": f"Price now minus 24 h ago {_CCY}.",
    "price_change_percentage_24h": "Price change over 24 h, percent (5.0 = +5 %).",
    "market_cap_change_24h": f"Market cap now minus 24 h ago {_CCY}.",
    "market_cap_change_percentage_24h": "Market cap change over 24 h, percent.",
    "circulating_supply": "Coins in circulation (units of the coin); never negative.",
    "total_supply": "Coins created minus burnt (units of the coin); null if unknown.",
    "max_supply": "Coins that can ever exist (units of the coin); null when unlimited or unknown.",
    "ath": f"All-time high price {_CCY}.",
    "ath_change_percentage": "Price now against the all-time high, percent (negative below it).",
    "atl": f"All-time low price {_CCY}.",
    "atl_change_percentage": "Price now against the all-time low, percent.",
    "price_change_percentage_1h_in_currency": "Price change over 1 h, percent; null unless the API was asked for it.",
    "price_change_percentage_24h_in_currency": "Price change over 24 h, percent, as the price_change_percentage option.",
    "price_change_percentage_7d_in_currency": "Price change over 7 days, percent; null unless asked for.",
}
NUMERIC_FIELDS = tuple(NUMERIC_DOCS)
TIMESTAMP_DOCS = {
    "ath_date": "When the all-time high was reached (UTC).",
    "atl_date": "When the all-time low was reached (UTC).",
    "last_updated": "When CoinGecko last updated the coin's figures (UTC).",
}
TIMESTAMP_FIELDS = tuple(TIMESTAMP_DOCS)

SILVER = LakeTable(
    "cleaned_data",
    "silver_market_snapshots",
    (
        ("coin_id", pa.string(), "CoinGecko's coin id (e.g. 'bitcoin'): stable, unlike symbol and name."),
        ("symbol", pa.string(), "Ticker symbol, lower case as sent (e.g. 'btc'); not unique across coins."),
        ("name", pa.string(), "Display name (e.g. 'Bitcoin')."),
        ("vs_currency", pa.string(), "The quote currency of every amount in the row (e.g. 'usd')."),
        ("market_cap_rank", pa.int32(), "Rank by market cap at capture time, 1 = largest; null if unranked."),
        *[(field, pa.float64(), doc) for field, doc in NUMERIC_DOCS.items()],
        *[(field, TS, doc) for field, doc in TIMESTAMP_DOCS.items()],
        ("roi_times", pa.float64(), "Return on investment since the ICO, as a multiple; null for most coins."),
        ("roi_currency", pa.string(), "The currency the ROI is measured against; null with roi_times."),
        ("roi_percentage", pa.float64(), "Return on investment since the ICO, percent; null with roi_times."),
        ("is_high_volume", pa.bool_(), "total_volume at or above the high-volume threshold (1e9 by default)."),
        ("is_stale", pa.bool_(), "last_updated lags the capture by more than the allowed interval (2 h by default)."),
        *_LINEAGE,
    ),
    key=("coin_id", "ingest_hour"),
    description="One typed, validated row per coin and hour.",
)

QUARANTINE = LakeTable(
    "cleaned_data",
    "silver_quarantine",
    (
        ("coin_id", pa.string(), "The record's id as sent; null when missing."),
        (
            "reason",
            pa.string(),
            "Why Silver refused it, e.g. 'missing_id', 'non_positive_price', 'not_numeric:market_cap'.",
        ),
        ("record_json", pa.string(), "The Bronze record, JSON text as the API sent it."),
        *_LINEAGE,
    ),
    key=("capture_id", "page", "position"),
    description="Bronze records rejected by Silver, each with the reason.",
)

GOLD_OVERVIEW = LakeTable(
    "aggregated_data",
    "gold_market_overview",
    (
        ("vs_currency", pa.string(), "The quote currency of the amounts."),
        ("coins_tracked", pa.int64(), "Coins in Silver for the hour."),
        ("total_market_cap", pa.float64(), "Sum of the coins' market caps, in vs_currency."),
        ("total_volume", pa.float64(), "Sum of the coins' 24 h volumes, in vs_currency."),
        ("btc_dominance_pct", pa.float64(), "Bitcoin's share of total_market_cap, percent."),
        ("eth_dominance_pct", pa.float64(), "Ethereum's share of total_market_cap, percent."),
        ("advancers", pa.int64(), "Coins whose price_change_percentage_24h is above 0."),
        ("decliners", pa.int64(), "Coins whose price_change_percentage_24h is below 0."),
        ("unchanged", pa.int64(), "Coins whose 24 h change is 0 or unknown."),
        ("high_volume_coins", pa.int64(), "Coins flagged is_high_volume."),
        ("stale_coins", pa.int64(), "Coins flagged is_stale."),
    ),
    key=("ingest_hour",),
    description="The whole market per hour: totals, BTC/ETH dominance, breadth.",
)

MARKET_CAP_TIERS = (  # (tier, lower bound inclusive) in the quote currency, largest first
    ("mega", 100e9),
    ("large", 10e9),
    ("mid", 1e9),
    ("small", 100e6),
    ("micro", 0.0),
)

GOLD_DISTRIBUTION = LakeTable(
    "aggregated_data",
    "gold_market_distribution",
    (
        (
            "market_cap_tier",
            pa.string(),
            "mega (>= 100 bn), large (>= 10 bn), mid (>= 1 bn), small (>= 100 M), micro, or 'unknown' (no market cap).",
        ),
        ("tier_order", pa.int32(), "1 = mega ... 5 = micro, 6 = unknown: sorts tiers largest first."),
        ("coin_count", pa.int64(), "Coins in the tier for the hour."),
        ("total_market_cap", pa.float64(), "Sum of the tier's market caps, in the quote currency."),
        ("total_volume", pa.float64(), "Sum of the tier's 24 h volumes, in the quote currency."),
        ("market_cap_share", pa.float64(), "The tier's share of the hour's total market cap, 0..1."),
        ("volume_share", pa.float64(), "The tier's share of the hour's total volume, 0..1."),
    ),
    key=("ingest_hour", "market_cap_tier"),
    description="Coins, market cap and volume per market-cap tier and hour.",
)

GOLD_VOLATILITY = LakeTable(
    "aggregated_data",
    "gold_price_volatility",
    (
        ("coin_id", pa.string(), "CoinGecko's coin id."),
        ("symbol", pa.string(), "Ticker symbol in the hour."),
        ("observations", pa.int64(), "Silver hours of the coin in the trailing 24 h window (1..24)."),
        ("avg_price", pa.float64(), "Mean price over the window, in the quote currency."),
        ("min_price", pa.float64(), "Lowest hourly price in the window."),
        ("max_price", pa.float64(), "Highest hourly price in the window."),
        ("price_range_pct", pa.float64(), "(max_price - min_price) / min_price x 100."),
        (
            "stddev_log_return",
            pa.float64(),
            "Sample standard deviation of consecutive hourly log returns in the window; null below 2 returns.",
        ),
    ),
    key=("coin_id", "ingest_hour"),
    description="Per coin and hour, price statistics over the trailing 24 hours (that hour included).",
)

GOLD_TRENDS = LakeTable(
    "aggregated_data",
    "gold_market_trends",
    (
        ("coin_id", pa.string(), "CoinGecko's coin id."),
        ("symbol", pa.string(), "Ticker symbol in the hour."),
        ("current_price", pa.float64(), "Price in the hour, in the quote currency."),
        ("ma_24h", pa.float64(), "Mean price over the trailing 24 hours present in Silver."),
        ("ma_7d", pa.float64(), "Mean price over the trailing 7 days (168 hours) present in Silver."),
        (
            "return_1h_pct",
            pa.float64(),
            "Price change against the same coin exactly 1 h earlier, percent; null if absent.",
        ),
        ("return_24h_pct", pa.float64(), "Price change against exactly 24 h earlier, percent; null if absent."),
        ("return_7d_pct", pa.float64(), "Price change against exactly 7 days earlier, percent; null if absent."),
        (
            "trend",
            pa.string(),
            "'up' when price > ma_24h > ma_7d, 'down' when price < ma_24h < ma_7d, else 'sideways'; "
            "null with fewer than 24 Silver hours in the 7-day window.",
        ),
        ("market_cap_rank", pa.int32(), "Rank by market cap in the hour."),
        ("rank_change_24h", pa.int32(), "Rank 24 h earlier minus rank now: positive means the coin climbed."),
    ),
    key=("coin_id", "ingest_hour"),
    description="Per coin and hour: moving averages, returns and a trend label.",
)

GOLD_TABLES = (GOLD_OVERVIEW, GOLD_DISTRIBUTION, GOLD_VOLATILITY, GOLD_TRENDS)
ALL_TABLES = (BRONZE, SILVER, QUARANTINE, *GOLD_TABLES)
