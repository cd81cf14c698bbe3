"""Captures: what one run fetched from CoinGecko, landed as files plus a manifest, and the Bronze
rows they make.

A capture is landed body by body as the responses arrive (``CaptureLanding``) and appended to
Bronze in parts, each read back from its landing files: a part holds one history chunk's range
(at most 90 days) of at most COINS_PER_PART coins and PART_BODY_BYTES of their responses, so
neither landing nor appending holds more than a part in memory, and no commit writes more than
~91 daily partitions, whatever the window's length.

A capture is Bronze's unit of history. Its rows are a pure function of its landing folder (the
response bodies byte for byte, and the manifest saying what each one is), so a capture landed by
a run that crashed before its Bronze commit becomes exactly the same rows when a later run finds
it. A capture id is its landing folder, ``{folder of its hours}/capture={UTC time, to the
second}-{run id[:8]}`` (``capture_id_at``). Only the stamp after ``capture=`` sorts by capture
time — a history id starts with its span, ``span=A_B`` — so Silver's precedence orders by the stamp.

Ids from the API are data: in a file name each is percent-encoded (``safe_segment``), so
``../../x`` or ``/etc/x`` stays one name inside its capture folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crypto_assets.partitions import iso_utc
from crypto_assets.resources.coingecko import ApiPage, MarketsCapture, safe_segment
from crypto_assets.resources.landing import Landing
from crypto_assets.tables import BRONZE, TS

SNAPSHOT, HISTORY = "snapshot", "history"
# Landing folders: snapshots per hour, history captures (one per run, many hours) together.
SNAPSHOT_ROOT = "coingecko/markets"
HISTORY_ROOT = "coingecko/market_chart"
MAX_NAME_CHARS = 120
# A Bronze commit of a history capture holds one chunk range of at most this many coins, and
# their responses at most this many bytes (about 100 per point: some 50,000 rows, a slice's
# size), so the rows built at once and what a crash in the middle of appending costs are the
# same for a day, a month or a year of history (a year of one coin is ~2,400 points, a month
# 744). A part is one chunk range because delta-rs holds a Parquet writer open per daily
# partition until its commit: a part spanning a year's 366 days peaked ~150 MB higher.
COINS_PER_PART = 100
PART_BODY_BYTES = 5 * 2**20
HOUR_MS = 3_600_000
_BRONZE_PHYSICAL = pa.schema([f for f in BRONZE.arrow_schema if f.name != "ingest_date"])


def _file_folder(coin_id: str) -> str:
    """A coin's folder inside a history capture: its encoded id, or a hash when that is too long."""
    name = safe_segment(coin_id)
    return name if 0 < len(name) <= MAX_NAME_CHARS else "id-sha256-" + hashlib.sha256(coin_id.encode()).hexdigest()[:32]


def snapshot_prefix(hour: datetime) -> str:
    return f"{SNAPSHOT_ROOT}/ingest_hour={hour:%Y-%m-%dT%H}"


def _span_folder(hours: list[datetime]) -> str:
    """History captures are grouped by the hours they cover, so finding the captures of a window
    needs folder names only, not every manifest."""
    return f"span={hours[0]:%Y-%m-%dT%H}_{hours[-1]:%Y-%m-%dT%H}"


def history_spans_overlapping(span_folders: list[str], start: datetime, end: datetime) -> list[str]:
    """The span folders (``span=A_B``) whose hours [A, B] meet [start, end)."""
    overlapping = []
    for folder in span_folders:
        try:
            first, last = (
                datetime.strptime(part, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)
                for part in folder.removeprefix("span=").split("_")
            )
        except ValueError:
            continue  # not a span folder: no capture of ours
        if first < end and last >= start:
            overlapping.append(folder)
    return overlapping


# A capture id's stamp is its text after the last occurrence of this.
CAPTURE_STAMP = "capture="


def capture_id_at(folder: str, run_id: str, captured_at: datetime) -> str:
    """The id (and landing folder) of a capture taken at ``captured_at`` under ``folder``: ids of
    one kind sort by capture time on their stamp (fixed width, UTC), then by run."""
    return f"{folder}/{CAPTURE_STAMP}{captured_at.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{run_id[:8]}"


def history_prefix(hours: list[datetime]) -> str:
    """The folder of the history captures of ``hours`` (as ``snapshot_prefix`` is a snapshot's)."""
    return f"{HISTORY_ROOT}/{_span_folder(hours)}"


def _file_entry(name: str, page: ApiPage, kind: str, coin: dict | None = None) -> dict:
    """A manifest entry, in part 1 (history files are given their parts when the capture is finished)."""
    entry = {
        "name": name, "kind": kind, "page": page.page, "request": page.request, "status": page.status,
        "fetched_at": iso_utc(page.fetched_at), "sha256": page.payload_sha256, "bytes": len(page.body),
        "part": 1,
    }  # fmt: skip
    if coin is not None:
        entry["coin"] = {key: coin.get(key) for key in ("id", "symbol", "name")}
    return entry


@dataclass(frozen=True)
class Capture:
    """One landed capture: its id (= its landing folder) and its manifest."""

    capture_id: str
    manifest: dict

    @cached_property
    def hours(self) -> list[datetime]:
        return [datetime.fromisoformat(hour) for hour in self.manifest["hours"]]

    @cached_property
    def hour_ms(self) -> np.ndarray:
        """``hours`` as unix milliseconds, what history points are matched on (once per capture,
        not per chunk: a year of a thousand coins is 5,000 chunks of 8,784 hours)."""
        return np.array([int(hour.timestamp() * 1000) for hour in self.hours], dtype=np.int64)

    def chunk_hours(self, entry: dict) -> np.ndarray:
        """Positions in ``hours`` of the hours a history chunk answers for: those in [from, to)
        of its request. Consecutive chunks' ranges meet at their ends and CoinGecko includes
        both, so a point at the meeting hour belongs to the later chunk, whichever part holds it."""
        query = parse_qs(urlsplit(entry["request"]).query)
        start_ms, end_ms = (int(query[name][0]) * 1000 for name in ("from", "to"))
        return np.flatnonzero((self.hour_ms >= start_ms) & (self.hour_ms < end_ms))

    @property
    def source(self) -> str:
        return self.manifest["source"]

    @property
    def parts(self) -> int:
        """How many Bronze commits its rows take (captures landed before parts existed: one)."""
        return self.manifest.get("parts", 1)

    def files_of(self, part: int) -> list[dict]:
        """The manifest entries of the files that make part ``part``'s rows (``universe`` pages make none)."""
        return [e for e in self.manifest["files"] if e.get("part", 1) == part and e["kind"] != "universe"]

    def part_rows(self, part: int, landing: Landing) -> pa.Table:
        """The Bronze rows of one part (without ``ingest_date``, which the lakehouse derives),
        built from its landing files."""
        entries = self.files_of(part)
        if self.source == SNAPSHOT:
            tables = [_snapshot_rows(self, entry, landing.read(self.capture_id, entry["name"])) for entry in entries]
        else:
            tables = [_history_rows(self, entry, landing.read(self.capture_id, entry["name"])) for entry in entries]
        tables = [table for table in tables if table is not None]
        return pa.concat_tables(tables) if tables else _BRONZE_PHYSICAL.empty_table()


class CaptureLanding:
    """Lands one capture as its responses arrive: each body at once, the manifest last."""

    def __init__(
        self,
        landing: Landing,
        capture_id: str,
        source: str,
        run_id: str,
        vs_currency: str,
        hours: list[datetime],
        coins_per_part: int = COINS_PER_PART,
        part_body_bytes: int = PART_BODY_BYTES,
    ):
        self.landing, self.capture_id = landing, capture_id
        self.coins_per_part, self.part_body_bytes = coins_per_part, part_body_bytes
        self.files: list[dict] = []
        self.manifest = {
            "source": source,
            "run_id": run_id,
            "vs_currency": vs_currency,
            "hours": [iso_utc(hour) for hour in hours],
            "files": self.files,
        }

    def add(self, name: str, page: ApiPage, kind: str, coin: dict | None = None) -> None:
        self.landing.put(self.capture_id, name, page.body)
        self.files.append(_file_entry(name, page, kind, coin))

    def add_coin(self, coin: dict, pages: list[ApiPage]) -> None:
        """A coin's history chunks (their parts are cut when the capture is finished)."""
        folder = _file_folder(coin["id"])
        for page in pages:
            self.add(f"coins/{folder}/chunk-{page.page:04d}.json", page, "history", coin=coin)

    def _cut_into_parts(self) -> int:
        """Number the history files' parts, chunk by chunk (every coin's chunk N covers the same
        range), in landing order, a new part once one more file would pass ``coins_per_part``
        coins or ``part_body_bytes`` bytes. Returns the number of parts."""
        part, coins, size, chunk = 0, 0, 0, None
        for entry in sorted((e for e in self.files if e["kind"] == "history"), key=lambda e: e["page"]):
            full = coins >= self.coins_per_part or size + entry["bytes"] > self.part_body_bytes
            if entry["page"] != chunk or (coins and full):
                part, coins, size, chunk = part + 1, 0, 0, entry["page"]
            entry["part"], coins, size = part, coins + 1, size + entry["bytes"]
        return max(part, 1)

    def finish(self) -> Capture:
        """Write the manifest: from now on the capture exists."""
        manifest = {**self.manifest, "parts": self._cut_into_parts()}
        self.landing.put_manifest(self.capture_id, manifest)
        return Capture(self.capture_id, manifest)


def land_snapshot(landing: Landing, markets: MarketsCapture, hour: datetime, vs_currency: str, run_id: str) -> Capture:
    """The in-progress hour's ``/coins/markets`` pages, landed as one capture."""
    capture = CaptureLanding(
        landing,
        capture_id_at(snapshot_prefix(hour), run_id, datetime.now(timezone.utc)),
        SNAPSHOT,
        run_id,
        vs_currency,
        [hour],
    )
    for page in markets.pages:
        capture.add(f"page-{page.page:04d}.json", page, "markets")
    return capture.finish()


def history_landing(
    landing: Landing,
    hours: list[datetime],
    vs_currency: str,
    run_id: str,
    coins_per_part: int = COINS_PER_PART,
    part_body_bytes: int = PART_BODY_BYTES,
) -> CaptureLanding:
    """Past hours rebuilt from each coin's ``market_chart/range`` chunks, one capture (the
    ``/coins/markets`` pages the coins were chosen from, if fetched, are landed as ``universe``
    files; they make no rows)."""
    landed_as = capture_id_at(history_prefix(hours), run_id, datetime.now(timezone.utc))
    return CaptureLanding(landing, landed_as, HISTORY, run_id, vs_currency, hours, coins_per_part, part_body_bytes)


def _array(values, dtype: pa.DataType) -> pa.Array:
    return values.cast(dtype) if isinstance(values, pa.Array) else pa.array(values, dtype)


def _rows(capture: Capture, entry: dict, hours: pa.Array, positions, coin_ids, texts) -> pa.Table:
    """One file's rows: the per-record columns given, the rest from the capture and the file."""
    n = len(texts)
    constant = lambda value, dtype: pa.repeat(pa.scalar(value, dtype), n)  # noqa: E731
    columns = {
        "coin_id": _array(coin_ids, pa.string()),
        "record_json": _array(texts, pa.string()),
        "source": constant(capture.source, pa.string()),
        "vs_currency": constant(capture.manifest["vs_currency"], pa.string()),
        "capture_id": constant(capture.capture_id, pa.string()),
        "page": constant(entry["page"], pa.int32()),
        "position": _array(positions, pa.int32()),
        "request": constant(entry["request"], pa.string()),
        "http_status": constant(entry["status"], pa.int32()),
        "payload_sha256": constant(entry["sha256"], pa.string()),
        "ingested_at": constant(datetime.fromisoformat(entry["fetched_at"]), TS),
        "run_id": constant(capture.manifest["run_id"], pa.string()),
        "ingest_hour": hours,
    }
    return pa.table(columns, schema=_BRONZE_PHYSICAL)


def _snapshot_rows(capture: Capture, entry: dict, body: bytes) -> pa.Table:
    """Every record of a page, in order; a record that is not an object with a string id keeps
    a null coin_id (Silver quarantines it)."""
    records = json.loads(body)
    coin_ids = [r.get("id") if isinstance(r, dict) and isinstance(r.get("id"), str) else None for r in records]
    [hour] = capture.hours
    return _rows(
        capture,
        entry,
        pa.repeat(pa.scalar(hour, TS), len(records)),
        list(range(len(records))),
        coin_ids,
        [json.dumps(record) for record in records],
    )


def _points(body: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A series ``[[unix_ms, value], ...]`` as (ms, value) arrays sorted by time."""
    points = np.asarray(body.get(name) or [], dtype=np.float64).reshape(-1, 2)
    order = np.argsort(points[:, 0], kind="stable")
    return points[order, 0].astype(np.int64), points[order, 1]


def _value_at(series: tuple[np.ndarray, np.ndarray], ms: np.ndarray) -> pa.Array:
    """The series' value at each of ``ms`` (null where it has none), as JSON number texts."""
    stamps, values = series
    if not len(stamps):
        return pa.nulls(len(ms), pa.string())
    at = np.minimum(np.searchsorted(stamps, ms), len(stamps) - 1)  # the first stamp >= ms, or the last
    return pc.cast(pa.array(values[at], mask=stamps[at] != ms), pa.string())


def _history_rows(capture: Capture, entry: dict, body: bytes) -> pa.Table | None:
    """One reconstructed record per hour a coin's chunk answers for (``chunk_hours``) that
    has a price point.

    Of several points in one hour (CoinGecko returns 5-minutely data for the last day) the
    first is taken: the one nearest the hourly schedule's capture time.
    """
    parsed = json.loads(body)
    prices = np.asarray(parsed.get("prices") or [], dtype=np.float64).reshape(-1, 2)
    ms = prices[:, 0].astype(np.int64)
    hour_ms = ms - ms % HOUR_MS
    coin = entry["coin"]
    _, first = np.unique(hour_ms, return_index=True)
    keep = np.sort(first[np.isin(hour_ms[first], capture.hour_ms[capture.chunk_hours(entry)])])
    if not len(keep):
        return None
    ms, price = ms[keep], prices[keep, 1]
    head = json.dumps({"id": coin["id"], "symbol": coin["symbol"], "name": coin["name"]})[:-1]
    stamps = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
    texts = pc.binary_join_element_wise(
        head + ', "current_price": ', pc.cast(pa.array(price), pa.string()),
        ', "market_cap": ', _value_at(_points(parsed, "market_caps"), ms),
        ', "total_volume": ', _value_at(_points(parsed, "total_volumes"), ms),
        ', "last_updated": "', pa.array(stamps, pa.string()), 'Z"}',
        "", null_handling="replace", null_replacement="null",
    )  # fmt: skip
    hours = pa.array(hour_ms[keep] * 1000, pa.int64()).cast(TS)
    return _rows(capture, entry, hours, keep, pa.repeat(pa.scalar(coin["id"], pa.string()), len(keep)), texts)
