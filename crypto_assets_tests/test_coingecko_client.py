"""The real CoinGecko client against the real simulator on 127.0.0.1: paging, keys, retries, refusals."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from crypto_assets.resources.coingecko import CoinGeckoError, CoinGeckoResource
from crypto_assets.resources.coingecko.client import HISTORY_CALLS_IN_FLIGHT
from crypto_assets.simulator import Simulator

NOW = datetime(2026, 11, 25, 13, 7, 30, tzinfo=timezone.utc)
KEY = "CG-test-key-123"
FAST = dict(calls_per_minute=60_000, backoff_seconds=0.05, timeout_seconds=5.0, max_retry_seconds=10.0)


@pytest.fixture
def sim():
    with Simulator(coins=700, api_key=KEY, now=NOW) as s:
        yield s


def client_for(sim, **overrides):
    fields = {"api_key": KEY, "base_url": sim.base_url, **FAST, **overrides}
    return CoinGeckoResource(**fields).get_client()


def market_queries(sim):
    return [parse_qs(urlsplit(r["path"]).query) for r in sim.requests if "/coins/markets" in r["path"]]


@pytest.mark.parametrize(("limit", "per_page", "pages"), [(250, 250, 1), (300, 150, 2), (600, 200, 3), (1, 1, 1)])
def test_paging_splits_the_limit_evenly(sim, limit, per_page, pages):
    capture = client_for(sim).markets(limit)
    queries = market_queries(sim)
    assert [q["page"] for q in queries] == [[str(p)] for p in range(1, pages + 1)]
    assert {q["per_page"][0] for q in queries} == {str(per_page)}
    assert all(q["order"] == ["market_cap_desc"] and q["price_change_percentage"] == ["1h,24h,7d"] for q in queries)
    assert len(capture.pages) == pages and capture.requested == limit
    assert [r["id"] for _, _, r in capture.records] == [r["id"] for r in sim.market_at(NOW)[:limit]]
    assert [r for _, _, r in capture.records] == sim.market_at(NOW)[:limit]
    assert capture.unique_ids == limit and capture.duplicate_ids == []
    assert capture.records[per_page - 1][:2] == (1, per_page - 1) and capture.records[-1][0] == pages


def test_a_universe_smaller_than_the_limit_stops_on_the_short_page():
    with Simulator(coins=120, now=NOW) as small:
        capture = client_for(small, api_key=None).markets(300)
        assert len(capture.pages) == 1 and len(capture.records) == 120
    with Simulator(coins=300, now=NOW) as exact:
        capture = client_for(exact, api_key=None).markets(600)  # 200 + 100: the short page ends it
        assert len(capture.pages) == 2 and len(capture.records) == 300


def test_api_page_keeps_the_body_and_the_request_without_the_key(sim):
    capture = client_for(sim).markets(300)
    page = capture.pages[1]
    assert page.endpoint == "/coins/markets" and page.page == 2 and page.status == 200
    assert (
        page.request
        == "/coins/markets?vs_currency=usd&order=market_cap_desc&per_page=150&page=2&price_change_percentage=1h,24h,7d"
    )
    assert page.payload_sha256 == hashlib.sha256(page.body).hexdigest()
    assert page.fetched_at.tzinfo is not None and page.body.startswith(b'[{"id":')


def test_key_travels_only_in_the_plan_header(sim, caplog):
    caplog.set_level(logging.DEBUG)
    client = client_for(sim)
    client.ping()
    client.markets(300)
    client.market_chart_range("bitcoin", NOW - timedelta(days=2), NOW)
    assert len(sim.requests) == 4 and all(r["status"] == 200 for r in sim.requests)
    assert all(r["key_header"] == "x-cg-demo-api-key" and r["key_ok"] for r in sim.requests)
    assert not any(KEY in r["path"] for r in sim.requests) and sim.key_in_query == []
    assert KEY not in caplog.text


@pytest.mark.parametrize(
    ("sim_plan", "client", "code", "hint"),
    [
        ("demo", {"api_key": "wrong"}, 10002, "check COINGECKO_API_KEY"),
        ("demo", {"api_key": None}, 10002, "set COINGECKO_API_KEY"),
        ("demo", {"plan": "pro"}, 10010, "set COINGECKO_PLAN=pro"),
        ("pro", {"plan": "demo"}, 10011, "a Demo key sent to the Pro host: set COINGECKO_PLAN=demo"),
    ],
)
def test_key_errors_fail_at_once_with_a_hint(sim_plan, client, code, hint):
    with Simulator(coins=20, api_key=KEY, plan=sim_plan, now=NOW) as sim:
        with pytest.raises(CoinGeckoError) as raised:
            client_for(sim, **client).markets(10)
        error = raised.value
        assert len(sim.requests) == 1
        assert (error.status, error.page, error.endpoint, error.retryable) == (401, 1, "/coins/markets", False)
        assert str(code) in str(error) and hint in str(error) and error.api_message
        assert KEY not in str(error)


def test_429_retry_after_seconds_is_honoured(sim):
    sim.inject("429", page=2, retry_after=1)
    capture = client_for(sim).markets(300)
    assert len(capture.records) == 300
    statuses = [(r["status"], r["time"]) for r in sim.requests]
    assert [s for s, _ in statuses] == [200, 429, 200]
    assert statuses[2][1] - statuses[1][1] >= 0.95


def test_429_retry_after_http_date_is_honoured(sim):
    sim.inject("429", retry_after=2, retry_after_http_date=True)
    client_for(sim).markets(10)
    (_, t429), (status, t_ok) = [(r["status"], r["time"]) for r in sim.requests]
    assert status == 200 and t_ok - t429 >= 0.9  # an HTTP date has whole seconds: wait lies in (1, 2]


@pytest.mark.parametrize("fault", ["500", "503"])
def test_server_errors_are_retried(sim, fault):
    sim.inject(fault, times=2)
    assert len(client_for(sim).markets(10).records) == 10
    assert [r["status"] for r in sim.requests] == [int(fault), int(fault), 200]


def test_a_slow_response_times_out_and_is_retried(sim):
    sim.inject("slow", delay=1.0)
    started = time.monotonic()
    capture = client_for(sim, timeout_seconds=0.3).markets(10)
    assert len(capture.records) == 10 and len(sim.requests) == 2
    assert 0.3 <= time.monotonic() - started < 1.0


def test_a_retry_budget_or_attempt_limit_ends_in_an_error_with_the_status(sim):
    sim.inject("500", times=100)
    with pytest.raises(CoinGeckoError) as raised:
        client_for(sim, max_retry_seconds=0.3, backoff_seconds=0.1).markets(10)
    assert raised.value.status == 500 and "budget of 0.3s exhausted" in str(raised.value)
    assert "Internal Server Error" in str(raised.value)
    sim.reset()
    sim.inject("503", times=100)
    with pytest.raises(CoinGeckoError, match="gave up after 3 attempts") as raised:
        client_for(sim, max_attempts=3).markets(10)
    assert raised.value.status == 503 and len(sim.requests) == 3


def test_a_retry_after_beyond_the_budget_fails_without_waiting(sim):
    sim.inject("429", retry_after=60)
    started = time.monotonic()
    with pytest.raises(CoinGeckoError, match="budget") as raised:
        client_for(sim, max_retry_seconds=5).markets(10)
    assert raised.value.status == 429 and "exceeded the Rate Limit" in str(raised.value)
    assert time.monotonic() - started < 1 and len(sim.requests) == 1


def test_unknown_coin_is_not_retried(sim):
    with pytest.raises(CoinGeckoError) as raised:
        client_for(sim).market_chart_range("no-such-coin", NOW - timedelta(days=1), NOW)
    assert raised.value.status == 404 and raised.value.api_message == "coin not found" and len(sim.requests) == 1


@pytest.mark.parametrize(
    ("fault", "opts", "expect"),
    [
        ("html", {}, "<!DOCTYPE html>"),
        ("html", {"variant": "1015"}, "error code: 1015"),
        ("truncated", {}, '[{"id":"coin-'),
        ("error_object", {}, '{"status":{"error_code":429'),
        ("wrapped", {}, '{"data":[{"id":'),
        ("wrapped", {"key": "markets"}, '{"markets":[{"id":'),
    ],
)
def test_malformed_pages_are_refused_naming_page_status_and_body(sim, fault, opts, expect):
    sim.inject(fault, page=2, **opts)
    with pytest.raises(CoinGeckoError) as raised:
        client_for(sim).markets(300)
    message = str(raised.value)
    assert "page 2" in message and "HTTP 200" in message and expect in message
    assert raised.value.page == 2 and raised.value.status == 200 and len(sim.requests) == 2


def test_duplicates_across_pages_are_kept_and_reported(sim, caplog):
    sim.inject("duplicates", page=2, count=3)
    with caplog.at_level(logging.INFO, logger="dagster.builtin.crypto_assets.coingecko"):
        capture = client_for(sim).markets(300)
    assert len(capture.records) == 300 and capture.unique_ids == 297
    page1_tail = [r["id"] for p, _, r in capture.records if p == 1][-3:]
    assert capture.duplicate_ids == page1_tail
    assert "markets page 1/2: 150 records" in caplog.text and "ids served more than once" in caplog.text


@pytest.mark.parametrize("fault", ["drift", "string_numbers", "bad_values"])
def test_record_level_oddities_pass_through_raw(sim, fault):
    """Values are Silver's to judge; the client keeps every record exactly as served."""
    sim.inject(fault)
    capture = client_for(sim).markets(10)
    assert len(capture.records) == 10 and capture.records[0][2] != sim.market_at(NOW)[0]


def test_rate_limiter_spaces_calls_across_threads(sim):
    client = client_for(sim, calls_per_minute=600)  # one call per 0.1 s
    threads = [threading.Thread(target=lambda: [client.ping() for _ in range(3)]) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times = sorted(r["time"] for r in sim.requests)
    assert len(times) == 6 and times[-1] - times[0] >= 0.45
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.06  # 0.1 s apart, minus transit jitter


def test_history_is_chunked_to_keep_hourly_points(sim):
    start, end = NOW - timedelta(days=100), NOW - timedelta(days=1)
    history = client_for(sim).market_chart_range("ethereum", start, end)
    assert len(history.pages) == 2 and [p.page for p in history.pages] == [1, 2]
    spans = [parse_qs(urlsplit(r["path"]).query) for r in sim.requests]
    assert int(spans[0]["from"][0]) == int(start.timestamp()) and int(spans[1]["to"][0]) == int(end.timestamp())
    assert all(int(s["to"][0]) - int(s["from"][0]) <= 90 * 86400 for s in spans)
    stamps = [ms for ms, _ in history.prices]
    assert (
        stamps == sorted(set(stamps)) and start.timestamp() * 1000 <= stamps[0] and stamps[-1] < end.timestamp() * 1000
    )
    hourly = [ms for ms in stamps if ms >= (NOW - timedelta(days=90)).timestamp() * 1000]
    assert len(hourly) == 89 * 24 and all(b - a == 3_600_000 for a, b in zip(hourly, hourly[1:]))
    assert len(history.market_caps) == len(history.total_volumes) == len(history.prices)


def test_history_older_than_90_days_is_daily(sim):
    history = client_for(sim).market_chart_range("bitcoin", NOW - timedelta(days=200), NOW - timedelta(days=150))
    assert len(history.pages) == 1 and len(history.prices) == 50
    assert all(ms % 86_400_000 == 0 for ms, _ in history.prices)


@pytest.mark.parametrize(
    ("series", "point"),
    [
        ("prices", None),  # [ms, true]: a JSON boolean is not a number
        ("prices", [1764000000000, "101.5"]),
        ("market_caps", [1764000000000, None]),
        ("total_volumes", [1764000000000, 1, 2]),
        ("prices", 1764000000000),
        ("total_volumes", "missing"),
    ],
)
def test_malformed_history_points_are_refused_naming_the_series(sim, series, point):
    sim.inject("bad_points", endpoint="*", series=series, **({"point": point} if point is not None else {}))
    with pytest.raises(CoinGeckoError, match=rf"missing or malformed '{series}'") as raised:
        client_for(sim).market_chart_range("bitcoin", NOW - timedelta(days=2), NOW)
    assert raised.value.page == 1 and raised.value.status == 200


def test_whole_numbers_are_history_points(sim):
    start = NOW - timedelta(days=2)
    first_ms = int(start.timestamp() * 1000) + 1000  # in the range, before its first hourly point
    sim.inject("bad_points", endpoint="*", point=[first_ms, 5])
    history = client_for(sim).market_chart_range("bitcoin", start, NOW)
    assert history.prices[0] == (first_ms, 5.0) and len(history.prices) == len(history.market_caps) == 48


def test_history_calls_overlap_and_come_back_in_the_order_asked(sim):
    client = client_for(sim, timeout_seconds=60)
    ids = [r["id"] for r in sim.market_at(NOW)[:12]]
    sim.inject("slow", endpoint="*", times=HISTORY_CALLS_IN_FLIGHT, delay=60)
    results: list = []
    fetching = threading.Thread(
        target=lambda: results.extend(f.result() for f in client.market_chart_ranges(ids, NOW - timedelta(days=1), NOW))
    )
    fetching.start()
    deadline = time.monotonic() + 20
    while sim.held < HISTORY_CALLS_IN_FLIGHT and time.monotonic() < deadline:
        time.sleep(0.01)
    held = sim.release_held()  # every slow reply was in flight at once: a serial client holds one
    fetching.join(20)
    assert held == HISTORY_CALLS_IN_FLIGHT > 1
    assert [history.coin_id for history in results] == ids


def test_a_failed_history_call_stops_the_fetch(sim):
    ids = [r["id"] for r in sim.market_at(NOW)[:40]]
    sim.inject("key_error", endpoint="*", code=10002)
    with pytest.raises(CoinGeckoError, match="API Key Missing"):
        for fetched in client_for(sim).market_chart_ranges(ids, NOW - timedelta(days=1), NOW):
            fetched.result()
    # the failed call, those in flight beside it and the ones taken before it; never the 40
    assert len(sim.requests) <= 2 * (HISTORY_CALLS_IN_FLIGHT + 1)


def test_resource_validation_and_defaults():
    # each field is checked where it is declared (the variables' own errors: test_settings.py)
    with pytest.raises(ValueError, match=r"plan\n  Input should be 'demo' or 'pro'"):
        CoinGeckoResource(plan="enterprise")
    with pytest.raises(ValueError, match=r"coins_limit\n  Input should be greater than or equal to 1"):
        CoinGeckoResource(coins_limit=0)
    with pytest.raises(ValueError, match=r"calls_per_minute\n  Input should be greater than 0"):
        CoinGeckoResource(calls_per_minute=0)
    demo = CoinGeckoResource()
    assert demo.get_client() is demo.get_client()
    assert demo.get_client().base_url == "https://api.coingecko.com/api/v3"
    assert demo.get_client().limiter.interval == pytest.approx(2.0)
    pro = CoinGeckoResource(plan="pro", api_key="x").get_client()
    assert pro.base_url == "https://pro-api.coingecko.com/api/v3" and pro.limiter.interval == pytest.approx(0.12)


BARE_SAMPLES = [
    "markets_2021-06-24T03-32Z_100.json",
    "markets_2023-05-13T10-38Z_250.json",
    "markets_2023-10-09T10-04Z_100_sparkline-7d_minified.json",
    "markets_2024-04-04T11-59Z_10_crlf.json",
    "markets_2025-02-25T11-02Z_100.json",
]
WRAPPED_SAMPLES = [
    "markets_2022-10-04T20-16Z_100_wrapped-markets-key.json",
    "markets_2023-10-08T20-12Z_100_wrapped-data-key.json",
]


@pytest.mark.parametrize("name", BARE_SAMPLES)
def test_recorded_bare_arrays_are_accepted_byte_for_byte(name, samples):
    path = samples / name
    count = int(name.split("_")[2].split(".")[0])
    with Simulator(markets_file=path) as sim:
        capture = client_for(sim, api_key=None).markets(250)
    assert capture.pages[0].body == path.read_bytes()
    assert len(capture.records) == count and capture.unique_ids == count and len(capture.pages) == 1


@pytest.mark.parametrize("name", WRAPPED_SAMPLES)
def test_recorded_wrapped_bodies_are_refused(name, samples):
    path = samples / name
    with Simulator(markets_file=path) as sim:
        with pytest.raises(CoinGeckoError, match="page 1.*HTTP 200.*refusing to unwrap"):
            client_for(sim, api_key=None).markets(100)


@pytest.mark.parametrize("coins, pages", [(700, 3), (500, 3)])
def test_no_limit_pages_to_the_end_of_the_list(coins, pages):
    """CRYPTO_COINS_LIMIT=all: 250 a page until a short page (an empty one when the count divides)."""
    with Simulator(coins=coins, api_key=KEY, now=NOW) as sim:
        markets = client_for(sim).markets(None)
        assert len(markets.records) == markets.unique_ids == coins
        assert [q["page"] for q in market_queries(sim)] == [[str(p)] for p in range(1, pages + 1)]
        assert all(q["per_page"] == ["250"] for q in market_queries(sim))
