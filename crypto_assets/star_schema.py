"""The SQL star schema (docs/design.md §4): table definitions, dialect-free, and the pure helpers
that turn Silver/Gold Arrow tables into dimension and fact rows (dim_coin's versions:
``coin_versions.py``).

Nothing here talks to a database; ``resources/warehouse/`` renders the definitions as SQL and
applies the changes in one transaction.

Logical column kinds: ``int``, ``bigint``, ``double``, ``key`` (short text that may be part of
a key or an index), ``text``, ``bool``, ``timestamp`` (naive UTC), ``date``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Iterable, Optional

import pyarrow as pa

from crypto_assets.partitions import naive_utc
from crypto_assets.tables import (
    GOLD_DISTRIBUTION,
    GOLD_OVERVIEW,
    GOLD_TRENDS,
    GOLD_VOLATILITY,
    SILVER,
    LakeTable,
)

SCHEMA_VERSION = 1
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    nullable: bool = True
    description: str = ""  # the column's comment in the warehouse (every column has one)


@dataclass(frozen=True)
class StarTable:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[tuple[str, str, str], ...] = ()  # (column, dimension table, its column)
    unique: tuple[str, ...] = ()
    source: Optional[LakeTable] = None  # the lakehouse table a fact is loaded from
    # source columns deliberately not carried (they live in a dimension or are lineage);
    # any other source column missing from the SQL table is added (additive evolution)
    not_carried: frozenset[str] = frozenset()
    description: str = ""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def source_table(self) -> LakeTable:
        """The lakehouse table a fact is loaded from; a dimension has none (it is derived)."""
        if self.source is None:
            raise ValueError(f"{self.name} is a dimension: it is not loaded from one lakehouse table")
        return self.source

    @property
    def has_coin(self) -> bool:
        return "coin_key" in self.column_names


TIME_KEY_DOC = "The hour, as the integer YYYYMMDDHH (UTC): joins dim_time."
COIN_KEY_DOC = "The dim_coin version of the coin valid in the hour: joins dim_coin."
TIME_KEY = Column("time_key", "int", False, TIME_KEY_DOC)
COIN_KEY = Column("coin_key", "int", False, COIN_KEY_DOC)

DIM_TIME = StarTable(
    "dim_time",
    (
        Column("time_key", "int", False, "The hour, as the integer YYYYMMDDHH (UTC): the key facts join on."),
        Column("hour_start", "timestamp", False, "Start of the hour, UTC."),
        Column("date", "date", description="UTC date of the hour."),
        Column("hour", "int", description="Hour of the day, 0-23 (UTC)."),
        Column("weekday", "int", description="ISO weekday: 1 = Monday ... 7 = Sunday."),
        Column("week", "int", description="ISO week number, 1-53."),
        Column("month", "int", description="Month, 1-12."),
        Column("quarter", "int", description="Quarter, 1-4."),
        Column("year", "int", description="Calendar year (UTC)."),
    ),
    primary_key=("time_key",),
    description="One row per UTC hour that has facts.",
)

DIM_COIN = StarTable(
    "dim_coin",
    (
        Column("coin_key", "int", False, "Surrogate key of this version of the coin."),
        Column("coin_id", "key", False, "CoinGecko's coin id (e.g. 'bitcoin'): the same on every version."),
        Column("symbol", "text", description="Ticker symbol while this version was valid."),
        Column("name", "text", description="Display name while this version was valid."),
        Column("valid_from", "timestamp", False, "First hour (UTC) this version holds for."),
        Column("valid_to", "timestamp", description="Hour (UTC) the next version starts; null for the current one."),
        Column("is_current", "bool", False, "Whether this is the coin's current version."),
        Column("first_seen", "timestamp", False, "First hour the coin has facts, on every version of it."),
        Column("last_seen", "timestamp", False, "Last hour the coin has facts, on every version of it."),
    ),
    primary_key=("coin_key",),
    unique=("coin_id", "valid_from"),
    description="Coins as a type-2 dimension: a new version whenever symbol or name changes.",
)

_TIME_FK = ("time_key", DIM_TIME.name, "time_key")
_COIN_FK = ("coin_key", DIM_COIN.name, "coin_key")
_WINDOW = {"ingest_hour", "ingest_date"}
_COIN_IDENTITY = {"coin_id", "symbol", "name"}  # replaced by coin_key

ARROW_KINDS: tuple[tuple[Callable[[pa.DataType], bool], str], ...] = (
    (pa.types.is_boolean, "bool"),
    (lambda t: pa.types.is_integer(t) and t.bit_width < 64, "int"),
    (pa.types.is_integer, "bigint"),
    (pa.types.is_floating, "double"),
    (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "text"),
    (pa.types.is_timestamp, "timestamp"),
    (pa.types.is_date, "date"),
)


def arrow_kind(dtype: pa.DataType) -> str:
    for test, kind in ARROW_KINDS:
        if test(dtype):
            return kind
    raise ValueError(f"no SQL column kind for Arrow type {dtype}")


def _measures(source: LakeTable, names: Iterable[str]) -> tuple[Column, ...]:
    """Columns carried from a lakehouse table: its types and its descriptions."""
    types = {f.name: f.type for f in source.arrow_schema}
    return tuple(
        Column(n, "key" if n == "market_cap_tier" else arrow_kind(types[n]), description=source.column_docs[n])
        for n in names
    )


def _gold_fact(name: str, source: LakeTable, key: tuple[str, ...]) -> StarTable:
    dropped = _WINDOW | (_COIN_IDENTITY if "coin_id" in source.arrow_schema.names else set())
    measures = _measures(source, [n for n in source.arrow_schema.names if n not in dropped])
    coin = "coin_key" in key
    head = (TIME_KEY,) + ((COIN_KEY,) if coin else ())
    columns = head + tuple(dataclasses.replace(c, nullable=c.name not in key) for c in measures)
    return StarTable(
        name,
        columns,
        primary_key=key,
        foreign_keys=(_TIME_FK, _COIN_FK) if coin else (_TIME_FK,),
        source=source,
        not_carried=frozenset(dropped),
        description=f"{source.description} Loaded from {source.path}.",
    )


SNAPSHOT_MEASURES = (
    "current_price",
    "market_cap",
    "market_cap_rank",
    "fully_diluted_valuation",
    "total_volume",
    "high_24h",
    "low_24h",
    "price_change_percentage_24h",
    "circulating_supply",
    "total_supply",
    "max_supply",
    "is_high_volume",
    "is_stale",
    "source",
)

FACT_MARKET_SNAPSHOT = StarTable(
    "fact_market_snapshot",
    (TIME_KEY, COIN_KEY) + _measures(SILVER, SNAPSHOT_MEASURES),
    # a fact points at the coin version valid in its hour and versions of a coin never
    # overlap, so (time_key, coin_key) is unique exactly when (time_key, coin_id) is
    primary_key=("time_key", "coin_key"),
    foreign_keys=(_TIME_FK, _COIN_FK),
    source=SILVER,
    not_carried=frozenset(set(SILVER.arrow_schema.names) - set(SNAPSHOT_MEASURES)),
    description=f"{SILVER.description} Loaded from {SILVER.path}.",
)
FACT_MARKET_OVERVIEW = _gold_fact("fact_market_overview", GOLD_OVERVIEW, ("time_key",))
FACT_MARKET_DISTRIBUTION = _gold_fact("fact_market_distribution", GOLD_DISTRIBUTION, ("time_key", "market_cap_tier"))
FACT_PRICE_VOLATILITY = _gold_fact("fact_price_volatility", GOLD_VOLATILITY, ("time_key", "coin_key"))
FACT_MARKET_TRENDS = _gold_fact("fact_market_trends", GOLD_TRENDS, ("time_key", "coin_key"))

SCHEMA_VERSION_TABLE = StarTable(
    "schema_version",
    (
        Column("version", "int", False, "Number of the change, 1 for the first."),
        Column("applied_at", "timestamp", False, "When the change was made (UTC)."),
        Column("description", "text", description="What changed: tables created, columns added."),
    ),
    primary_key=("version",),
    description="Every change the loader made to the star schema.",
)

COLUMN_DOCS = StarTable(
    "column_docs",
    (
        Column("relation_name", "key", False, "A table or view of the star schema, named without its schema."),
        Column("column_name", "key", False, "One of its columns; empty for the relation itself."),
        Column("description", "text", description="What it holds: units, currency, null meaning, origin."),
    ),
    primary_key=("relation_name", "column_name"),
    description="The description of every table, view and column of the star schema, for any SQL client.",
)


@dataclass(frozen=True)
class StarView:
    """A reporting view: its columns and their descriptions (the SQL is the dialect's)."""

    name: str
    columns: tuple[Column, ...]
    description: str


def _like(table: StarTable, *names: str) -> tuple[Column, ...]:
    by_name = {c.name: c for c in table.columns}
    return tuple(by_name[n] for n in names)


LATEST_MARKET = StarView(
    "v_latest_market",
    (
        *_like(DIM_COIN, "coin_key", "coin_id", "symbol", "name"),
        TIME_KEY,
        *_like(DIM_TIME, "hour_start"),
        *_like(FACT_MARKET_SNAPSHOT, *SNAPSHOT_MEASURES),
    ),
    "Each coin's newest snapshot, under its current symbol and name.",
)
DAILY_COIN_SUMMARY = StarView(
    "v_daily_coin_summary",
    (
        *_like(DIM_TIME, "date"),
        *_like(DIM_COIN, "coin_id", "symbol", "name"),
        Column("hours_observed", "bigint", description="Hours of the day the coin has a snapshot."),
        Column("min_price", "double", description="Lowest hourly price of the day, in the quote currency."),
        Column("max_price", "double", description="Highest hourly price of the day, in the quote currency."),
        Column("avg_price", "double", description="Mean hourly price of the day, in the quote currency."),
        Column("avg_market_cap", "double", description="Mean hourly market cap of the day, in the quote currency."),
        Column("avg_total_volume", "double", description="Mean of the hourly 24 h volumes of the day."),
    ),
    "Per coin and UTC day: hours observed and price, market cap and volume statistics.",
)
VIEWS = (LATEST_MARKET, DAILY_COIN_SUMMARY)

DIMENSIONS = (DIM_TIME, DIM_COIN)
FACTS = (
    FACT_MARKET_SNAPSHOT,
    FACT_MARKET_OVERVIEW,
    FACT_MARKET_DISTRIBUTION,
    FACT_PRICE_VOLATILITY,
    FACT_MARKET_TRENDS,
)
STAR_TABLES = (*DIMENSIONS, *FACTS)
FACT_BY_SOURCE = {fact.source_table.name: fact for fact in FACTS}
# Every table the loader creates, dimensions before the facts that reference them.
CREATED_TABLES = (*STAR_TABLES, SCHEMA_VERSION_TABLE, COLUMN_DOCS)


def documentation() -> list[tuple[str, str, str]]:
    """(relation, column, description) of every relation and column; column '' is the relation."""
    rows = []
    for relation in (*CREATED_TABLES, *VIEWS):
        rows.append((relation.name, "", relation.description))
        rows += [(relation.name, c.name, c.description) for c in relation.columns]
    return rows


# --- time -------------------------------------------------------------------------------


def time_key(hour: datetime) -> int:
    """YYYYMMDDHH: an integer, so window deletes never depend on timestamp text formats."""
    h = naive_utc(hour)
    return ((h.year * 100 + h.month) * 100 + h.day) * 100 + h.hour


def hour_of_time_key(key: int) -> datetime:
    """Naive UTC start of the hour a time key names."""
    return datetime(key // 1000000, key // 10000 % 100, key // 100 % 100, key % 100)


def dim_time_row(hour: datetime) -> tuple:
    h = naive_utc(hour)
    iso = h.isocalendar()
    return (time_key(h), h, h.date(), h.hour, iso[2], iso[1], h.month, (h.month - 1) // 3 + 1, h.year)


# --- Arrow to rows ----------------------------------------------------------------------


def column_values(table: pa.Table, name: str) -> list:
    """Python values of one column; timestamps become naive UTC (Arrow stores UTC)."""
    array = table.column(name)
    if pa.types.is_timestamp(array.type) and array.type.tz is not None:
        array = array.cast(pa.timestamp(array.type.unit))
    return array.to_pylist()


def hour_keys(table: pa.Table) -> list[int]:
    """The time key of every row, converting each distinct ``ingest_hour`` only once."""
    micros = table.column("ingest_hour").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
    epoch = datetime(1970, 1, 1)
    keys = {m: time_key(epoch + timedelta(microseconds=m)) for m in set(micros) if m is not None}
    if len(keys) < len(set(micros)):
        raise ValueError("ingest_hour is null in some rows")
    return [keys[m] for m in micros]


def carried_columns(fact: StarTable, table: pa.Table) -> list[str]:
    """Input columns that land in the fact table: all but the ones a dimension or key replaces."""
    return [n for n in table.column_names if n not in fact.not_carried]
