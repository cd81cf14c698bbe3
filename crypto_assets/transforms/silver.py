"""Bronze → Silver: type, validate and flag CoinGecko ``/coins/markets`` records (Spark SQL).

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
from pyspark.sql import DataFrame

from crypto_assets.captures import CAPTURE_STAMP
from crypto_assets.tables import NUMERIC_FIELDS, QUARANTINE, SILVER, TIMESTAMP_FIELDS
from crypto_assets.transforms.sql import double

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
_RECORD_SCHEMA = ", ".join(f"`{f}` STRING" for f in _RECORD_FIELDS)
_ROI_SCHEMA = "times STRING, currency STRING, percentage STRING"
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


def _number(text: str) -> str:
    """SQL: the text as a finite double, else null (NaN/Infinity are not market data; Spark
    orders NaN above every number, so one comparison rejects both)."""
    return f"CASE WHEN abs(try_cast({text} AS DOUBLE)) < {double(float('inf'))} THEN try_cast({text} AS DOUBLE) END"


def _first_of(cases: Iterable[tuple[str, str]]) -> str:
    """SQL: the label of the first (condition, label) that holds, else null."""
    return "CASE " + " ".join(f"WHEN {condition} THEN '{label}'" for condition, label in cases) + " END"


def clean_markets(bronze: DataFrame, rules: SilverRules) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Split Bronze into (silver, quarantine, superseded): the first two in their tables.py
    column order, the third the superseded records' ``ingest_hour``, ``coin_id``, ``capture_id``.

    One Spark action: every record is parsed and classified once and comes back with its fate
    (a record's text only when it is rejected); the split is Arrow's. The rules are SQL text, a
    few calls into the JVM per slice: built from Column objects they were 5,000 (a second of a
    cold hourly run)."""
    parsed = bronze.selectExpr(
        "*",
        "json_object_keys(record_json) IS NOT NULL AS _is_object",
        f"from_json(record_json, '{_RECORD_SCHEMA}') AS _record",
    ).selectExpr(
        "*", *[f"_record.`{f}` AS _r_{f}" for f in _RECORD_FIELDS], f"from_json(_record.roi, '{_ROI_SCHEMA}') AS _roi"
    )
    texts = {f: f"_r_{f}" for f in _NUMBER_CHECK_ORDER}
    texts.update({column: f"_roi.{key}" for column, key in _ROI_NUMBERS.items()})
    numbers = {f: _number(text) for f, text in texts.items()}
    # A rank must be a whole number that fits int32; otherwise it is "not numeric".
    rank = f"try_cast({numbers['market_cap_rank']} AS INT)"
    numbers["market_cap_rank"] = f"CASE WHEN {rank} = {numbers['market_cap_rank']} THEN {rank} END"
    typed = parsed.selectExpr(
        "*",
        *[f"{value} AS {f}" for f, value in numbers.items()],
        *[f"try_cast(_r_{f} AS TIMESTAMP) AS {f}" for f in TIMESTAMP_FIELDS],
        "_roi.currency AS roi_currency",
    )
    # The first rule a record breaks is its reason (one CASE: each rule's test written once).
    record_reason = _first_of(
        (
            ("NOT _is_object", "malformed_json"),
            ("coin_id IS NULL OR trim(coin_id) = ''", "missing_id"),
            *((f"{text} IS NOT NULL AND {f} IS NULL", f"not_numeric:{f}") for f, text in texts.items()),
            ("coalesce(current_price <= 0, true)", "non_positive_price"),
            ("total_volume < 0", "negative_volume"),
            *((f"{f} < 0", f"negative_supply:{f}") for f in _SUPPLY_FIELDS),
            ("market_cap < 0", "negative_market_cap"),
        )
    )
    # Among records that pass every other rule: the precedence of the module docstring.
    best_first = (
        "PARTITION BY _reason IS NULL, coin_id, ingest_hour ORDER BY CASE WHEN source = 'snapshot' THEN 0 ELSE 1 END,"
        f" substring_index(capture_id, '{CAPTURE_STAMP}', -1) DESC, capture_id DESC, page, position"
    )
    ranked = typed.selectExpr("*", f"{record_reason} AS _reason").selectExpr(
        "*", f"row_number() OVER ({best_first}) AS _rank", f"first(capture_id) OVER ({best_first}) AS _best_capture"
    )
    reason = (
        "CASE WHEN _reason IS NULL AND _rank > 1 AND capture_id = _best_capture THEN 'duplicate_in_hour'"
        f" WHEN _reason IS NULL AND _rank > 1 THEN '{_SUPERSEDED}' ELSE _reason END"
    )
    captured = "least(ingested_at, ingest_hour + INTERVAL 1 HOUR)"
    fates = (
        ranked.selectExpr("*", f"{reason} AS reason")
        .selectExpr(
            "coin_id",
            "_r_symbol AS symbol",
            "_r_name AS name",
            "vs_currency",
            "market_cap_rank",
            *NUMERIC_FIELDS,
            *TIMESTAMP_FIELDS,
            "roi_times",
            "roi_currency",
            "roi_percentage",
            f"total_volume >= {double(rules.high_volume_threshold)} AS is_high_volume",
            f"unix_micros({captured}) - unix_micros(last_updated) > {int(rules.stale_after_seconds) * 1_000_000}"
            " AS is_stale",
            "source",
            *_LINEAGE,
            "reason",
            f"CASE WHEN reason IS NOT NULL AND reason != '{_SUPERSEDED}' THEN record_json END AS record_json",
        )
        .toArrow()
    )
    reason_column = fates.column("reason")
    silver = fates.filter(pc.is_null(reason_column)).select(SILVER.arrow_schema.names)
    rejected = fates.filter(pc.is_valid(reason_column))
    superseded = pc.equal(rejected.column("reason"), _SUPERSEDED)
    quarantine = rejected.filter(pc.invert(superseded)).select(QUARANTINE.arrow_schema.names)
    assert silver.schema.names == SILVER.arrow_schema.names and quarantine.schema.names == QUARANTINE.arrow_schema.names
    return silver, quarantine, rejected.filter(superseded).select(["ingest_hour", "coin_id", "capture_id"])


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
