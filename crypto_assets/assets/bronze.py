"""Bronze: every record CoinGecko returned, byte for byte in landing files and as JSON text in Delta.

Per hour of the run's window (DESIGN §3):
* already captured → re-used, no API call (unless ``refetch``): Bronze is immutable history;
* the in-progress hour → a ``/coins/markets`` snapshot (``source='snapshot'``);
* a past hour never captured → reconstructed from ``/coins/{id}/market_chart/range``,
  fetched once per coin for the whole window (``source='history'``): price, market cap and
  volume only.

Everything is fetched and validated before anything is written, so a failed fetch leaves no
trace; landing folders appear whole (or not at all) before the one Delta commit of the window.
"""


import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from crypto_assets.assets.common import BACKFILL_POLICY, run_window, table_metadata
from crypto_assets.partitions import HOUR, current_hour, floor_hour, hour_label, hours_in, hourly_partitions
from crypto_assets.resources.coingecko import ApiPage, CoinGeckoResource, HistoryCapture
from crypto_assets.resources.lakehouse import LakehouseResource, rows_per_hour
from crypto_assets.tables import BRONZE
from crypto_assets.transforms.silver import unknown_fields

# How far back to look for the newest snapshot whose coins make the history universe.
UNIVERSE_LOOKBACK = timedelta(days=7)


class BronzeConfig(Config):
    refetch: bool = Field(
        default=False,
        description="Capture hours again even if Bronze has them (a new capture; the old landing files stay).",
    )


@dataclass
class Capture:
    """What one run fetched, ready to land and to append to Bronze."""

    landing_dir: str
    files: dict[str, bytes] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)


def _page_row(page: ApiPage, capture_id: str, hour: datetime, position: int, record_json: str,
              coin_id, source: str, vs_currency: str, run_id: str) -> dict:
    return {
        "coin_id": coin_id if isinstance(coin_id, str) else None,
        "record_json": record_json,
        "source": source,
        "vs_currency": vs_currency,
        "capture_id": capture_id,
        "page": page.page,
        "position": position,
        "request": page.request,
        "http_status": page.status,
        "payload_sha256": page.payload_sha256,
        "ingested_at": page.fetched_at,
        "run_id": run_id,
        "ingest_hour": hour,
    }


def _capture_stamp(run_id: str) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{run_id[:8]}"


def capture_snapshot(client, hour: datetime, limit: int, vs_currency: str, run_id: str):
    """The in-progress hour from ``/coins/markets``: every record of every page, in order."""
    markets = client.markets(limit)
    landing_dir = f"coingecko/markets/ingest_hour={hour:%Y-%m-%dT%H}/capture={_capture_stamp(run_id)}"
    capture = Capture(landing_dir)
    pages = {page.page: page for page in markets.pages}
    for page in markets.pages:
        capture.files[f"page-{page.page:04d}.json"] = page.body
    for page_no, position, record in markets.records:
        capture.rows.append(
            _page_row(pages[page_no], landing_dir, hour, position, json.dumps(record), record.get("id"),
                      "snapshot", vs_currency, run_id)
        )
    return capture, markets


def _first_point_per_hour(points: list, hours: set[datetime]) -> dict[datetime, tuple[int, float, float]]:
    """(position, ms, value) of the first point inside each wanted hour."""
    chosen: dict[datetime, tuple[int, float, float]] = {}
    for position, (ms, value) in enumerate(points):
        hour = floor_hour(datetime.fromtimestamp(ms / 1000, timezone.utc))
        if hour in hours and hour not in chosen:
            chosen[hour] = (position, ms, value)
    return chosen


def history_rows(history: HistoryCapture, coin: dict, hours: list[datetime], capture_id: str,
                 vs_currency: str, run_id: str) -> list[dict]:
    """One reconstructed record per hour that has a price point; other hours stay absent.

    Of several points in one hour (CoinGecko returns 5-minutely data for the last day) the
    first is taken: the one nearest the hourly schedule's capture time.
    """
    wanted, rows = set(hours), []
    taken: set[datetime] = set()
    for page in history.pages:
        body = json.loads(page.body)
        caps = {ms: value for ms, value in body.get("market_caps") or []}
        volumes = {ms: value for ms, value in body.get("total_volumes") or []}
        for hour, (position, ms, price) in _first_point_per_hour(body.get("prices") or [], wanted - taken).items():
            taken.add(hour)
            record = {
                "id": coin["id"],
                "symbol": coin.get("symbol"),
                "name": coin.get("name"),
                "current_price": price,
                "market_cap": caps.get(ms),
                "total_volume": volumes.get(ms),
                "last_updated": datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }
            rows.append(_page_row(page, capture_id, hour, position, json.dumps(record), coin["id"],
                                  "history", vs_currency, run_id))
    return rows


def history_universe(lakehouse: LakehouseResource, fresh_snapshot, client, limit: int):
    """The coins to reconstruct: the top ``limit`` of the newest snapshot.

    Preference: the snapshot taken in this run; else the newest snapshot in Bronze from the
    last UNIVERSE_LOOKBACK; else today's top coins from ``/coins/markets`` (landed too).
    Returns (coins, where they came from, pages fetched for it).
    """
    if fresh_snapshot is not None:
        return [record for _, _, record in fresh_snapshot.records][:limit], "this run's snapshot", []
    now = current_hour()
    recent = lakehouse.read_window_arrow(BRONZE, now - UNIVERSE_LOOKBACK, now + HOUR, columns=["ingest_hour", "source"])
    snapshot_hours = recent.filter(pc.equal(recent.column("source"), "snapshot")).column("ingest_hour")
    if len(snapshot_hours):
        newest = pc.max(snapshot_hours).as_py()
        rows = lakehouse.read_window_arrow(BRONZE, newest, newest + HOUR)
        rows = rows.filter(pc.equal(rows.column("source"), "snapshot")).sort_by([("page", "ascending"), ("position", "ascending")])
        coins, seen = [], set()
        for text in rows.column("record_json").to_pylist():
            record = json.loads(text)
            if isinstance(record.get("id"), str) and record["id"] not in seen:
                seen.add(record["id"])
                coins.append(record)
        return coins[:limit], f"Bronze snapshot of {hour_label(newest)}", []
    markets = client.markets(limit)
    return [record for _, _, record in markets.records][:limit], "/coins/markets now (no snapshot in Bronze)", markets.pages


def capture_history(context, client, lakehouse: LakehouseResource, snapshot, hours: list[datetime],
                    coingecko: CoinGeckoResource, run_id: str):
    """Past hours never captured, from each coin's history fetched once for all of ``hours``.

    Returns the capture, the hours each coin has no point for, and metadata.
    """
    coins, universe_source, universe_pages = history_universe(lakehouse, snapshot, client, coingecko.coins_limit)
    capture = Capture(f"coingecko/market_chart/capture={_capture_stamp(run_id)}")
    for page in universe_pages:
        capture.files[f"universe/page-{page.page:04d}.json"] = page.body
    missing_points: dict[str, list[str]] = {}
    for number, coin in enumerate(coins, start=1):
        history = client.market_chart_range(coin["id"], hours[0], hours[-1] + HOUR)
        for page in history.pages:
            capture.files[f"{coin['id']}/chunk-{page.page:04d}.json"] = page.body
        rows = history_rows(history, coin, hours, capture.landing_dir, coingecko.vs_currency, run_id)
        capture.rows.extend(rows)
        got = {row["ingest_hour"] for row in rows}
        missing = [hour_label(hour) for hour in hours if hour not in got]
        if missing:
            missing_points[coin["id"]] = missing
        if number % 50 == 0 or number == len(coins):
            context.log.info("history: %d/%d coins fetched", number, len(coins))
    metadata = {
        "history_universe": universe_source,
        "history_coins": len(coins),
        "coins_without_history": MetadataValue.json(
            sorted(coin for coin, gaps in missing_points.items() if len(gaps) == len(hours))
        ),
    }
    return capture, missing_points, metadata


def bronze_checks(window_rows: pa.Table, per_hour: dict[str, int], missing_points: dict,
                  new_rows: list[dict]) -> list[AssetCheckResult]:
    """The window's checks: hours without records, coins twice in an hour, unknown fields."""
    empty_hours = [label for label, count in per_hour.items() if count == 0]
    per_hour_ids = Counter(zip(window_rows.column("ingest_hour").to_pylist(), window_rows.column("coin_id").to_pylist()))
    duplicates = sorted({f"{hour_label(hour)} {coin}" for (hour, coin), n in per_hour_ids.items() if n > 1})
    drift = unknown_fields(row["record_json"] for row in new_rows)
    return [
        AssetCheckResult(
            check_name="hours_captured",
            passed=not empty_hours,
            severity=AssetCheckSeverity.WARN,
            metadata={"empty_hours": MetadataValue.json(empty_hours),
                      "history_hours_without_points": MetadataValue.json(missing_points)},
        ),
        AssetCheckResult(
            check_name="no_duplicate_ids",
            passed=not duplicates,
            severity=AssetCheckSeverity.WARN,
            metadata={"duplicates": MetadataValue.json(duplicates[:50]), "count": len(duplicates)},
        ),
        AssetCheckResult(
            check_name="no_schema_drift",
            passed=not drift,
            severity=AssetCheckSeverity.WARN,
            metadata={"unknown_fields": MetadataValue.json(dict(drift))},
        ),
    ]


@asset(
    key=BRONZE.asset_key,
    description=BRONZE.description,
    group_name="bronze",
    partitions_def=hourly_partitions,
    backfill_policy=BACKFILL_POLICY,
    kinds={"python", "deltalake"},
    check_specs=[
        AssetCheckSpec("hours_captured", asset=BRONZE.asset_key,
                       description="Every hour of the window has records (history gaps are named)."),
        AssetCheckSpec("no_duplicate_ids", asset=BRONZE.asset_key,
                       description="No coin twice in one hour (ranks shifting while paging)."),
        AssetCheckSpec("no_schema_drift", asset=BRONZE.asset_key,
                       description="Records carry only fields we know (new ones stay in record_json)."),
    ],
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

    existing = lakehouse.read_window_arrow(BRONZE, start, end)
    captured_hours = set(existing.column("ingest_hour").to_pylist())
    reuse = [] if config.refetch else [hour for hour in hours if hour in captured_hours]
    snapshot_hours = [hour for hour in hours if hour == now_hour and hour not in reuse]
    history_hours = [hour for hour in hours if hour < now_hour and hour not in reuse]
    context.log.info(
        "Bronze %s: %d hours re-used, %d snapshot, %d from history",
        f"{hour_label(start)}…{hour_label(end - HOUR)}", len(reuse), len(snapshot_hours), len(history_hours),
    )

    # Fetch everything first: a failure here leaves no trace anywhere.
    client = coingecko.get_client()
    run_id = context.run.run_id
    fetch_started = time.monotonic()
    captures: list[Capture] = []
    metadata: dict = {}
    snapshot = None
    if snapshot_hours:
        capture, snapshot = capture_snapshot(client, now_hour, coingecko.coins_limit, coingecko.vs_currency, run_id)
        captures.append(capture)
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

    # Then land the bodies (each capture folder appears whole) and commit the window once.
    new_rows = [row for capture in captures for row in capture.rows]
    if new_rows:
        for capture in captures:
            path = lakehouse.write_landing(capture.landing_dir, capture.files)
            context.log.info("landed %d files in %s", len(capture.files), path)
        # The whole window is one commit: re-used hours go back unchanged.
        replaced = pa.array(sorted({*snapshot_hours, *history_hours}), BRONZE.arrow_schema.field("ingest_hour").type)
        kept = existing.filter(pc.invert(pc.is_in(existing.column("ingest_hour"), replaced)))
        window_rows = pa.concat_tables([kept, lakehouse.conform(BRONZE, pa.Table.from_pylist(new_rows))])
        written = lakehouse.write_window(BRONZE, window_rows, start, end, run_id)
        version, per_hour = written.version, written.rows_per_hour
    else:
        window_rows = existing
        version, per_hour = lakehouse.table_version(BRONZE), rows_per_hour(existing, start, end)

    metadata.update(
        hours_reused=len(reuse),
        hours_snapshot=len(snapshot_hours),
        hours_history=len(history_hours),
        history_hours_without_points=MetadataValue.json(missing_points),
        new_records=len(new_rows),
        **table_metadata(BRONZE, lakehouse, version, per_hour, window_rows),
    )
    return MaterializeResult(
        metadata=metadata,
        check_results=bronze_checks(window_rows, per_hour, missing_points, new_rows),
    )
