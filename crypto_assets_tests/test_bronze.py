"""Bronze through Dagster in-process, against the simulator on 127.0.0.1: what is captured, what is
re-used, what a failure leaves behind, and where the API key may (not) end up."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dagster import AssetCheckSeverity, DagsterInstance, EnvVar, materialize

from crypto_assets.assets.bronze import bronze_coingecko_markets, duplicate_ids
from crypto_assets.capture_log import Appended, append_capture_parts, unfinished_captures
from crypto_assets.captures import history_landing
from crypto_assets.partitions import HOUR, current_hour, hour_label, hours_in, partition_key
from crypto_assets.resources.coingecko import CoinGeckoResource
from crypto_assets.resources.lakehouse import LakehouseResource, rows_per_hour
from crypto_assets.simulator import Simulator
from crypto_assets.tables import BRONZE

LIMIT = 30
pytestmark = pytest.mark.usefixtures("hour_settled")


def capture(
    lake: LakehouseResource, base_url: str, start, end=None, *, api_key=None, refetch=False, instance=None, limit=LIMIT
):
    """Materialise Bronze for [start, end) (one partition when end is None) in-process."""
    tags = {}
    if end is not None:
        tags = {
            "dagster/asset_partition_range_start": partition_key(start),
            "dagster/asset_partition_range_end": partition_key(end - HOUR),
        }
    return materialize(
        [bronze_coingecko_markets],
        partition_key=None if end is not None else partition_key(start),
        tags=tags,
        resources={
            "coingecko": CoinGeckoResource(
                base_url=base_url, coins_limit=limit, calls_per_minute=60000, api_key=api_key, backoff_seconds=0.01
            ),
            "lakehouse": lake,
        },
        run_config={"ops": {"raw_data__bronze_coingecko_markets": {"config": {"refetch": refetch}}}},
        instance=instance or DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def landing_folders(lake: LakehouseResource) -> list[Path]:
    root = Path(lake.landing_uri("coingecko"))
    return sorted(p for p in root.glob("*/**/capture=*") if p.is_dir()) if root.exists() else []


@pytest.fixture
def lake(tmp_path) -> LakehouseResource:
    return LakehouseResource(root=str(tmp_path / "lake"))


def test_a_captured_hour_is_reused_without_any_api_call(lake, simulator):
    now = current_hour()
    assert capture(lake, simulator.base_url, now).success
    before = len(simulator.requests)
    result = capture(lake, simulator.base_url, now)
    assert result.success
    assert len(simulator.requests) == before
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["hours_reused"].value == 1


def test_refetch_adds_a_capture_and_keeps_the_old_one_whole(lake, simulator):
    now = current_hour()
    assert capture(lake, simulator.base_url, now).success
    [first] = landing_folders(lake)
    first_bytes = {p.name: p.read_bytes() for p in first.iterdir()}
    first_rows = lake.read_window_arrow(BRONZE, now, now + HOUR)
    assert capture(lake, simulator.base_url, now, refetch=True).success

    folders = landing_folders(lake)
    assert len(folders) == 2 and first in folders
    assert {p.name: p.read_bytes() for p in first.iterdir()} == first_bytes
    [second] = [folder for folder in folders if folder != first]
    bronze = lake.read_window_arrow(BRONZE, now, now + HOUR)
    # Bronze is the union of the hour's captures: the first one's rows are still there, as they were
    ids = [str(folder.relative_to(Path(lake.landing_uri("")))) for folder in (first, second)]
    assert len(bronze) == 2 * LIMIT and set(bronze.column("capture_id").to_pylist()) == set(ids)
    kept = bronze.filter(pc.equal(bronze.column("capture_id"), ids[0])).sort_by("position")
    assert kept.equals(first_rows.sort_by("position"))


def test_a_past_hour_already_snapshotted_is_reused_by_a_backfill_not_replaced_by_history(lake, simulator):
    now = current_hour()
    assert capture(lake, simulator.base_url, now).success
    before = lake.read_window_arrow(BRONZE, now, now + HOUR)
    # a backfill whose range ends with the hour the schedule just captured, over a week back
    # (Bronze's hours are counted a week at a time: the captured hour is not in the first week)
    backfill = capture(lake, simulator.base_url, now - 200 * HOUR, now + HOUR)
    assert backfill.success
    [bronze] = backfill.get_step_success_events()
    assert backfill.asset_materializations_for_node(bronze.step_key)[0].metadata["hours_reused"].value == 1
    after = lake.read_window_arrow(BRONZE, now, now + HOUR)
    assert after.equals(before) and set(after.column("source").to_pylist()) == {"snapshot"}


def test_landing_files_are_the_response_bodies_byte_for_byte(lake, simulator):
    now = current_hour()
    assert capture(lake, simulator.base_url, now, limit=300).success
    [folder] = landing_folders(lake)
    pages = sorted(folder.glob("page-*.json"))
    assert [p.name for p in pages] == ["page-0001.json", "page-0002.json"]
    bronze = lake.read_window_arrow(BRONZE, now, now + HOUR)
    hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in pages}
    assert set(bronze.column("payload_sha256").to_pylist()) == set(hashes.values())
    records = [record for p in pages for record in json.loads(p.read_bytes())]
    assert len(bronze) == len(records) >= 300


@pytest.mark.parametrize("fault", ["truncated", "html", "wrapped", "error_object", "500"])
def test_a_bad_page_fails_the_run_and_leaves_no_partial_hour(lake, simulator, fault):
    now = current_hour()
    simulator.inject(fault, page=2, times=99)
    try:
        result = capture(lake, simulator.base_url, now, limit=300)
    finally:
        simulator.clear_faults()
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "page 2" in failure.to_string() and "CoinGeckoError" in failure.to_string()
    assert lake.delta_table(BRONZE) is None
    assert landing_folders(lake) == []
    assert not list(Path(lake.landing_uri("")).rglob("*.json"))


def test_past_hours_come_from_history_fetched_once_per_coin(lake, simulator):
    now = current_hour()
    first = now - 5 * HOUR
    assert capture(lake, simulator.base_url, now).success  # the universe: this hour's snapshot
    before = len(simulator.requests)
    result = capture(lake, simulator.base_url, first, now)
    assert result.success
    calls = [r["path"] for r in simulator.requests[before:]]
    assert len(calls) == LIMIT and all("/market_chart/range" in path for path in calls)
    bronze = lake.read_window_arrow(BRONZE, first, now)
    assert list(rows_per_hour(bronze, first, now).values()) == [LIMIT] * 5
    assert set(bronze.column("source").to_pylist()) == {"history"}
    record = json.loads(bronze.column("record_json")[0].as_py())
    assert set(record) == {"id", "symbol", "name", "current_price", "market_cap", "total_volume", "last_updated"}


def test_a_universe_served_with_duplicates_is_fetched_once_per_coin(lake, simulator):
    """Ranks moving while paging serve a coin on two pages of /coins/markets: each is one coin."""
    now = current_hour()
    simulator.inject("duplicates", page=2, count=3)  # page 2 starts 3 ranks early
    before = len(simulator.requests)
    try:
        result = capture(lake, simulator.base_url, now - 2 * HOUR, now, limit=260)  # 2 pages of 130
    finally:
        simulator.clear_faults()
    assert result.success
    [folder] = landing_folders(lake)
    served = [r["id"] for page in sorted(folder.glob("universe/page-*.json")) for r in json.loads(page.read_bytes())]
    assert len(served) == 260 and len(set(served)) == 257
    calls = Counter(r["path"] for r in simulator.requests[before:] if "/market_chart/range" in r["path"])
    assert len(calls) == 257 and set(calls.values()) == {1}
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["history_coins"].value == 257


def test_hours_older_than_90_days_get_daily_points_only_and_the_gaps_are_reported(lake, simulator):
    first = current_hour().replace(hour=0) - 100 * 24 * HOUR
    result = capture(lake, simulator.base_url, first, first + 3 * HOUR)
    assert result.success
    event = result.get_asset_materialization_events()[0]  # one per hour of the range, same metadata
    gaps = event.materialization.metadata["history_hours_without_points"].value
    assert len(gaps) == LIMIT  # every coin misses 01:00 and 02:00: only the midnight point exists
    assert all(len(hours) == 2 for hours in gaps.values())
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "hours_captured"]
    assert not check.passed
    counts = rows_per_hour(lake.read_window_arrow(BRONZE, first, first + 3 * HOUR), first, first + 3 * HOUR)
    assert list(counts.values()) == [LIMIT, 0, 0]


def test_the_api_key_is_sent_as_a_header_and_stored_nowhere(lake, tmp_path, monkeypatch):
    key = "CG-secret-test-key-7f3a9"
    home = tmp_path / "dagster_home"
    home.mkdir()
    with Simulator(coins=60, api_key=key) as sim, DagsterInstance.local_temp(str(home)) as instance:
        now = current_hour()
        monkeypatch.setenv("COINGECKO_TEST_KEY", key)
        secret = EnvVar("COINGECKO_TEST_KEY")  # as definitions.py configures it
        assert capture(lake, sim.base_url, now, api_key=secret, instance=instance).success
        assert capture(lake, sim.base_url, now - 2 * HOUR, now, api_key=secret, instance=instance).success
        assert not sim.key_in_query
        assert all(r["key_header"] == "x-cg-demo-api-key" and r["key_ok"] for r in sim.requests)
        # and a failure's error text does not carry it either
        sim.inject("500", times=99)
        failed = capture(lake, sim.base_url, now, api_key=secret, refetch=True, instance=instance)
        assert not failed.success
    for root in (home, Path(lake.root)):
        for path in root.rglob("*"):
            if path.is_file():
                assert key.encode() not in path.read_bytes(), path


HOSTILE = {
    "coin-0004": "../../../../escaped",
    "coin-0005": "/etc/cg-escaped",
    "coin-0006": "..",
    "coin-0007": "a%2F..%2Fb",
}


def test_hostile_ids_stay_data_in_urls_files_and_rows_and_a_404_coin_is_a_gap(tmp_path):
    lake = LakehouseResource(root=str(tmp_path / "deep" / "er" / "lake"))
    now = current_hour()
    instance = DagsterInstance.ephemeral()
    with Simulator(coins=12, rename=HOSTILE, delisted=("coin-0008",)) as sim:
        assert capture(lake, sim.base_url, now, limit=12).success  # the universe: this hour's snapshot
        result = capture(lake, sim.base_url, now - 3 * HOUR, now, limit=12, instance=instance)
        history_paths = [r["path"] for r in sim.requests if "/market_chart/range" in r["path"]]
    assert result.success
    # each id is one encoded URL segment
    assert any(path.startswith("/api/v3/coins/..%2F..%2F..%2F..%2Fescaped/market_chart") for path in history_paths)
    assert any(path.startswith("/api/v3/coins/%2E%2E/market_chart") for path in history_paths)
    # nothing was written outside the lake, and every history file sits in its capture folder
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and Path(lake.root) not in p.parents]
    assert outside == []
    bronze = lake.read_window_arrow(BRONZE, now - 3 * HOUR, now)
    assert set(HOSTILE.values()) <= set(bronze.column("coin_id").to_pylist())
    # the delisted coin is a recorded gap with a warning, not a failed run
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["coins_not_found"].value == ["coin-0008"]
    assert metadata["history_hours_without_points"].value["coin-0008"] == [
        hour_label(now - i * HOUR) for i in (3, 2, 1)
    ]
    assert "coin-0008" not in bronze.column("coin_id").to_pylist()
    warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    assert any("does not know coin 'coin-0008' (404" in message for message in warnings), warnings
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "history_coins_found"]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.metadata["coins_not_found"].value == ["coin-0008"]


def test_records_without_a_string_id_are_kept_for_the_quarantine_not_refused_with_their_page(lake, simulator):
    now = current_hour()
    simulator.inject("missing_ids")
    try:
        assert capture(lake, simulator.base_url, now).success
    finally:
        simulator.clear_faults()
    bronze = lake.read_window_arrow(BRONZE, now, now + HOUR).sort_by("position")
    assert len(bronze) == LIMIT and bronze.column("coin_id").to_pylist()[:3] == [None, None, None]
    assert json.loads(bronze.column("record_json")[2].as_py()) == ["not", "an", "object"]


def test_a_key_with_a_trailing_newline_works_and_appears_nowhere(lake, tmp_path, monkeypatch):
    key = "CG-newline-key-4b2e1"
    home = tmp_path / "dagster_home"
    home.mkdir()
    with Simulator(coins=40, api_key=key) as sim, DagsterInstance.local_temp(str(home)) as instance:
        monkeypatch.setenv("COINGECKO_TEST_KEY", key + "\r\n")  # a CRLF .env, a secret file's newline
        result = capture(lake, sim.base_url, current_hour(), api_key=EnvVar("COINGECKO_TEST_KEY"), instance=instance)
        assert result.success and all(r["key_ok"] for r in sim.requests)
        monkeypatch.setenv("COINGECKO_TEST_KEY", key[:6] + "\n" + key[6:])  # a line break inside: refused
        refused = capture(
            lake, sim.base_url, current_hour(), api_key=EnvVar("COINGECKO_TEST_KEY"), instance=instance, refetch=True
        )
    assert not refused.success
    message = refused.get_step_failure_events()[0].step_failure_data.error.to_string()
    assert "COINGECKO_API_KEY holds control characters" in message
    for path in [*home.rglob("*"), *Path(lake.root).rglob("*")]:
        if path.is_file():
            assert key[6:].encode() not in path.read_bytes(), path


def test_coins_limit_all_captures_every_listed_coin(lake, simulator):
    now = current_hour()
    result = capture(lake, simulator.base_url, now, limit=None)
    assert result.success
    metadata = result.asset_materializations_for_node("raw_data__bronze_coingecko_markets")[0].metadata
    assert metadata["coins_requested"].value == "all"
    assert metadata["coins_received"].value == metadata["coins_unique"].value == len(simulator.market.coins) == 400
    assert metadata["pages_fetched"].value == 2
    assert len(lake.read_window_arrow(BRONZE, now, now + HOUR)) == 400


def test_a_history_capture_appended_in_parts_resumes_after_its_last_committed_part(lake, simulator):
    """A run that died after committing part 1 of 2: the next run appends part 2 only."""
    now = current_hour()
    hours = [now - 3 * HOUR, now - 2 * HOUR]
    client = CoinGeckoResource(base_url=simulator.base_url, calls_per_minute=60000).get_client()
    coins = [{"id": c.id, "symbol": c.symbol, "name": c.name} for c in simulator.market.coins[:3]]
    landing = history_landing(lake.landing, hours, "usd", "run-died", coins_per_part=2)
    for coin in coins:
        landing.add_coin(coin, client.market_chart_range(coin["id"], hours[0], now - HOUR).pages)
    landed = landing.finish()
    assert landed.parts == 2
    lake.append_capture(BRONZE, landed.part_rows(1, lake.landing), landed.capture_id, "run-died", part=1)
    part_one = lake.read_window_arrow(BRONZE, hours[0], now)
    assert sorted(set(part_one.column("coin_id").to_pylist())) == sorted(c["id"] for c in coins[:2])

    [unfinished] = unfinished_captures(lake, hours[0], now)
    appended = Appended()
    append_capture_parts(lake, unfinished, "run-recovers", appended)
    rows = lake.read_window_arrow(BRONZE, hours[0], now)
    assert len(rows) == appended.records + len(part_one) == len(coins) * len(hours)
    assert not duplicate_ids(rows.select(["ingest_hour", "capture_id", "coin_id"]))
    assert unfinished_captures(lake, hours[0], now) == []
    history = lake.delta_table(BRONZE).history()
    assert [h.get("capture_part") for h in history[::-1] if "capture_part" in h] == ["1", "2"]
    append_capture_parts(lake, unfinished, "run-again", Appended())  # nothing left to add
    assert lake.table_version(BRONZE) == 2  # created empty, then the two parts


def test_a_long_history_capture_is_cut_into_parts_by_bytes_and_makes_the_same_rows(lake, simulator):
    """Parts hold at most ``part_body_bytes`` of responses (a year of a coin is ~100 times a
    day's), so a long window's parts are smaller in coins, never larger in rows; the rows are
    the same however the capture is cut."""
    now = current_hour()
    hours = [now - h * HOUR for h in range(48, 0, -1)]
    client = CoinGeckoResource(base_url=simulator.base_url, calls_per_minute=60000).get_client()
    coins = [{"id": c.id, "symbol": c.symbol, "name": c.name} for c in simulator.market.coins[:4]]
    pages = {coin["id"]: client.market_chart_range(coin["id"], hours[0], now).pages for coin in coins}
    largest = max(sum(len(page.body) for page in coin_pages) for coin_pages in pages.values())
    landed = {}
    for name, part_body_bytes in (("whole", 10 * largest), ("cut", largest)):
        landing = history_landing(lake.landing, hours, "usd", f"run-{name}", part_body_bytes=part_body_bytes)
        for coin in coins:
            landing.add_coin(coin, pages[coin["id"]])
        landed[name] = landing.finish()
    assert (landed["whole"].parts, landed["cut"].parts) == (1, 4)

    def rows(capture):
        parts = [capture.part_rows(part, lake.landing) for part in range(1, capture.parts + 1)]
        table = pa.concat_tables(parts).select(["coin_id", "ingest_hour", "record_json"])
        return sorted(tuple(row.values()) for row in table.to_pylist())

    assert rows(landed["cut"]) == rows(landed["whole"])
    assert len(rows(landed["cut"])) == len(coins) * len(hours)


def test_a_history_capture_longer_than_a_chunk_is_cut_into_parts_by_chunk_range(lake, simulator):
    """A part holds one chunk's range (at most 90 days: delta-rs keeps a Parquet writer per daily
    partition open until its commit), and the point where two chunks' ranges meet (CoinGecko
    answers both ends, so the daily point at the boundary's midnight comes twice) makes one row,
    though the two chunks are in different parts. Gaps add up across parts."""
    now = current_hour()
    start = (now - timedelta(days=200)).replace(hour=0)
    hours = hours_in(start, now)
    client = CoinGeckoResource(base_url=simulator.base_url, calls_per_minute=60000).get_client()
    coins = [{"id": c.id, "symbol": c.symbol, "name": c.name} for c in simulator.market.coins[:2]]
    histories = {coin["id"]: client.market_chart_range(coin["id"], start, now) for coin in coins}
    landing = history_landing(lake.landing, hours, "usd", "run-long")
    for coin in coins:
        landing.add_coin(coin, histories[coin["id"]].pages)
    capture = landing.finish()
    assert capture.parts == 3  # 90 + 90 + 20 days, both coins in each

    appended = Appended()
    append_capture_parts(lake, capture, "run-long", appended)
    for part in range(1, capture.parts + 1):
        part_hours = capture.part_rows(part, lake.landing).column("ingest_hour").to_pylist()
        assert max(part_hours) - min(part_hours) < timedelta(days=90), part
    rows = lake.read_window_arrow(BRONZE, start, now, columns=["coin_id", "ingest_hour"])
    seen = list(zip(rows.column("coin_id").to_pylist(), rows.column("ingest_hour").to_pylist()))
    assert len(seen) == len(set(seen)) == appended.records
    expected = {
        (coin, datetime.fromtimestamp(ms // 3_600_000 * 3600, timezone.utc))
        for coin, history in histories.items()
        for ms, _ in history.prices
    }
    assert set(seen) == expected
    assert appended.gap_hours == len(coins) * len(hours) - len(expected) > 0
    assert appended.coins_without_history == []
    first_missing = [hour for hour in hours if (coins[0]["id"], hour) not in expected][:24]
    assert appended.missing_points[coins[0]["id"]] == [hour_label(hour) for hour in first_missing]
