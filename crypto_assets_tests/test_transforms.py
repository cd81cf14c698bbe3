"""The pure Silver and Gold transforms, on real recorded records and hand-computed inputs."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta, timezone

import duckdb
import pyarrow as pa
import pytest

from benchmarks.duckdb_reference import silver_sql
from crypto_assets.captures import capture_id_at, history_prefix, snapshot_prefix
from crypto_assets.tables import (
    BRONZE,
    GOLD_DISTRIBUTION,
    GOLD_OVERVIEW,
    GOLD_TRENDS,
    GOLD_VOLATILITY,
    QUARANTINE,
    SILVER,
    LakeTable,
)
from crypto_assets.transforms.gold import (
    Frames,
    market_distribution,
    market_overview,
    market_trends,
    price_volatility,
)
from crypto_assets.transforms.silver import SilverRules, clean_markets, unknown_fields
from support import SAMPLES, unavailable

HOUR0 = datetime(2023, 5, 13, 10, tzinfo=timezone.utc)
H = timedelta(hours=1)
DROP = object()  # a field value meaning "leave the key out of the record"


def sample(name: str) -> list[dict]:
    """A recorded /coins/markets body, read in place (never copied into the repository)."""
    path = SAMPLES / name
    if not path.exists():
        unavailable(f"recorded CoinGecko sample {path} not found")
    return json.loads(path.read_text())


def record(coin_id: str, name: str = "markets_2023-05-13T10-38Z_250.json") -> dict:
    return next(r for r in sample(name) if r["id"] == coin_id)


def bronze(spark, records, hour=HOUR0, *, page=1, source="snapshot", capture=None):
    """BRONZE-shaped rows: dicts become JSON text, strings (or None) are taken as sent."""
    rows = [
        {
            "coin_id": rec.get("id") if isinstance(rec, dict) and isinstance(rec.get("id"), str) else None,
            "record_json": json.dumps(rec) if isinstance(rec, dict) else rec,
            "source": source,
            "vs_currency": "usd",
            "capture_id": capture or f"capture-{hour:%Y%m%dT%H}",
            "page": page,
            "position": position,
            "request": "/coins/markets?vs_currency=usd",
            "http_status": 200,
            "payload_sha256": "0" * 64,
            "ingested_at": hour + timedelta(minutes=2),
            "run_id": "run",
            "ingest_hour": hour,
            "ingest_date": f"{hour:%Y-%m-%d}",
        }
        for position, rec in enumerate(records)
    ]
    return spark.createDataFrame(pa.Table.from_pylist(rows, schema=BRONZE.arrow_schema))


def silver_frame(spark, rows: list[dict]):
    """SILVER-shaped rows from partial dicts (absent columns null); ingest_date derived."""
    full = [{**row, "ingest_date": f"{row['ingest_hour']:%Y-%m-%d}"} for row in rows]
    return spark.createDataFrame(pa.Table.from_pylist(full, schema=SILVER.arrow_schema))


def collect(rows, table: LakeTable) -> list[dict]:
    """The rows (timestamps UTC-aware, via Arrow), after checking the columns against tables.py."""
    arrow = rows if isinstance(rows, pa.Table) else rows.toArrow()
    assert [(f.name, f.type) for f in arrow.schema] == [(f.name, f.type) for f in table.arrow_schema]
    return arrow.to_pylist()


def at(rows: dict, coin: str, hours: int) -> dict:
    return rows[(coin, HOUR0 + hours * H)]


def by(rows, *keys):
    return {tuple(row[k] for k in keys) if len(keys) > 1 else row[keys[0]]: row for row in rows}


# --- Silver -------------------------------------------------------------------------------


def test_full_250_record_page_goes_through_typed(spark):
    records = sample("markets_2023-05-13T10-38Z_250.json")
    frame = bronze(spark, records)
    silver, quarantine, _ = clean_markets(frame, SilverRules())
    rows = by(collect(silver, SILVER), "coin_id")
    assert len(rows) == 250 and collect(quarantine, QUARANTINE) == []

    btc = rows["bitcoin"]
    assert btc["current_price"] == 26816.0 and isinstance(btc["current_price"], float)
    assert btc["market_cap_rank"] == 1 and btc["circulating_supply"] == 19372025.0
    assert btc["last_updated"] == datetime(2023, 5, 13, 10, 37, 59, 82000, tzinfo=timezone.utc)
    assert btc["ath_date"] == datetime(2021, 11, 10, 14, 24, 11, 849000, tzinfo=timezone.utc)
    assert btc["price_change_percentage_7d_in_currency"] == -8.647959161455072
    assert btc["is_high_volume"] is True and btc["is_stale"] is False
    assert (btc["capture_id"], btc["page"], btc["position"]) == ("capture-20230513T10", 1, 0)
    assert (btc["source"], btc["vs_currency"], btc["ingest_hour"], btc["ingest_date"]) == (
        "snapshot",
        "usd",
        HOUR0,
        "2023-05-13",
    )
    assert rows["shiba-inu"]["atl"] == 5.6366e-11
    assert rows["safemoon"]["circulating_supply"] == 0.0

    assert sum(row["roi_currency"] is not None for row in rows.values()) == 52
    roi = next(r for r in records if r["roi"] is not None)
    got = rows[roi["id"]]
    assert (got["roi_times"], got["roi_currency"], got["roi_percentage"]) == (
        roi["roi"]["times"],
        roi["roi"]["currency"],
        roi["roi"]["percentage"],
    )

    stale = {coin for coin, row in rows.items() if row["is_stale"]}
    assert stale == {"fuc", "compound-usdt"}
    for coin in stale:
        assert rows[coin]["high_24h"] is None and rows[coin]["price_change_percentage_24h"] is None
    assert unknown_fields(json.dumps(r) for r in records) == {}


def test_number_forms_and_history_records(spark):
    doge = record("dogecoin", "markets_2025-03-04T14-45Z_30_NOT-USD-likely-eur.json")
    assert '"atl": 7.662e-05' in json.dumps(doge)
    as_text = {**record("ethereum"), "current_price": "12.5", "market_cap": "1e3", "market_cap_rank": "2"}
    history = {
        "id": "solana",
        "symbol": "sol",
        "name": "Solana",
        "current_price": 20.5,
        "market_cap": 8e9,
        "total_volume": 3e8,
        "last_updated": "2023-05-13T07:00:00.000Z",
    }
    frame = bronze(spark, [doge, as_text]).unionByName(bronze(spark, [history], source="history"))
    silver, quarantine, _ = clean_markets(frame, SilverRules(stale_after_seconds=3 * 3600))
    assert collect(quarantine, QUARANTINE) == []
    rows = by(collect(silver, SILVER), "coin_id")
    assert rows["dogecoin"]["atl"] == 7.662e-05 and rows["dogecoin"]["max_supply"] is None
    eth = rows["ethereum"]
    assert (eth["current_price"], eth["market_cap"], eth["market_cap_rank"]) == (12.5, 1000.0, 2)
    sol = rows["solana"]
    assert (sol["source"], sol["current_price"], sol["market_cap"]) == ("history", 20.5, 8e9)
    assert (sol["market_cap_rank"], sol["ath"], sol["roi_currency"], sol["ath_date"]) == (None,) * 4
    # Captured 3 h 02 min after last_updated, allowed 3 h; 3e8 is under the 1e9 volume bar.
    assert (sol["is_stale"], sol["is_high_volume"]) == (True, False)


def test_every_quarantine_reason_first_rule_wins(spark):
    def bad(i: int, **changes) -> dict:
        rec = {**record("bitcoin"), "id": f"coin-{i}", **changes}
        return {k: v for k, v in rec.items() if v is not DROP}

    cases = [
        "not json",
        "[1, 2]",
        None,
        bad(3, id=DROP),
        bad(4, id="  ", current_price="n/a"),
        bad(5, current_price="n/a"),
        bad(6, market_cap=True, total_volume="x"),
        bad(7, market_cap_rank=1.5),
        bad(8, ath="NaN"),
        bad(9, roi={"times": "lots", "currency": "usd", "percentage": 1.0}),
        bad(10, current_price=0, total_volume=-1),
        bad(11, current_price=None),
        bad(12, current_price=DROP),
        bad(13, total_volume=-1, market_cap=-1),
        bad(14, total_supply=-5, circulating_supply=-1),
        bad(15, max_supply=-5),
        bad(16, market_cap=-1),
    ]
    reasons = (
        ["malformed_json"] * 3
        + ["missing_id"] * 2
        + [
            "not_numeric:current_price",
            "not_numeric:market_cap",
            "not_numeric:market_cap_rank",
            "not_numeric:ath",
            "not_numeric:roi_times",
            *["non_positive_price"] * 3,
            "negative_volume",
            "negative_supply:circulating_supply",
            "negative_supply:max_supply",
            "negative_market_cap",
        ]
    )
    # Duplicates: ethereum at (1, 17) beats (2, 0) and (2, 2); dogecoin's invalid first copy
    # at (1, 18) does not count, so (2, 1) is kept; ethereum in the next hour is no duplicate.
    eth, doge = record("ethereum"), record("dogecoin")
    frame = (
        bronze(spark, [*cases, eth, {**doge, "current_price": -1}])
        .unionByName(bronze(spark, [eth, doge, eth], page=2))
        .unionByName(bronze(spark, [eth], HOUR0 + H))
    )

    silver, quarantine, _ = clean_markets(frame, SilverRules())
    silver_rows, q_rows = collect(silver, SILVER), collect(quarantine, QUARANTINE)
    assert len(silver_rows) + len(q_rows) == frame.count() == len(cases) + 6
    expected = {(1, i): reason for i, reason in enumerate(reasons)}
    expected[(1, 18)] = "non_positive_price"
    expected[(2, 0)] = expected[(2, 2)] = "duplicate_in_hour"
    assert {(r["page"], r["position"]): r["reason"] for r in q_rows} == expected
    fourth = by(q_rows, "page", "position")[(1, 4)]
    assert (fourth["coin_id"], fourth["record_json"]) == ("  ", json.dumps(cases[4]))
    kept = {(r["coin_id"], r["ingest_hour"]): (r["page"], r["position"]) for r in silver_rows}
    assert kept == {("ethereum", HOUR0): (1, 17), ("dogecoin", HOUR0): (2, 1), ("ethereum", HOUR0 + H): (1, 0)}


def test_infinite_numbers_are_not_numeric_and_huge_finite_ones_are(spark):
    records = [
        {**record("bitcoin"), "id": "a", "current_price": "Infinity"},
        {**record("bitcoin"), "id": "b", "market_cap": "-inf"},
        {**record("bitcoin"), "id": "c", "ath": "1e400"},  # beyond a double: infinite once parsed
        {**record("bitcoin"), "id": "d", "market_cap": "1.7e308"},
    ]
    silver, quarantine, _ = clean_markets(bronze(spark, records), SilverRules())
    reasons = {row["coin_id"]: row["reason"] for row in collect(quarantine, QUARANTINE)}
    assert reasons == {"a": "not_numeric:current_price", "b": "not_numeric:market_cap", "c": "not_numeric:ath"}
    assert [(row["coin_id"], row["market_cap"]) for row in collect(silver, SILVER)] == [("d", 1.7e308)]


def test_one_record_per_coin_and_hour_by_precedence_and_the_rest_superseded(spark):
    btc, eth = record("bitcoin"), record("ethereum")
    history = {"id": "bitcoin", "symbol": "btc", "name": "Bitcoin", "current_price": 1.0, "market_cap": 2.0}
    frame = (
        bronze(spark, [history, {**history, "id": "ethereum"}], source="history", capture="h/capture=20261201T0900Z")
        .unionByName(bronze(spark, [{**btc, "current_price": 3.0}], capture="s/capture=20261201T1005Z"))
        .unionByName(bronze(spark, [{**btc, "current_price": 4.0}, eth], capture="s/capture=20261201T1050Z"))
        .unionByName(bronze(spark, [{**btc, "current_price": -1}], capture="s/capture=20261201T1059Z"))
    )
    silver, quarantine, superseded = clean_markets(frame, SilverRules())
    kept = {r["coin_id"]: (r["capture_id"], r["current_price"]) for r in collect(silver, SILVER)}
    # a snapshot beats history; of two snapshots the newer wins; an invalid record does not compete
    assert kept == {
        "bitcoin": ("s/capture=20261201T1050Z", 4.0),
        "ethereum": ("s/capture=20261201T1050Z", eth["current_price"]),
    }
    assert [(r["capture_id"], r["reason"]) for r in collect(quarantine, QUARANTINE)] == [
        ("s/capture=20261201T1059Z", "non_positive_price")
    ]
    lost = sorted((r["coin_id"], r["capture_id"]) for r in superseded.to_pylist())
    assert lost == [
        ("bitcoin", "h/capture=20261201T0900Z"),
        ("bitcoin", "s/capture=20261201T1005Z"),
        ("ethereum", "h/capture=20261201T0900Z"),
    ]
    assert len(silver) + len(quarantine) + len(lost) == frame.count()


def test_the_newest_capture_of_a_kind_wins_by_capture_time_not_by_its_id(spark):
    """A refetch of hours 03-06 at 08:00 beats a capture of 05-06 taken at 07:00 at hour 05, though
    its id sorts first (``span=…T03`` < ``span=…T05``); so does a later snapshot of one hour. The
    DuckDB reference picks the same records."""
    hour = datetime(2026, 12, 1, 5, tzinfo=timezone.utc)

    def at(h: int, minute: int = 0) -> datetime:
        return hour.replace(hour=h, minute=minute)

    # the older captures' runs sort last, so the run in the stamp cannot decide it either
    old_history = capture_id_at(history_prefix([at(5), at(6)]), "zzzz-run", at(7))
    new_history = capture_id_at(history_prefix([at(h) for h in range(3, 7)]), "aaaa-run", at(8))
    old_snapshot = capture_id_at(snapshot_prefix(hour), "zzzz-run", at(5, 10))
    new_snapshot = capture_id_at(snapshot_prefix(hour), "aaaa-run", at(5, 50))
    assert sorted([new_history, old_history]) == [new_history, old_history]  # ids sort by span first

    def point(coin: str, price: float) -> dict:
        return {"id": coin, "symbol": coin[:3], "name": coin, "current_price": price}

    frame = (
        bronze(spark, [point("bitcoin", 1.0), point("solana", 1.0)], hour, source="history", capture=old_history)
        .unionByName(
            bronze(spark, [point("bitcoin", 2.0), point("solana", 2.0)], hour, source="history", capture=new_history)
        )
        .unionByName(bronze(spark, [point("solana", 3.0)], hour, capture=old_snapshot))
        .unionByName(bronze(spark, [point("solana", 4.0)], hour, capture=new_snapshot))
    )
    silver, _, superseded = clean_markets(frame, SilverRules())
    kept = {r["coin_id"]: (r["capture_id"], r["current_price"]) for r in collect(silver, SILVER)}
    assert kept == {"bitcoin": (new_history, 2.0), "solana": (new_snapshot, 4.0)}
    assert len(superseded) == 4

    con = duckdb.connect()
    con.register("bronze", frame.toArrow())
    reference = con.execute(f"SELECT coin_id, capture_id FROM ({silver_sql()}) WHERE fate IS NULL").fetchall()
    assert dict(reference) == {coin: capture for coin, (capture, _) in kept.items()}


def test_a_record_whose_id_is_not_a_string_is_quarantined_as_missing_id(spark):
    frame = bronze(spark, [{**record("bitcoin"), "id": 12345}, record("ethereum")])
    silver, quarantine, _ = clean_markets(frame, SilverRules())
    assert [r["coin_id"] for r in collect(silver, SILVER)] == ["ethereum"]
    assert [(r["coin_id"], r["reason"]) for r in collect(quarantine, QUARANTINE)] == [(None, "missing_id")]


def test_unknown_fields_counts_records_with_each_new_key():
    records = sample("markets_2023-10-09T10-04Z_100_sparkline-7d_minified.json")
    extra = {**records[0], "new_field": 1}
    drift = unknown_fields([*(json.dumps(r) for r in [*records, extra]), "not json", "[1]"])
    assert drift == {"new_field": 1}  # sparkline_in_7d is documented: not drift


# --- Gold ---------------------------------------------------------------------------------


def test_market_overview_by_hand(spark):
    def coin(coin_id, hour=HOUR0, **values):
        return dict(coin_id=coin_id, ingest_hour=hour, vs_currency="usd", **values)

    silver = silver_frame(
        spark,
        [
            coin(
                "bitcoin",
                market_cap=600.0,
                total_volume=50.0,
                price_change_percentage_24h=1.0,
                is_high_volume=True,
                is_stale=False,
            ),
            coin(
                "ethereum",
                market_cap=300.0,
                total_volume=30.0,
                price_change_percentage_24h=-2.0,
                is_high_volume=True,
                is_stale=False,
            ),
            coin("x", market_cap=100.0, price_change_percentage_24h=0.0, is_stale=True),
            coin("y", total_volume=20.0, is_high_volume=False),
            coin("x", HOUR0 + H, market_cap=100.0, total_volume=1.0, price_change_percentage_24h=3.0),
        ],
    )
    rows = by(collect(market_overview(silver), GOLD_OVERVIEW), "ingest_hour")
    assert rows[HOUR0] == dict(
        vs_currency="usd",
        coins_tracked=4,
        total_market_cap=1000.0,
        total_volume=100.0,
        btc_dominance_pct=60.0,
        eth_dominance_pct=30.0,
        advancers=1,
        decliners=1,
        unchanged=2,
        high_volume_coins=2,
        stale_coins=1,
        ingest_hour=HOUR0,
        ingest_date="2023-05-13",
    )
    later = rows[HOUR0 + H]
    assert (later["coins_tracked"], later["btc_dominance_pct"], later["advancers"]) == (1, None, 1)
    assert len(rows) == 2


def test_market_distribution_tiers_and_shares(spark):
    caps = [200e9, 150e9, 50e9, 5e9, 0.5e9, 1e6, None]
    rows = [
        dict(coin_id=f"c{i}", ingest_hour=HOUR0, market_cap=cap, total_volume=float(i + 1))
        for i, cap in enumerate(caps)
    ]
    rows.append(dict(coin_id="z", ingest_hour=HOUR0 + H, market_cap=10.0, total_volume=0.0))
    got = by(
        collect(market_distribution(silver_frame(spark, rows)), GOLD_DISTRIBUTION), "ingest_hour", "market_cap_tier"
    )
    assert len(got) == 7
    first = {tier: row for (hour, tier), row in got.items() if hour == HOUR0}
    assert {t: (r["tier_order"], r["coin_count"]) for t, r in first.items()} == {
        "mega": (1, 2),
        "large": (2, 1),
        "mid": (3, 1),
        "small": (4, 1),
        "micro": (5, 1),
        "unknown": (6, 1),
    }
    assert (first["mega"]["total_market_cap"], first["mega"]["total_volume"]) == (350e9, 3.0)
    assert first["mega"]["market_cap_share"] == pytest.approx(350e9 / sum(c for c in caps if c))
    assert (first["unknown"]["total_market_cap"], first["unknown"]["market_cap_share"]) == (None, 0.0)
    assert first["unknown"]["volume_share"] == pytest.approx(7 / 28)
    assert sum(r["market_cap_share"] for r in first.values()) == pytest.approx(1.0)
    assert sum(r["volume_share"] for r in first.values()) == pytest.approx(1.0)
    only = got[(HOUR0 + H, "micro")]
    assert (only["market_cap_share"], only["volume_share"]) == (1.0, 0.0)  # a zero total


def series(coin: str, prices: dict[int, float], ranks: dict[int, int] | None = None) -> list[dict]:
    """Silver rows of one coin at HOUR0 + h for each hour h given."""
    return [
        dict(
            coin_id=coin,
            symbol=coin[:3],
            ingest_hour=HOUR0 + h * H,
            current_price=price,
            market_cap_rank=(ranks or {}).get(h),
        )
        for h, price in prices.items()
    ]


def test_price_volatility_by_hand(spark):
    silver = silver_frame(
        spark,
        [
            *series("gap", {0: 100.0, 1: 110.0, 2: 99.0, 4: 120.0}),
            *series("edge", {0: 50.0, 1: 60.0, 2: 66.0, 24: 70.0}),
        ],
    )
    got = by(collect(price_volatility(silver, HOUR0 + H, HOUR0 + 25 * H), GOLD_VOLATILITY), "coin_id", "ingest_hour")
    assert set(got) == {
        (c, HOUR0 + h * H) for c, h in [("gap", 1), ("gap", 2), ("gap", 4), ("edge", 1), ("edge", 2), ("edge", 24)]
    }

    assert at(got, "gap", 1)["stddev_log_return"] is None  # a single return
    four = at(got, "gap", 4)  # H3 is missing, so H2 → H4 is no hourly return
    r1, r2 = math.log(110 / 100), math.log(99 / 110)
    assert four["stddev_log_return"] == pytest.approx(abs(r1 - r2) / math.sqrt(2))
    assert (four["observations"], four["min_price"], four["max_price"]) == (4, 99.0, 120.0)
    assert four["symbol"] == "gap"
    assert four["avg_price"] == pytest.approx(429 / 4)
    assert four["price_range_pct"] == pytest.approx((120 - 99) / 99 * 100)
    # At H24 the window is [H1, H24]: H0, and so the H0 → H1 return, fall outside it.
    edge = at(got, "edge", 24)
    assert (edge["observations"], edge["min_price"], edge["stddev_log_return"]) == (3, 60.0, None)


def test_market_trends_by_hand(spark):
    silver = silver_frame(
        spark,
        [
            *series("up", {h: float(h + 1) for h in range(30)}, ranks={5: 10, 29: 7}),
            *series("down", {h: float(100 - h) for h in range(30)}),
            *series("flat", {h: 5.0 for h in range(30)}),
            *series("young", {h: float(h + 1) for h in range(20, 30)}),
            *series("gappy", {0: 10.0, 2: 12.0, 28: 9.0, 29: 9.9}, ranks={29: 4}),
            *series("week", {0: 40.0, 168: 50.0}),
        ],
    )
    got = by(collect(market_trends(silver, HOUR0 + 29 * H, HOUR0 + 169 * H), GOLD_TRENDS), "coin_id", "ingest_hour")
    assert len(got) == 6

    up = at(got, "up", 29)
    assert (up["current_price"], up["ma_24h"], up["ma_7d"], up["trend"]) == (30.0, 18.5, 15.5, "up")
    assert up["return_1h_pct"] == pytest.approx((30 / 29 - 1) * 100)
    assert up["return_24h_pct"] == pytest.approx(400.0)  # against 6.0 at H5
    assert (up["return_7d_pct"], up["market_cap_rank"], up["rank_change_24h"]) == (None, 7, 3)
    assert at(got, "down", 29)["trend"] == "down"
    assert at(got, "flat", 29)["trend"] == "sideways"
    young = at(got, "young", 29)
    assert (young["trend"], young["ma_24h"]) == (None, 25.5)  # 10 hours of history
    gappy = at(got, "gappy", 29)
    assert gappy["return_1h_pct"] == pytest.approx(10.0)
    assert (gappy["return_24h_pct"], gappy["rank_change_24h"]) == (None, None)  # no H5
    week = at(got, "week", 168)
    assert week["return_7d_pct"] == pytest.approx(25.0)
    assert (week["return_1h_pct"], week["ma_7d"], week["trend"]) == (None, 50.0, None)


def test_windows_of_an_hour_or_two_give_the_same_bits_as_a_long_window(spark):
    """An hourly run's per-hour frames (one output hour: no join; two: joined with their hours)
    and a backfill's sliding frames (``Frames``) agree to the last bit, hour by hour: prices of
    many magnitudes make any other order of addition show, and each window is given all of Silver,
    later hours included, so a frame reaching past its hour shows too."""
    rng = random.Random(7)
    silver = silver_frame(
        spark,
        [
            row
            for coin in ("a", "b", "c")
            for row in series(
                coin,
                {h: rng.uniform(1, 10) * 10.0 ** rng.randint(-6, 6) for h in range(200) if rng.random() > 0.1},
                ranks={h: rng.randint(1, 50) for h in range(200) if rng.random() > 0.2},
            )
        ],
    )
    long_start, end = HOUR0 + 176 * H, HOUR0 + 200 * H
    assert not Frames.for_window(long_start, end, 0).per_hour
    windows = []  # [176, 200) as an hour, then two hours, and so on
    for h in range(176, 200, 3):
        windows += [(HOUR0 + h * H, HOUR0 + (h + 1) * H), (HOUR0 + (h + 1) * H, HOUR0 + (h + 3) * H)]
    for transform, table in ((market_trends, GOLD_TRENDS), (price_volatility, GOLD_VOLATILITY)):
        expected = {
            (row["coin_id"], row["ingest_hour"]): repr(row)
            for row in collect(transform(silver, long_start, end), table)
        }
        got = {}
        for start, stop in windows:
            assert Frames.for_window(start, stop, 0).per_hour
            got.update(
                {
                    (row["coin_id"], row["ingest_hour"]): repr(row)
                    for row in collect(transform(silver, start, stop), table)
                }
            )
        assert len(expected) > 50 and got == expected


def test_hourly_sums_do_not_depend_on_row_order(spark):
    """1e16 + 1 + 1 is 1e16 or 1e16 + 2 in doubles depending on the order: Gold fixes it."""
    rows = [dict(coin_id=f"c{i}", ingest_hour=HOUR0, market_cap=cap) for i, cap in enumerate([1e16, 1.0, 1.0])]
    overviews = [market_overview(silver_frame(spark, ordered).repartition(3)) for ordered in (rows, rows[::-1])]
    totals = {collect(overview, GOLD_OVERVIEW)[0]["total_market_cap"] for overview in overviews}
    assert totals == {1e16 + 2}
