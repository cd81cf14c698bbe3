"""Names and Arrow schemas of the lakehouse tables (docs/design.md §4): the contract between layers.

Every table has ``ingest_hour`` (UTC start of the hour) and ``ingest_date`` (its date, the
Delta partition column, so a window read touches only the days it needs). No column varies
from one run to the next for the same input, so re-running an hour rewrites identical rows;
the run that wrote a version is recorded in the Delta commit instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from dagster import AssetKey

TS = pa.timestamp("us", tz="UTC")

WINDOW_COLUMNS = [("ingest_hour", TS), ("ingest_date", pa.string())]


@dataclass(frozen=True)
class LakeTable:
    schema_name: str  # the catalog schema of the Azure seed: raw_data, cleaned_data, aggregated_data
    name: str
    arrow_schema: pa.Schema
    key: tuple[str, ...]  # unique within the table
    description: str

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


def _schema(*columns: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, dtype) for name, dtype in [*columns, *WINDOW_COLUMNS]])


BRONZE = LakeTable(
    "raw_data",
    "bronze_coingecko_markets",
    _schema(
        ("coin_id", pa.string()),  # the record's "id" as sent (null if missing)
        ("record_json", pa.string()),  # the record as the API sent it, JSON text
        ("source", pa.string()),  # 'snapshot' (/coins/markets) or 'history' (market_chart/range)
        ("vs_currency", pa.string()),
        ("capture_id", pa.string()),  # names the landing folder of the capture
        ("page", pa.int32()),  # page (snapshot) or chunk (history) number, 1-based
        ("position", pa.int32()),  # 0-based index of the record in its page
        ("request", pa.string()),  # path and query, never the key
        ("http_status", pa.int32()),
        ("payload_sha256", pa.string()),  # hash of the landing file the record came from
        ("ingested_at", TS),  # when the page was received
        ("run_id", pa.string()),  # the Dagster run that captured it
    ),
    key=("capture_id", "page", "position"),
    description="Every record CoinGecko returned, as JSON text, with where and when it came from.",
)

NUMERIC_FIELDS = (
    "current_price",
    "market_cap",
    "fully_diluted_valuation",
    "total_volume",
    "high_24h",
    "low_24h",
    "price_change_24h",
    "price_change_percentage_24h",
    "market_cap_change_24h",
    "market_cap_change_percentage_24h",
    "circulating_supply",
    "total_supply",
    "max_supply",
    "ath",
    "ath_change_percentage",
    "atl",
    "atl_change_percentage",
    "price_change_percentage_1h_in_currency",
    "price_change_percentage_24h_in_currency",
    "price_change_percentage_7d_in_currency",
)
TIMESTAMP_FIELDS = ("ath_date", "atl_date", "last_updated")

SILVER = LakeTable(
    "cleaned_data",
    "silver_market_snapshots",
    _schema(
        ("coin_id", pa.string()),
        ("symbol", pa.string()),
        ("name", pa.string()),
        ("vs_currency", pa.string()),
        ("market_cap_rank", pa.int32()),
        *[(field, pa.float64()) for field in NUMERIC_FIELDS],
        *[(field, TS) for field in TIMESTAMP_FIELDS],
        ("roi_times", pa.float64()),
        ("roi_currency", pa.string()),
        ("roi_percentage", pa.float64()),
        ("is_high_volume", pa.bool_()),
        ("is_stale", pa.bool_()),  # last_updated lags the capture by more than the allowed interval
        ("source", pa.string()),
        # lineage: where in Bronze the row came from
        ("capture_id", pa.string()),
        ("page", pa.int32()),
        ("position", pa.int32()),
        ("ingested_at", TS),
    ),
    key=("coin_id", "ingest_hour"),
    description="One typed, validated row per coin and hour.",
)

QUARANTINE = LakeTable(
    "cleaned_data",
    "silver_quarantine",
    _schema(
        ("coin_id", pa.string()),
        ("reason", pa.string()),  # e.g. 'missing_id', 'non_positive_price', 'not_numeric:market_cap'
        ("record_json", pa.string()),
        ("source", pa.string()),
        ("capture_id", pa.string()),
        ("page", pa.int32()),
        ("position", pa.int32()),
        ("ingested_at", TS),
    ),
    key=("capture_id", "page", "position"),
    description="Bronze records rejected by Silver, each with the reason.",
)

GOLD_OVERVIEW = LakeTable(
    "aggregated_data",
    "gold_market_overview",
    _schema(
        ("vs_currency", pa.string()),
        ("coins_tracked", pa.int64()),
        ("total_market_cap", pa.float64()),
        ("total_volume", pa.float64()),
        ("btc_dominance_pct", pa.float64()),
        ("eth_dominance_pct", pa.float64()),
        ("advancers", pa.int64()),  # price_change_percentage_24h > 0
        ("decliners", pa.int64()),  # < 0
        ("unchanged", pa.int64()),  # = 0 or unknown
        ("high_volume_coins", pa.int64()),
        ("stale_coins", pa.int64()),
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
    _schema(
        ("market_cap_tier", pa.string()),  # MARKET_CAP_TIERS, or 'unknown' for a null market cap
        ("tier_order", pa.int32()),  # 1 = mega … 5 = micro, 6 = unknown
        ("coin_count", pa.int64()),
        ("total_market_cap", pa.float64()),
        ("total_volume", pa.float64()),
        ("market_cap_share", pa.float64()),  # of the hour's total market cap, 0..1
        ("volume_share", pa.float64()),
    ),
    key=("ingest_hour", "market_cap_tier"),
    description="Coins, market cap and volume per market-cap tier and hour.",
)

GOLD_VOLATILITY = LakeTable(
    "aggregated_data",
    "gold_price_volatility",
    _schema(
        ("coin_id", pa.string()),
        ("symbol", pa.string()),
        ("observations", pa.int64()),  # Silver hours in the trailing 24 h window
        ("avg_price", pa.float64()),
        ("min_price", pa.float64()),
        ("max_price", pa.float64()),
        ("price_range_pct", pa.float64()),  # (max - min) / min * 100
        ("stddev_log_return", pa.float64()),  # of consecutive hourly log returns in the window
    ),
    key=("coin_id", "ingest_hour"),
    description="Per coin and hour, price statistics over the trailing 24 hours (that hour included).",
)

GOLD_TRENDS = LakeTable(
    "aggregated_data",
    "gold_market_trends",
    _schema(
        ("coin_id", pa.string()),
        ("symbol", pa.string()),
        ("current_price", pa.float64()),
        ("ma_24h", pa.float64()),
        ("ma_7d", pa.float64()),
        ("return_1h_pct", pa.float64()),  # against the same coin exactly 1 h earlier; null if absent
        ("return_24h_pct", pa.float64()),
        ("return_7d_pct", pa.float64()),
        ("trend", pa.string()),  # 'up', 'down', 'sideways', or null when history is too short
        ("market_cap_rank", pa.int32()),
        ("rank_change_24h", pa.int32()),  # rank 24 h earlier minus rank now: positive = climbed
    ),
    key=("coin_id", "ingest_hour"),
    description="Per coin and hour: moving averages, returns and a trend label.",
)

GOLD_TABLES = (GOLD_OVERVIEW, GOLD_DISTRIBUTION, GOLD_VOLATILITY, GOLD_TRENDS)
ALL_TABLES = (BRONZE, SILVER, QUARANTINE, *GOLD_TABLES)
