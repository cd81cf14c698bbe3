"""Bronze: an append-only log of captures — every record CoinGecko returned, byte for byte in
landing files and as JSON text in Delta.

Per hour of the run's window:
* already captured → re-used, no API call (unless ``refetch``, which adds a capture);
* the in-progress hour → a ``/coins/markets`` snapshot (``source='snapshot'``);
* a past hour never captured → reconstructed from ``/coins/{id}/market_chart/range``,
  fetched once per coin for the whole window (``source='history'``): price, market cap and
  volume only.

A run only ever adds captures; the rows of an hour are the union of its captures, and Silver
picks one record per coin (docs in ``transforms/silver.py``). Each capture is landed (bodies as
they arrive, then its manifest) and then appended, a part at a time, each part once. A capture
landed by a run that died before appending all of it is found and its missing parts appended by
the next run of its hours, instead of being fetched again. Memory holds one part, never the
window. CoinGecko calls run in the ``coingecko`` concurrency pool: one capture at a time across
the instance's runs; a history capture fetches a few coins at once (``HISTORY_CALLS_IN_FLIGHT``),
within the rate limit, and lands them in the universe's order.
"""

import json
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from crypto_assets import crashpoints
from crypto_assets.assets.checks import Check, audit, specs
from crypto_assets.assets.common import BACKFILL_POLICY, preview, run_window, table_definition_metadata, table_metadata
from crypto_assets.capture_log import Appended, append_capture_parts, unfinished_captures
from crypto_assets.captures import Capture, history_landing, land_snapshot
from crypto_assets.partitions import (
    HOUR,
    current_hour,
    hour_label,
    hourly_partitions,
    hours_in,
    window_label,
)
from crypto_assets.progress import Progress, duration
from crypto_assets.resources.coingecko import CoinGeckoError, CoinGeckoResource, MarketsCapture
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.tables import BRONZE
from crypto_assets.transforms.silver import unknown_fields

# How far back to look for the newest snapshot whose coins make the history universe.
UNIVERSE_LOOKBACK = timedelta(days=7)
# The Dagster concurrency pool of every step that calls CoinGecko (limit 1 in dagster.yaml).
COINGECKO_POOL = "coingecko"


class BronzeConfig(Config):
    refetch: bool = Field(
        default=False,
        description="Capture hours again even if Bronze has them (a new capture beside the old ones; Silver "
        "prefers the newer one of the same kind).",
    )


def unique_coins(records, limit: Optional[int]) -> list[dict]:
    """The first ``limit`` distinct coins of ``records`` (None: all): objects with a non-empty string id."""
    coins, seen = [], set()
    for record in records:
        coin_id = record.get("id") if isinstance(record, dict) else None
        if isinstance(coin_id, str) and coin_id.strip() and coin_id not in seen:
            seen.add(coin_id)
            coins.append(record)
    return coins[:limit]


def history_universe(lakehouse: LakehouseResource, fresh_snapshot, client, limit: Optional[int]):
    """The coins to reconstruct: the top ``limit`` of the newest snapshot, de-duplicated.

    Preference: the snapshot taken in this run; else the newest snapshot in Bronze from the
    last UNIVERSE_LOOKBACK; else today's top coins from ``/coins/markets`` (landed too).
    Returns (coins, where they came from, pages fetched for it).
    """
    if fresh_snapshot is not None:
        return unique_coins((r for _, _, r in fresh_snapshot.records), limit), "this run's snapshot", []
    now = current_hour()
    recent = lakehouse.read_window_arrow(BRONZE, now - UNIVERSE_LOOKBACK, now + HOUR, columns=["ingest_hour", "source"])
    snapshot_hours = recent.filter(pc.equal(recent.column("source"), "snapshot")).column("ingest_hour")
    if len(snapshot_hours):
        newest = pc.max(snapshot_hours).as_py()
        rows = lakehouse.read_window_arrow(BRONZE, newest, newest + HOUR)
        rows = rows.filter(pc.equal(rows.column("source"), "snapshot")).sort_by(
            [("capture_id", "descending"), ("page", "ascending"), ("position", "ascending")]
        )
        records = (json.loads(text) for text in rows.column("record_json").to_pylist())
        return unique_coins(records, limit), f"Bronze snapshot of {hour_label(newest)}", []
    markets = client.markets(limit)
    return (
        unique_coins((r for _, _, r in markets.records), limit),
        "/coins/markets now (no snapshot in Bronze)",
        markets.pages,
    )


def capture_history(
    context,
    lakehouse: LakehouseResource,
    snapshot: Optional[MarketsCapture],
    hours: list[datetime],
    coingecko: CoinGeckoResource,
    run_id: str,
) -> tuple[Capture, list[str], dict]:
    """Past hours never captured, from each coin's history fetched once for all of ``hours``,
    each coin's chunks landed as they arrive (the capture exists once its manifest is written).

    A coin the API does not know (404: delisted since the snapshot) is a recorded gap, not a
    failed run. Returns the capture, the coins not found, and metadata.
    """
    client = coingecko.get_client()
    coins, universe_source, universe_pages = history_universe(lakehouse, snapshot, client, coingecko.coins_limit)
    landing = history_landing(lakehouse.landing, hours, coingecko.vs_currency, run_id)
    for page in universe_pages:
        landing.add(f"universe/page-{page.page:04d}.json", page, "universe")
    calls, at_least = client.calls_for_history(len(coins), hours[0], hours[-1] + HOUR)
    context.log.info(
        "history: %d coins for %d hours: %d calls, at least %s at the plan's rate (%s)",
        len(coins), len(hours), calls, duration(at_least), universe_source,
    )  # fmt: skip
    not_found = []
    progress = Progress(context.log, "history", len(coins), "coins")
    fetching = client.market_chart_ranges((coin["id"] for coin in coins), hours[0], hours[-1] + HOUR)
    with closing(fetching):  # an error stops the fetch at once: no coin after it is begun
        for coin, fetched in zip(coins, fetching):
            try:
                history = fetched.result()
            except CoinGeckoError as error:
                if error.status != 404:
                    raise
                not_found.append(coin["id"])
                context.log.warning(
                    "history: CoinGecko does not know coin %r (404, delisted?): its hours are a gap", coin["id"]
                )
            else:
                landing.add_coin(coin, history.pages)
            progress.advance()
    capture = landing.finish()
    metadata = {
        "history_universe": universe_source,
        "history_coins": len(coins),
        "history_fetch_seconds": round(time.monotonic() - progress.started, 1),
        "coins_not_found": MetadataValue.json(not_found),
    }
    return capture, not_found, metadata


@dataclass(frozen=True)
class BronzeWindow:
    """What Bronze's checks look at: the window after this run (summarised slice by slice),
    and what it added."""

    rows_per_hour: dict[str, int]
    duplicates: list[str]  # "hour coin" of a coin twice in one capture of an hour
    missing_points: dict[str, list[str]]  # coin -> history hours without a price point
    new_snapshot_texts: list[str]
    coins_not_found: list[str]  # history universe coins the API answered 404 for


def duplicate_ids(rows: pa.Table) -> list[str]:
    """ "hour coin" of every coin found twice in one capture of an hour (``rows``: ingest_hour,
    capture_id, coin_id)."""
    counts = (
        rows.filter(pc.is_valid(rows.column("coin_id")))
        .group_by(["ingest_hour", "capture_id", "coin_id"])
        .aggregate([([], "count_all")])
    )
    twice = counts.filter(pc.greater(counts.column("count_all"), 1))
    return sorted(
        {
            f"{hour_label(hour)} {coin}"
            for hour, coin in zip(twice.column("ingest_hour").to_pylist(), twice.column("coin_id").to_pylist())
        }
    )


def window_summary(
    lakehouse: LakehouseResource, start: datetime, end: datetime
) -> tuple[dict[str, int], list[str], set[str]]:
    """Rows per hour, duplicate ids and capture ids of Bronze's [start, end), read a slice at a
    time (a year of Bronze does not fit in memory at once)."""
    per_hour = lakehouse.hour_counts(BRONZE, start, end)
    duplicates: list[str] = []
    capture_ids: set[str] = set()
    for slice_start, slice_end in lakehouse.cut(start, end, per_hour):
        rows = lakehouse.read_window_arrow(
            BRONZE, slice_start, slice_end, columns=["ingest_hour", "capture_id", "coin_id"]
        )
        duplicates += duplicate_ids(rows)
        capture_ids.update(pc.unique(rows.column("capture_id")).to_pylist())
    return per_hour, duplicates, capture_ids


def _hours_captured(window: BronzeWindow) -> tuple[bool, dict]:
    empty = [label for label, count in window.rows_per_hour.items() if count == 0]
    return not empty, {
        "empty_hours": MetadataValue.json(empty),
        "history_hours_without_points": MetadataValue.json(window.missing_points),
    }


def _no_duplicate_ids(window: BronzeWindow) -> tuple[bool, dict]:
    return not window.duplicates, {
        "duplicates": MetadataValue.json(window.duplicates[:50]),
        "count": len(window.duplicates),
    }


def _history_coins_found(window: BronzeWindow) -> tuple[bool, dict]:
    return not window.coins_not_found, {"coins_not_found": MetadataValue.json(window.coins_not_found)}


def _no_schema_drift(window: BronzeWindow) -> tuple[bool, dict]:
    drift = unknown_fields(window.new_snapshot_texts)
    return not drift, {"unknown_fields": MetadataValue.json(dict(drift))}


CHECKS = (
    Check("hours_captured", "Every hour of the window has records (history gaps are named).", _hours_captured),
    Check(
        "no_duplicate_ids", "No coin twice in one capture of an hour (ranks shifting while paging).", _no_duplicate_ids
    ),
    Check(
        "history_coins_found",
        "CoinGecko knows every coin of the history universe (a 404 coin, delisted since the snapshot, is a gap).",
        _history_coins_found,
    ),
    Check(
        "no_schema_drift",
        "Snapshot records carry only fields we know (new ones stay in record_json).",
        _no_schema_drift,
    ),
)


@asset(
    key=BRONZE.asset_key,
    description=BRONZE.description,
    metadata=table_definition_metadata(BRONZE),
    group_name="bronze",
    partitions_def=hourly_partitions,
    backfill_policy=BACKFILL_POLICY,
    kinds={"python", "deltalake"},
    pool=COINGECKO_POOL,
    check_specs=specs(BRONZE.asset_key, CHECKS),
)
def bronze_coingecko_markets(
    context: AssetExecutionContext,
    config: BronzeConfig,
    coingecko: CoinGeckoResource,
    lakehouse: LakehouseResource,
) -> MaterializeResult:
    start, end = run_window(context, lakehouse)
    hours = hours_in(start, end)
    now_hour = current_hour()
    future = [hour for hour in hours if hour > now_hour]
    if future:
        raise ValueError(f"hour {hour_label(future[0])} has not started yet: nothing can be captured for it")
    run_id = context.run.run_id
    lakehouse.check_reachable()  # a lake that cannot be written must not cost API calls

    unfinished = unfinished_captures(lakehouse, start, end)
    appended = Appended()
    for capture in unfinished:
        append_capture_parts(lakehouse, capture, run_id, appended)
        context.log.warning(
            "Bronze: capture %s was landed by run %s but not committed; committed it now",
            capture.capture_id,
            capture.manifest["run_id"],
        )
    # Counted a week at a time: a year of every coin (some 44 million rows) read at once would be
    # 350 MB of timestamps.
    captured = lakehouse.hour_counts(BRONZE, start, end)
    reuse = [] if config.refetch else [hour for hour in hours if captured[hour_label(hour)]]
    snapshot_hours = [hour for hour in hours if hour == now_hour and hour not in reuse]
    history_hours = [hour for hour in hours if hour < now_hour and hour not in reuse]
    context.log.info(
        "Bronze %s: %d hours re-used, %d snapshot, %d from history, %d landed captures recovered",
        window_label(start, end),
        len(reuse),
        len(snapshot_hours),
        len(history_hours),
        len(unfinished),
    )

    # Fetch and land (bodies as they arrive, each capture's manifest last), then append.
    fetch_started = time.monotonic()
    captures: list[Capture] = []
    metadata: dict = {}
    snapshot = None
    if snapshot_hours:
        snapshot = coingecko.get_client().markets(coingecko.coins_limit)
        captures.append(land_snapshot(lakehouse.landing, snapshot, now_hour, coingecko.vs_currency, run_id))
        metadata.update(
            coins_requested=snapshot.requested if snapshot.requested is not None else "all",
            coins_received=len(snapshot.records),
            coins_unique=snapshot.unique_ids,
            pages_fetched=len(snapshot.pages),
            duplicate_ids=MetadataValue.json(snapshot.duplicate_ids),
        )
    not_found: list[str] = []
    if history_hours:
        capture, not_found, history_metadata = capture_history(
            context, lakehouse, snapshot, history_hours, coingecko, run_id
        )
        captures.append(capture)
        metadata.update(history_metadata)
    metadata["fetch_seconds"] = round(time.monotonic() - fetch_started, 3)
    for capture in captures:
        context.log.info(
            "landed %d files in %s", len(capture.manifest["files"]), lakehouse.landing.uri_of(capture.capture_id)
        )
    crashpoints.reached("bronze.landed")

    for capture in captures:
        append_capture_parts(lakehouse, capture, run_id, appended)
    for coin in not_found:
        appended.gap(coin, history_hours, len(history_hours))
    crashpoints.reached("bronze.committed")

    per_hour, duplicates, capture_ids = window_summary(lakehouse, start, end)
    window = BronzeWindow(per_hour, duplicates, appended.missing_points, appended.snapshot_texts, not_found)
    metadata.update(
        hours_reused=len(reuse),
        hours_snapshot=len(snapshot_hours),
        hours_history=len(history_hours),
        history_hours_without_points=MetadataValue.json(appended.missing_points),
        history_gap_hours=appended.gap_hours,
        coins_without_history=MetadataValue.json(sorted(appended.coins_without_history)),
        new_records=appended.records,
        captures_added=MetadataValue.json([capture.capture_id for capture in captures]),
        captures_recovered=MetadataValue.json([capture.capture_id for capture in unfinished]),
        captures_in_window=len(capture_ids),
        **table_metadata(
            context,
            BRONZE,
            lakehouse,
            lakehouse.table_version(BRONZE),
            per_hour,
            {"preview": preview(lakehouse.read_window_arrow(BRONZE, end - HOUR, end))},
        ),
    )
    return MaterializeResult(metadata=metadata, check_results=audit(BRONZE.asset_key, CHECKS, window))
