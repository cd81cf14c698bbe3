"""Captures: what one run fetched from CoinGecko, landed as files plus a manifest, and the Bronze
rows they make.

A capture is Bronze's unit of history. Its rows are a pure function of its landing folder (the
response bodies byte for byte, and the manifest saying what each one is), so a capture landed by
a run that crashed before its Bronze commit becomes exactly the same rows when a later run finds
it. Capture ids start with the capture's UTC time, so sorting ids of one kind and hour sorts them
by time (Silver's precedence relies on it).

Ids from the API are data: in a file name each is percent-encoded (``safe_segment``), so
``../../x`` or ``/etc/x`` stays one name inside its capture folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timezone

import pyarrow as pa

from crypto_assets.partitions import floor_hour
from crypto_assets.resources.coingecko import ApiPage, HistoryCapture, MarketsCapture, safe_segment
from crypto_assets.tables import BRONZE

SNAPSHOT, HISTORY = "snapshot", "history"
# Landing folders: snapshots per hour, history captures (one per run, many hours) together.
MARKETS_ROOT = "coingecko/markets"
HISTORY_ROOT = "coingecko/market_chart"
MAX_NAME_CHARS = 120
_BRONZE_PHYSICAL = pa.schema([f for f in BRONZE.arrow_schema if f.name != "ingest_date"])


def _file_folder(coin_id: str) -> str:
    """A coin's folder inside a history capture: its encoded id, or a hash when that is too long."""
    name = safe_segment(coin_id)
    return name if 0 < len(name) <= MAX_NAME_CHARS else "id-sha256-" + hashlib.sha256(coin_id.encode()).hexdigest()[:32]


def snapshot_prefix(hour: datetime) -> str:
    return f"{MARKETS_ROOT}/ingest_hour={hour:%Y-%m-%dT%H}"


def _span_folder(hours: list[datetime]) -> str:
    """History captures are grouped by the hours they cover, so finding the captures of a window
    needs folder names only, not every manifest."""
    return f"span={hours[0]:%Y-%m-%dT%H}_{hours[-1]:%Y-%m-%dT%H}"


def history_spans_overlapping(span_folders: list[str], start: datetime, end: datetime) -> list[str]:
    """The span folders (``span=A_B``) whose hours [A, B] meet [start, end)."""
    overlapping = []
    for folder in span_folders:
        try:
            first, last = (datetime.strptime(part, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)
                           for part in folder.removeprefix("span=").split("_"))
        except ValueError:
            continue  # not a span folder: no capture of ours
        if first < end and last >= start:
            overlapping.append(folder)
    return overlapping


def _stamp(run_id: str) -> str:
    return f"capture={datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{run_id[:8]}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _file_entry(name: str, page: ApiPage, kind: str, coin: dict | None = None) -> dict:
    entry = {
        "name": name, "kind": kind, "page": page.page, "request": page.request, "status": page.status,
        "fetched_at": _iso(page.fetched_at), "sha256": page.payload_sha256,
    }  # fmt: skip
    if coin is not None:
        entry["coin"] = {key: coin.get(key) for key in ("id", "symbol", "name")}
    return entry


@dataclass(frozen=True)
class Capture:
    """One capture: its id (= its landing folder), the manifest and the bodies it lists."""

    capture_id: str
    manifest: dict
    files: dict[str, bytes]

    @property
    def hours(self) -> list[datetime]:
        return [datetime.fromisoformat(hour) for hour in self.manifest["hours"]]

    @cached_property
    def rows(self) -> pa.Table:
        """Its Bronze rows, built once (a history capture's bodies are parsed for the gap report
        and for the append alike)."""
        return bronze_rows(self.capture_id, self.manifest, self.files)


def _manifest(source: str, run_id: str, vs_currency: str, hours: list[datetime], entries: list[dict]) -> dict:
    return {"source": source, "run_id": run_id, "vs_currency": vs_currency,
            "hours": [_iso(hour) for hour in hours], "files": entries}


def snapshot_capture(markets: MarketsCapture, hour: datetime, vs_currency: str, run_id: str) -> Capture:
    """The in-progress hour's ``/coins/markets`` pages as one capture."""
    capture_id = f"{snapshot_prefix(hour)}/{_stamp(run_id)}"
    files, entries = {}, []
    for page in markets.pages:
        name = f"page-{page.page:04d}.json"
        files[name] = page.body
        entries.append(_file_entry(name, page, "markets"))
    return Capture(capture_id, _manifest(SNAPSHOT, run_id, vs_currency, [hour], entries), files)


def history_capture(histories: list[tuple[dict, HistoryCapture]], universe_pages: list[ApiPage],
                    hours: list[datetime], vs_currency: str, run_id: str) -> Capture:
    """Past hours rebuilt from each coin's ``market_chart/range`` chunks, as one capture.

    ``universe_pages`` (the ``/coins/markets`` pages the coins were chosen from, if fetched) are
    landed too; they make no rows.
    """
    capture_id = f"{HISTORY_ROOT}/{_span_folder(hours)}/{_stamp(run_id)}"
    files, entries = {}, []
    for page in universe_pages:
        name = f"universe/page-{page.page:04d}.json"
        files[name] = page.body
        entries.append(_file_entry(name, page, "universe"))
    for coin, history in histories:
        folder = _file_folder(coin["id"])
        for page in history.pages:
            name = f"coins/{folder}/chunk-{page.page:04d}.json"
            files[name] = page.body
            entries.append(_file_entry(name, page, "history", coin))
    return Capture(capture_id, _manifest(HISTORY, run_id, vs_currency, hours, entries), files)


def _row(capture_id: str, manifest: dict, entry: dict, hour: datetime, position: int, record, coin_id) -> dict:
    return {
        "coin_id": coin_id if isinstance(coin_id, str) else None,
        "record_json": json.dumps(record),
        "source": manifest["source"],
        "vs_currency": manifest["vs_currency"],
        "capture_id": capture_id,
        "page": entry["page"],
        "position": position,
        "request": entry["request"],
        "http_status": entry["status"],
        "payload_sha256": entry["sha256"],
        "ingested_at": datetime.fromisoformat(entry["fetched_at"]),
        "run_id": manifest["run_id"],
        "ingest_hour": hour,
    }


def _snapshot_rows(capture_id: str, manifest: dict, files: dict[str, bytes]) -> list[dict]:
    """Every record of every page, in order; a record that is not an object with a string id
    keeps a null coin_id (Silver quarantines it)."""
    [hour] = [datetime.fromisoformat(h) for h in manifest["hours"]]
    rows = []
    for entry in manifest["files"]:
        for position, record in enumerate(json.loads(files[entry["name"]])):
            coin_id = record.get("id") if isinstance(record, dict) else None
            rows.append(_row(capture_id, manifest, entry, hour, position, record, coin_id))
    return rows


def _history_rows(capture_id: str, manifest: dict, files: dict[str, bytes]) -> list[dict]:
    """One reconstructed record per coin and wanted hour that has a price point.

    Of several points in one hour (CoinGecko returns 5-minutely data for the last day) the
    first is taken: the one nearest the hourly schedule's capture time.
    """
    wanted = {datetime.fromisoformat(h) for h in manifest["hours"]}
    taken: dict[str, set[datetime]] = {}
    rows = []
    for entry in (e for e in manifest["files"] if e["kind"] == "history"):
        coin = entry["coin"]
        done = taken.setdefault(coin["id"], set())
        body = json.loads(files[entry["name"]])
        caps = {ms: value for ms, value in body.get("market_caps") or []}
        volumes = {ms: value for ms, value in body.get("total_volumes") or []}
        for position, (ms, price) in enumerate(body.get("prices") or []):
            moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
            hour = floor_hour(moment)
            if hour not in wanted or hour in done:
                continue
            done.add(hour)
            record = {
                "id": coin["id"], "symbol": coin["symbol"], "name": coin["name"], "current_price": price,
                "market_cap": caps.get(ms), "total_volume": volumes.get(ms),
                "last_updated": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }  # fmt: skip
            rows.append(_row(capture_id, manifest, entry, hour, position, record, coin["id"]))
    return rows


def bronze_rows(capture_id: str, manifest: dict, files: dict[str, bytes]) -> pa.Table:
    """The Bronze rows of a capture (without ``ingest_date``, which the lakehouse derives)."""
    build = _snapshot_rows if manifest["source"] == SNAPSHOT else _history_rows
    return pa.Table.from_pylist(build(capture_id, manifest, files), schema=_BRONZE_PHYSICAL)
