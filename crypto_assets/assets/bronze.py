"""Bronze: an append-only log of captures — every record CoinGecko returned, byte for byte in
landing files and as JSON text in Delta.

Per hour of the run's window:
* already captured → re-used, no API call (unless ``refetch``, which adds a capture);
* the in-progress hour → a ``/coins/markets`` snapshot (``source='snapshot'``);
* a past hour never captured → reconstructed from ``/coins/{id}/market_chart/range``,
  fetched once per coin for the whole window (``source='history'``): price, market cap and
  volume only.

A run only ever adds captures; the rows of an hour are the union of its captures, and Silver
picks one record per coin (docs in ``transforms/silver.py``). Each capture is landed (files, then
its manifest) and then appended once. A capture landed by a run that died before appending it is
found and appended by the next run of its hours, instead of being fetched again. CoinGecko calls
run in the ``coingecko`` concurrency pool: one capture at a time across the instance's runs.
"""


import json
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from crypto_assets import crashpoints
from crypto_assets.assets.checks import Check, audit, specs
from crypto_assets.assets.common import BACKFILL_POLICY, run_window, table_metadata
from crypto_assets.captures import HISTORY_ROOT, Capture, history_capture, history_spans_overlapping, snapshot_capture, snapshot_prefix
from crypto_assets.partitions import HOUR, current_hour, hour_label, hours_in, hourly_partitions
from crypto_assets.resources.coingecko import CoinGeckoError, CoinGeckoResource
from crypto_assets.resources.lakehouse import LakehouseResource, rows_per_hour
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


def unique_coins(records, limit: int) -> list[dict]:
    """The first ``limit`` distinct coins of ``records``: objects with a non-empty string id."""
    coins, seen = [], set()
    for record in records:
        coin_id = record.get("id") if isinstance(record, dict) else None
        if isinstance(coin_id, str) and coin_id.strip() and coin_id not in seen:
            seen.add(coin_id)
            coins.append(record)
    return coins[:limit]


def history_universe(lakehouse: LakehouseResource, fresh_snapshot, client, limit: int):
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
            [("capture_id", "descending"), ("page", "ascending"), ("position", "ascending")])
        records = (json.loads(text) for text in rows.column("record_json").to_pylist())
        return unique_coins(records, limit), f"Bronze snapshot of {hour_label(newest)}", []
    markets = client.markets(limit)
    return unique_coins((r for _, _, r in markets.records), limit), "/coins/markets now (no snapshot in Bronze)", markets.pages


def capture_history(context, client, lakehouse: LakehouseResource, snapshot, hours: list[datetime],
                    coingecko: CoinGeckoResource, run_id: str):
    """Past hours never captured, from each coin's history fetched once for all of ``hours``.

    A coin the API does not know (404: delisted since the snapshot) is a recorded gap, not a
    failed run. Returns the capture, the hours each coin has no point for, and metadata.
    """
    coins, universe_source, universe_pages = history_universe(lakehouse, snapshot, client, coingecko.coins_limit)
    histories, not_found = [], []
    for number, coin in enumerate(coins, start=1):
        try:
            histories.append((coin, client.market_chart_range(coin["id"], hours[0], hours[-1] + HOUR)))
        except CoinGeckoError as error:
            if error.status != 404:
                raise
            not_found.append(coin["id"])
            context.log.warning("history: CoinGecko does not know coin %r (404, delisted?): its hours are a gap", coin["id"])
        if number % 50 == 0 or number == len(coins):
            context.log.info("history: %d/%d coins fetched", number, len(coins))
    capture = history_capture(histories, universe_pages, hours, coingecko.vs_currency, run_id)
    rows = capture.rows
    got = set(zip(rows.column("coin_id").to_pylist(), rows.column("ingest_hour").to_pylist()))
    labels = [hour_label(hour) for hour in hours]
    missing_points = {}
    for coin in coins:
        missing = [label for hour, label in zip(hours, labels) if (coin["id"], hour) not in got]
        if missing:
            missing_points[coin["id"]] = missing
    metadata = {
        "history_universe": universe_source,
        "history_coins": len(coins),
        "coins_not_found": MetadataValue.json(not_found),
        "coins_without_history": MetadataValue.json(
            sorted(coin for coin, gaps in missing_points.items() if len(gaps) == len(hours))
        ),
    }
    return capture, missing_points, metadata


def landed_captures_of(lakehouse: LakehouseResource, start: datetime, end: datetime) -> list[str]:
    """Every complete capture (manifest present) whose hours meet [start, end)."""
    found = [capture for hour in hours_in(start, end) for capture in lakehouse.landed_captures(snapshot_prefix(hour))]
    for span in history_spans_overlapping(lakehouse.landing_children(HISTORY_ROOT), start, end):
        found += lakehouse.landed_captures(f"{HISTORY_ROOT}/{span}")
    return found


def recover_landed_captures(context, lakehouse: LakehouseResource, start: datetime, end: datetime, run_id: str) -> list[str]:
    """Append the captures of the window that were landed but never committed (their run died
    in between): they are history already fetched, not something to fetch again."""
    delta = lakehouse.delta_table(BRONZE)
    orphans = [c for c in landed_captures_of(lakehouse, start, end) if delta is None or delta.transaction_version(c) is None]
    for capture_id in orphans:
        manifest, files = lakehouse.read_capture(capture_id)
        capture = Capture(capture_id, manifest, files)
        lakehouse.append_capture(BRONZE, capture.rows, capture_id, run_id)
        context.log.warning("Bronze: capture %s was landed by run %s but never committed; committed it now",
                            capture_id, manifest["run_id"])
    return orphans


@dataclass(frozen=True)
class BronzeWindow:
    """What Bronze's checks look at: the window after this run, and what it added."""

    rows: pa.Table  # ingest_hour, coin_id, capture_id of every row of the window
    rows_per_hour: dict[str, int]
    missing_points: dict[str, list[str]]  # coin -> history hours without a price point
    new_record_texts: list[str]


def _hours_captured(window: BronzeWindow) -> tuple[bool, dict]:
    empty = [label for label, count in window.rows_per_hour.items() if count == 0]
    return not empty, {"empty_hours": MetadataValue.json(empty),
                       "history_hours_without_points": MetadataValue.json(window.missing_points)}


def _no_duplicate_ids(window: BronzeWindow) -> tuple[bool, dict]:
    columns = (window.rows.column(name).to_pylist() for name in ("ingest_hour", "capture_id", "coin_id"))
    seen = Counter(zip(*columns))
    duplicates = sorted({f"{hour_label(hour)} {coin}" for (hour, _, coin), n in seen.items() if n > 1 and coin is not None})
    return not duplicates, {"duplicates": MetadataValue.json(duplicates[:50]), "count": len(duplicates)}


def _no_schema_drift(window: BronzeWindow) -> tuple[bool, dict]:
    drift = unknown_fields(window.new_record_texts)
    return not drift, {"unknown_fields": MetadataValue.json(dict(drift))}


CHECKS = (
    Check("hours_captured", "Every hour of the window has records (history gaps are named).", _hours_captured),
    Check("no_duplicate_ids", "No coin twice in one capture of an hour (ranks shifting while paging).", _no_duplicate_ids),
    Check("no_schema_drift", "Records carry only fields we know (new ones stay in record_json).", _no_schema_drift),
)


@asset(
    key=BRONZE.asset_key,
    description=BRONZE.description,
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
    start, end = run_window(context)
    hours = hours_in(start, end)
    now_hour = current_hour()
    future = [hour for hour in hours if hour > now_hour]
    if future:
        raise ValueError(f"hour {hour_label(future[0])} has not started yet: nothing can be captured for it")
    run_id = context.run.run_id
    lakehouse.check_reachable()  # a lake that cannot be written must not cost API calls

    recovered = recover_landed_captures(context, lakehouse, start, end, run_id)
    captured_hours = set(lakehouse.read_window_arrow(BRONZE, start, end, columns=["ingest_hour"]).column("ingest_hour").to_pylist())
    reuse = [] if config.refetch else [hour for hour in hours if hour in captured_hours]
    snapshot_hours = [hour for hour in hours if hour == now_hour and hour not in reuse]
    history_hours = [hour for hour in hours if hour < now_hour and hour not in reuse]
    context.log.info(
        "Bronze %s: %d hours re-used, %d snapshot, %d from history, %d landed captures recovered",
        f"{hour_label(start)}…{hour_label(end - HOUR)}", len(reuse), len(snapshot_hours), len(history_hours), len(recovered),
    )

    # Fetch first: a failure here leaves no trace anywhere.
    client = coingecko.get_client() if snapshot_hours or history_hours else None
    fetch_started = time.monotonic()
    captures: list[Capture] = []
    metadata: dict = {}
    snapshot = None
    if snapshot_hours:
        snapshot = client.markets(coingecko.coins_limit)
        captures.append(snapshot_capture(snapshot, now_hour, coingecko.vs_currency, run_id))
        metadata.update(
            coins_requested=snapshot.requested,
            coins_received=len(snapshot.records),
            coins_unique=snapshot.unique_ids,
            pages_fetched=len(snapshot.pages),
            duplicate_ids=MetadataValue.json(snapshot.duplicate_ids),
        )
    missing_points: dict[str, list[str]] = {}
    if history_hours:
        capture, missing_points, history_metadata = capture_history(
            context, client, lakehouse, snapshot, history_hours, coingecko, run_id
        )
        captures.append(capture)
        metadata.update(history_metadata)
    metadata["fetch_seconds"] = round(time.monotonic() - fetch_started, 3)

    # Then land each capture (files, manifest last) and append it: other captures stay as they are.
    new_texts: list[str] = []
    for capture in captures:
        path = lakehouse.write_capture(capture.capture_id, capture.files, capture.manifest)
        context.log.info("landed %d files in %s", len(capture.files), path)
        crashpoints.reached("bronze.landed")
        rows = capture.rows
        lakehouse.append_capture(BRONZE, rows, capture.capture_id, run_id)
        crashpoints.reached("bronze.committed")
        new_texts += rows.column("record_json").to_pylist()

    window_rows = lakehouse.read_window_arrow(BRONZE, start, end)
    per_hour = rows_per_hour(window_rows, start, end)
    window = BronzeWindow(window_rows.select(["ingest_hour", "capture_id", "coin_id"]), per_hour, missing_points, new_texts)
    metadata.update(
        hours_reused=len(reuse),
        hours_snapshot=len(snapshot_hours),
        hours_history=len(history_hours),
        history_hours_without_points=MetadataValue.json(missing_points),
        new_records=len(new_texts),
        captures_added=MetadataValue.json([capture.capture_id for capture in captures]),
        captures_recovered=MetadataValue.json(recovered),
        captures_in_window=len(set(window_rows.column("capture_id").to_pylist())),
        **table_metadata(BRONZE, lakehouse, lakehouse.table_version(BRONZE), per_hour, window_rows),
    )
    return MaterializeResult(metadata=metadata, check_results=audit(BRONZE.asset_key, CHECKS, window))
