"""Bronze → Silver: type, validate and flag CoinGecko ``/coins/markets`` records (pure PySpark).

Every Bronze row has exactly one fate: the typed Silver table, the quarantine (with the first
rule that rejected it), or superseded by a record of the same coin and hour from a capture of
higher precedence (nothing lost: Bronze = Silver + quarantine + superseded). Spark runs with
ANSI mode on, so every conversion of untrusted text is a ``try_cast``: a bad value becomes a
quarantine reason, never a failed job.

Precedence among the valid records of one coin and hour (Bronze keeps every capture):
1. a snapshot beats a history reconstruction (it has every field, taken in the hour itself);
2. among captures of the same kind, the newest capture wins: the greatest capture stamp (the
   id's text after ``capture=``, its UTC capture time to the second, then its run), ties broken
   by the greatest whole id; the stamp, not the id, as a history id starts with its span. So a
   ``refetch`` replaces what Silver shows while Bronze keeps both;
3. within one capture, the first (page, position): a later copy is ``duplicate_in_hour``
   (ranks moved while paging), quarantined.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from crypto_assets.captures import CAPTURE_STAMP
from crypto_assets.tables import BRONZE, NUMERIC_FIELDS, QUARANTINE, SILVER, TIMESTAMP_FIELDS

# Fields read from the record, in the order CoinGecko sends them (api-notes §2), so that
# "the first non-numeric field" means the first one in the record.
_NUMBER_CHECK_ORDER = (
    "current_price",
    "market_cap",
    "market_cap_rank",
    *[f for f in NUMERIC_FIELDS if f not in ("current_price", "market_cap")],
)
_RECORD_FIELDS = ("id", "symbol", "name", *_NUMBER_CHECK_ORDER, *TIMESTAMP_FIELDS, "roi")
# Documented fields not carried to Silver (the image URL, fields of parameters we do not
# request): known, so not drift.
KNOWN_FIELDS = frozenset(
    (
        *_RECORD_FIELDS,
        "image",
        "sparkline_in_7d",
        *(f"price_change_percentage_{tf}_in_currency" for tf in ("14d", "30d", "200d", "1y")),
    )
)

# Every scalar as text: Spark hands back the number's own text (or a string's content), so
# numbers sent as strings parse too and a bad value stays visible instead of nulling the row.
_RECORD_SCHEMA = T.StructType([T.StructField(f, T.StringType()) for f in _RECORD_FIELDS])
_ROI_SCHEMA = T.StructType([T.StructField(f, T.StringType()) for f in ("times", "currency", "percentage")])
_ROI_NUMBERS = {"roi_times": "times", "roi_percentage": "percentage"}
_SUPPLY_FIELDS = ("circulating_supply", "total_supply", "max_supply")
_LINEAGE = ("capture_id", "page", "position", "ingested_at", "ingest_hour", "ingest_date")
_SUPERSEDED = "_superseded"  # a fate, not a quarantine reason


@dataclass(frozen=True)
class SilverRules:
    """Thresholds of the Silver flags.

    ``is_high_volume`` is ``total_volume >= high_volume_threshold`` (in the quote currency);
    ``is_stale`` is ``captured - last_updated > stale_after_seconds``, where ``captured`` is
    ``ingested_at`` but no later than the end of the ingestion hour (a history point fetched
    days later is as fresh as its hour). Each is null when its input is null: an unknown
    volume or update time is not evidence either way.
    """

    high_volume_threshold: float = 1e9
    stale_after_seconds: int = 7200


def _number(text: Column) -> Column:
    """The text as a finite double, else null (NaN/Infinity are not market data)."""
    value = text.try_cast("double")
    return F.when(~F.isnan(value) & (F.abs(value) != float("inf")), value)


def clean_markets(bronze: DataFrame, rules: SilverRules) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Split Bronze into (silver, quarantine, superseded): the first two in their tables.py
    column order, the third the superseded records' ``ingest_hour``, ``coin_id``, ``capture_id``.

    One Spark action: every record is parsed and classified once and comes back with its fate
    (a record's text only when it is rejected); the split is Arrow's."""
    rec = F.from_json("record_json", _RECORD_SCHEMA)
    parsed = bronze.select(
        "*",
        F.json_object_keys("record_json").isNotNull().alias("_is_object"),
        *[rec[f].alias(f"_r_{f}") for f in _RECORD_FIELDS],
    ).withColumn("_roi", F.from_json("_r_roi", _ROI_SCHEMA))
    texts = {f: F.col(f"_r_{f}") for f in _NUMBER_CHECK_ORDER}
    texts.update({c: F.col("_roi")[k] for c, k in _ROI_NUMBERS.items()})
    numbers = {f: _number(text) for f, text in texts.items()}
    # A rank must be a whole number that fits int32; otherwise it is "not numeric".
    rank = numbers["market_cap_rank"].try_cast("int")
    numbers["market_cap_rank"] = F.when(rank == numbers["market_cap_rank"], rank)
    typed = parsed.select(
        "*",
        *[value.alias(f) for f, value in numbers.items()],
        *[F.col(f"_r_{f}").try_cast("timestamp").alias(f) for f in TIMESTAMP_FIELDS],
        F.col("_roi.currency").alias("roi_currency"),
    )
    not_numeric = F.coalesce(
        *[F.when(text.isNotNull() & F.col(f).isNull(), F.lit(f"not_numeric:{f}")) for f, text in texts.items()]
    )
    negative_supply = F.coalesce(*[F.when(F.col(f) < 0, F.lit(f"negative_supply:{f}")) for f in _SUPPLY_FIELDS])
    record_reason = (
        F.when(~F.col("_is_object"), F.lit("malformed_json"))
        .when(F.col("coin_id").isNull() | (F.trim("coin_id") == ""), F.lit("missing_id"))
        .when(not_numeric.isNotNull(), not_numeric)
        .when(F.coalesce(F.col("current_price") <= 0, F.lit(True)), F.lit("non_positive_price"))
        .when(F.col("total_volume") < 0, F.lit("negative_volume"))
        .when(negative_supply.isNotNull(), negative_supply)
        .when(F.col("market_cap") < 0, F.lit("negative_market_cap"))
    )
    checked = typed.withColumn("_reason", record_reason)
    # Among records that pass every other rule: the precedence of the module docstring.
    source_rank = F.when(F.col("source") == "snapshot", 0).otherwise(1)
    best_first = Window.partitionBy(F.col("_reason").isNull(), "coin_id", "ingest_hour").orderBy(
        source_rank,
        F.substring_index("capture_id", CAPTURE_STAMP, -1).desc(),
        F.col("capture_id").desc(),
        "page",
        "position",
    )
    ranked = checked.select(
        "*",
        F.row_number().over(best_first).alias("_rank"),
        F.first("capture_id").over(best_first).alias("_best_capture"),
    )
    loser = F.col("_reason").isNull() & (F.col("_rank") > 1)
    checked = ranked.withColumn(
        "_reason",
        F.when(loser & (F.col("capture_id") == F.col("_best_capture")), F.lit("duplicate_in_hour"))
        .when(loser, F.lit(_SUPERSEDED))
        .otherwise(F.col("_reason")),
    )

    captured = F.least(F.col("ingested_at"), F.col("ingest_hour") + F.expr("INTERVAL 1 HOUR"))
    lag_micros = F.unix_micros(captured) - F.unix_micros("last_updated")
    fates = checked.select(
        "coin_id",
        F.col("_r_symbol").alias("symbol"),
        F.col("_r_name").alias("name"),
        "vs_currency",
        "market_cap_rank",
        *NUMERIC_FIELDS,
        *TIMESTAMP_FIELDS,
        "roi_times",
        "roi_currency",
        "roi_percentage",
        (F.col("total_volume") >= rules.high_volume_threshold).alias("is_high_volume"),
        (lag_micros > rules.stale_after_seconds * 1_000_000).alias("is_stale"),
        "source",
        *_LINEAGE,
        F.col("_reason").alias("reason"),
        F.when(F.col("_reason").isNotNull() & (F.col("_reason") != _SUPERSEDED), F.col("record_json")).alias(
            "record_json"
        ),
    ).toArrow()
    reason = fates.column("reason")
    silver = fates.filter(pc.is_null(reason)).select(SILVER.arrow_schema.names)
    rejected = fates.filter(pc.is_valid(reason))
    superseded = pc.equal(rejected.column("reason"), _SUPERSEDED)
    quarantine = rejected.filter(pc.invert(superseded)).select(QUARANTINE.arrow_schema.names)
    assert silver.schema.names == SILVER.arrow_schema.names and quarantine.schema.names == QUARANTINE.arrow_schema.names
    return silver, quarantine, rejected.filter(superseded).select(["ingest_hour", "coin_id", "capture_id"])


def warm_up(spark) -> None:
    """Run Silver's plan once over one made-up record: the JVM's first query compiles and loads
    what every later one reuses (seconds on a fresh JVM), so doing it while Bronze fetches takes
    that off the run's critical path."""
    from datetime import datetime, timezone

    hour = datetime(2000, 1, 1, tzinfo=timezone.utc)
    record = {
        "coin_id": "warm-up",
        "record_json": '{"id": "warm-up", "current_price": 1}',
        "source": "snapshot",
        "vs_currency": "usd",
        "capture_id": "warm-up",
        "page": 1,
        "position": 0,
        "request": "",
        "http_status": 200,
        "payload_sha256": "",
        "ingested_at": hour,
        "run_id": "",
        "ingest_hour": hour,
        "ingest_date": "2000-01-01",
    }
    clean_markets(spark.createDataFrame(pa.Table.from_pylist([record], schema=BRONZE.arrow_schema)), SilverRules())


def unknown_fields(record_texts: Iterable[str]) -> Counter:
    """Top-level record keys Silver does not know → number of records carrying them (drift).

    Plain Python over Bronze's JSON texts, so Bronze can report drift without starting Spark;
    texts that are not JSON objects are left to Silver's ``malformed_json``.
    """
    drift: Counter = Counter()
    for text in record_texts:
        try:
            record = json.loads(text)
        except ValueError:
            continue
        if isinstance(record, dict):
            drift.update(key for key in record if key not in KNOWN_FIELDS)
    return drift
