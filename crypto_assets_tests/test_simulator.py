"""The CoinGecko simulator speaks the API as recorded: shapes, paging, granularity, keys, faults."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from crypto_assets.simulator import FAULTS, Simulator

NOW = datetime(2026, 11, 25, 13, 7, 30, tzinfo=timezone.utc)
RECORD_KEYS = [
    "id", "symbol", "name", "image", "current_price", "market_cap", "market_cap_rank",
    "fully_diluted_valuation", "total_volume", "high_24h", "low_24h", "price_change_24h",
    "price_change_percentage_24h", "market_cap_change_24h", "market_cap_change_percentage_24h",
    "circulating_supply", "total_supply", "max_supply", "ath", "ath_change_percentage", "ath_date",
    "atl", "atl_change_percentage", "atl_date", "roi", "last_updated",
]  # fmt: skip
USD = {"vs_currency": "usd"}


@pytest.fixture
def sim():
    with Simulator(coins=300, now=NOW) as s:
        yield s


def get(sim, path, **params):
    return requests.get(sim.base_url + path, params=params, timeout=10)


def markets(sim, **params):
    return get(sim, "/coins/markets", **{**USD, **params})


def test_ping_and_required_vs_currency(sim):
    assert get(sim, "/ping").json() == {"gecko_says": "(V3) To the Moon!"}
    missing = get(sim, "/coins/markets")
    assert missing.status_code == 422 and missing.content == b'{"error":"Missing parameter vs_currency"}'


def test_records_have_the_real_key_order_and_timeframes(sim):
    rows = markets(sim, per_page=5, price_change_percentage="1h,24h,7d,bogus").json()
    tf_keys = [f"price_change_percentage_{tf}_in_currency" for tf in ("1h", "24h", "7d")]
    assert all(list(r) == RECORD_KEYS + tf_keys for r in rows)
    assert [r["id"] for r in rows[:2]] == ["bitcoin", "ethereum"]
    assert list(markets(sim, per_page=1).json()[0]) == RECORD_KEYS


def test_paging_follows_market_cap_and_ends_with_an_empty_page(sim):
    served = markets(sim, per_page=120, page=1).json() + markets(sim, per_page=120, page=2).json()
    last = markets(sim, per_page=120, page=3).json()
    assert len(last) == 60 and markets(sim, per_page=120, page=4).json() == []
    everything = served + last
    caps = [r["market_cap"] for r in everything]
    assert caps == sorted(caps, reverse=True)
    assert [r["id"] for r in everything] == [r["id"] for r in sim.market_at(NOW)]
    assert len(markets(sim, per_page=1000).json()) == 250  # per_page is capped at 250
    assert [r["id"] for r in markets(sim, ids="ethereum, bitcoin").json()] == ["bitcoin", "ethereum"]


def test_snapshot_is_fixed_within_the_hour_and_market_at_matches(sim):
    first = markets(sim, per_page=250, price_change_percentage="1h,24h,7d").json()
    assert first == sim.market_at(NOW)[:250]
    sim.now = NOW + timedelta(minutes=20)
    later = markets(sim, per_page=250, price_change_percentage="1h,24h,7d").json()
    strip = lambda rows: [{k: v for k, v in r.items() if k != "last_updated"} for r in rows]  # noqa: E731
    assert strip(first) == strip(later) and first != later
    sim.now = NOW + timedelta(hours=1)
    assert strip(markets(sim, per_page=250).json()) != strip(first)
    other = Simulator(coins=300, seed=7).market_at(NOW)
    assert other == sim.market_at(NOW)


def test_realistic_oddities(sim):
    body = markets(sim, per_page=250).content
    rows = json.loads(body)
    by_id = {r["id"]: r for r in rows}
    null_max = sum(r["max_supply"] is None for r in rows) / len(rows)
    assert 0.35 <= null_max <= 0.55
    rois = [r["roi"] for r in rows if r["roi"] is not None]
    assert 0 < len(rois) < len(rows) / 2 and set(rois[0]) == {"times", "currency", "percentage"}
    assert isinstance(by_id["bitcoin"]["current_price"], int)
    assert re.search(rb'"current_price":\d(\.\d+)?e-\d\d', body), "tiny prices print in exponent form"
    assert abs(by_id["coin-0003"]["current_price"] - 1) < 0.01  # the stablecoin
    assert by_id["coin-0029"]["circulating_supply"] == 0 and by_id["coin-0029"]["market_cap"] > 0
    assert by_id["coin-0041"]["total_volume"] == 0.0
    stale = by_id["coin-0183"]
    lag = NOW - datetime.fromisoformat(stale["last_updated"].replace("Z", "+00:00"))
    assert lag > timedelta(hours=24) and stale["high_24h"] is None and stale["price_change_percentage_24h"] is None
    fresh = [
        NOW - datetime.fromisoformat(r["last_updated"].replace("Z", "+00:00"))
        for r in rows
        if r["high_24h"] is not None
    ]
    assert max(fresh) < timedelta(minutes=5)
    ranks = [r["market_cap_rank"] for r in rows]
    assert ranks != sorted(ranks) and sorted(ranks) == list(range(1, 251))


def test_history_granularity(sim):
    now_s = int(NOW.timestamp())
    recent = get(sim, "/coins/ethereum/market_chart/range", **USD, **{"from": now_s - 3 * 86400, "to": now_s}).json()
    stamps = [ms // 1000 for ms, _ in recent["prices"]]
    assert len(stamps) == 72 and {t % 3600 for t in stamps} == {stamps[0] % 3600} != {0}
    assert set(recent) == {"prices", "market_caps", "total_volumes"}
    long = get(sim, "/coins/ethereum/market_chart/range", **USD, **{"from": now_s - 120 * 86400, "to": now_s}).json()
    assert all(ms % 86_400_000 == 0 for ms, _ in long["prices"]) and len(long["prices"]) == 120
    old = get(
        sim, "/coins/ethereum/market_chart/range", **USD, **{"from": now_s - 100 * 86400, "to": now_s - 80 * 86400}
    ).json()
    old_days = [ms // 1000 for ms, _ in old["prices"] if ms // 1000 < now_s - 90 * 86400]
    assert len(old_days) == 10 and all(t % 86400 == 0 for t in old_days)
    assert len(old["prices"]) - len(old_days) == 10 * 24  # the last 10 days are within 90 days: hourly
    missing = get(sim, "/coins/nope/market_chart/range", **USD, **{"from": now_s - 3600, "to": now_s})
    assert missing.status_code == 404 and missing.json() == {"error": "coin not found"}


def test_history_agrees_with_snapshots(sim):
    hour = NOW.replace(minute=0, second=0) - timedelta(hours=5)
    served = {r["id"]: r for r in sim.market_at(hour)}
    start = int(hour.timestamp())
    for coin in ("bitcoin", "ethereum", "coin-0042"):
        ((ms, price),) = get(
            sim, f"/coins/{coin}/market_chart/range", **USD, **{"from": start, "to": start + 3599}
        ).json()["prices"]
        assert price == pytest.approx(served[coin]["current_price"], rel=1e-4)


def test_api_key_header_and_errors():
    with Simulator(coins=20, api_key="sekret", plan="demo", now=NOW) as sim:
        ok = requests.get(sim.base_url + "/ping", headers={"x-cg-demo-api-key": "sekret"}, timeout=5)
        assert ok.status_code == 200
        missing = requests.get(sim.base_url + "/ping", timeout=5)
        assert missing.status_code == 401 and missing.json()["status"]["error_code"] == 10002
        assert missing.json()["status"]["error_message"].startswith("API Key Missing.")
        wrong_plan = requests.get(sim.base_url + "/ping", headers={"x-cg-pro-api-key": "sekret"}, timeout=5)
        assert wrong_plan.json()["status"]["error_code"] == 10010
        requests.get(sim.base_url + "/ping", params={"x_cg_demo_api_key": "sekret"}, timeout=5)
        assert len(sim.key_in_query) == 1
        # the log says whether the key was right, never what it was
        assert sim.requests[0]["key_ok"] and sim.requests[0]["headers"]["x-cg-demo-api-key"] == "***"
        assert [r["key_ok"] for r in sim.requests[1:3]] == [False, False]
        served_log = requests.get(sim.base_url.removesuffix("/api/v3") + "/__sim/requests", timeout=5).text
        assert "sekret" not in served_log and "sekret" not in repr(sim.requests)
    with Simulator(coins=20, api_key="sekret", plan="pro", now=NOW) as sim:
        demo_on_pro = requests.get(sim.base_url + "/ping", headers={"x-cg-demo-api-key": "sekret"}, timeout=5)
        assert demo_on_pro.json()["status"]["error_code"] == 10011


@pytest.mark.parametrize(
    ("fault", "opts", "check"),
    [
        ("429", {"retry_after": 7}, lambda r: r.status_code == 429 and r.headers["Retry-After"] == "7"),
        ("429", {"retry_after_http_date": True}, lambda r: r.headers["Retry-After"].endswith(" GMT")),
        ("500", {}, lambda r: r.status_code == 500 and r.json() == {"status": 500, "error": "Internal Server Error"}),
        ("503", {}, lambda r: r.status_code == 503),
        ("html", {}, lambda r: r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")),
        ("html", {"variant": "1015"}, lambda r: r.content == b"error code: 1015"),
        (
            "truncated",
            {},
            lambda r: r.status_code == 200 and r.content.startswith(b"[{") and not r.content.endswith(b"]"),
        ),
        ("error_object", {}, lambda r: r.status_code == 200 and r.json()["status"]["error_code"] == 429),
        ("wrapped", {}, lambda r: list(r.json()) == ["data"] and len(r.json()["data"]) == 10),
        ("wrapped", {"key": "markets"}, lambda r: list(r.json()) == ["markets"]),
        ("drift", {}, lambda r: all(x["new_field_x"] == 1 and "roi" not in x for x in r.json())),
        (
            "string_numbers",
            {},
            lambda r: isinstance(r.json()[0]["current_price"], str) and r.json()[-1]["total_volume"] == "n/a",
        ),
        ("bad_values", {}, lambda r: r.json()[0]["current_price"] is None and r.json()[-1]["total_volume"] < 0),
        ("key_error", {"code": 10011}, lambda r: r.status_code == 401 and r.json()["status"]["error_code"] == 10011),
    ],
)
def test_faults_shape_the_response_once(sim, fault, opts, check):
    sim.inject(fault, **opts)
    assert check(markets(sim, per_page=10))
    assert markets(sim, per_page=10).json() == sim.market_at(NOW, ())[:10]  # used up after `times`


def test_a_held_reply_goes_out_when_released_not_at_the_end_of_its_delay(sim):
    sim.inject("slow", delay=60)
    replies: list[requests.Response] = []
    asking = threading.Thread(target=lambda: replies.append(markets(sim, per_page=5)))
    started = time.monotonic()
    asking.start()
    while not sim.held and time.monotonic() - started < 10:
        time.sleep(0.01)
    assert sim.release_held() == 1
    asking.join(timeout=10)
    assert replies and replies[0].status_code == 200 and time.monotonic() - started < 10
    assert sim.release_held() == 0


def test_429_body_is_the_recorded_one(sim, samples):
    sample = samples / "error_429_public-api_body_transcribed.json"
    sim.inject("429")
    assert markets(sim).content == sample.read_bytes()


def test_slow_page_and_duplicates_target_one_page(sim):
    sim.inject("slow", page=2, delay=0.6)
    sim.inject("duplicates", page=2, count=4)
    page1 = markets(sim, per_page=50, page=1).json()
    with pytest.raises(requests.Timeout):
        requests.get(sim.base_url + "/coins/markets", params={**USD, "per_page": 50, "page": 2}, timeout=0.2)
    page2 = markets(sim, per_page=50, page=2).json()
    assert [r["id"] for r in page2[:4]] == [r["id"] for r in page1[-4:]]
    assert {f.fault for f in sim.faults if f.times} == set()
    assert set(FAULTS) >= {"429", "slow", "duplicates", "key_error"}


def test_http_control_api_and_cli():
    proc = subprocess.Popen(
        [sys.executable, "-m", "crypto_assets.simulator", "--port", "0", "--coins", "30", "--now", "2026-11-25T13:00:00Z"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline().strip()
        assert re.fullmatch(r"COINGECKO_BASE_URL=http://127\.0\.0\.1:\d+/api/v3", line)
        base = line.split("=", 1)[1]
        control = base.removesuffix("/api/v3") + "/__sim"
        assert requests.post(
            control + "/faults", json={"fault": "500", "endpoint": "/coins/markets", "times": 2}, timeout=5
        ).ok
        statuses = [requests.get(base + "/coins/markets", params=USD, timeout=5).status_code for _ in range(3)]
        assert statuses == [500, 500, 200]
        log = requests.get(control + "/requests", timeout=5).json()
        assert [r["status"] for r in log] == statuses and log[0]["path"].startswith("/api/v3/coins/markets?")
        assert requests.post(control + "/faults", json={"fault": "nope"}, timeout=5).status_code == 400
        assert requests.post(control + "/reset", timeout=5).ok
        assert requests.get(control + "/requests", timeout=5).json() == []
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_request_log_is_bounded_and_counts_every_request(monkeypatch):
    monkeypatch.setattr("crypto_assets.simulator.server.REQUEST_LOG_LIMIT", 5)
    with Simulator(coins=5, now=NOW) as sim:
        for _ in range(8):
            requests.get(sim.base_url + "/ping", timeout=5)
        assert len(sim.requests) == 5 and sim.request_count == 8
