"""Every asset check, declared once, on a staged window that passes and on one that makes it fail."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from dagster import AssetCheckSeverity

from crypto_assets.assets import bronze, gold, silver, warehouse
from crypto_assets.assets.checks import failed_blocking
from crypto_assets.resources.warehouse import WindowLoad
from crypto_assets.tables import GOLD_DISTRIBUTION, GOLD_OVERVIEW, QUARANTINE, SILVER
from crypto_assets.transforms.gold import market_distribution, market_overview

H0 = datetime(2026, 11, 25, 10, tzinfo=timezone.utc)
H1 = H0 + timedelta(hours=1)
L0, L1 = "2026-11-25T10:00Z", "2026-11-25T11:00Z"


def check(checks, name):
    [found] = [c for c in checks if c.name == name]
    return found


def evaluate(checks, name, staged) -> tuple[bool, dict]:
    passed, metadata = check(checks, name).evaluate(staged)
    return passed, {key: getattr(value, "value", value) for key, value in metadata.items()}


def test_every_check_is_declared_once_with_its_severity():
    for checks in (bronze.CHECKS, silver.CHECKS, warehouse.CHECKS, *(g.checks for g in gold.GOLD)):
        assert len({c.name for c in checks}) == len(checks)
    specs = {spec.name: spec.blocking for spec in silver.silver_market_snapshots.check_specs}
    assert specs == {c.name: c.blocking for c in silver.CHECKS}
    result = check(silver.CHECKS, "unique_coin_hour").result(SILVER.asset_key, silver_window(duplicate=True))
    assert result.severity == AssetCheckSeverity.ERROR and failed_blocking([result]) == ["unique_coin_hour"]


# --- Bronze -------------------------------------------------------------------------------


def bronze_window(rows, per_hour=None, missing=None, texts=(), not_found=()):
    table = pa.Table.from_pylist(
        [dict(zip(("ingest_hour", "capture_id", "coin_id"), r)) for r in rows],
        schema=pa.schema(
            [("ingest_hour", pa.timestamp("us", tz="UTC")), ("capture_id", pa.string()), ("coin_id", pa.string())]
        ),
    )
    return bronze.BronzeWindow(
        per_hour or {L0: len(rows)}, bronze.duplicate_ids(table), missing or {}, list(texts), list(not_found)
    )


def test_bronze_hours_captured_fails_on_an_empty_hour():
    assert evaluate(bronze.CHECKS, "hours_captured", bronze_window([(H0, "a", "btc")]))[0]
    passed, metadata = evaluate(
        bronze.CHECKS, "hours_captured", bronze_window([(H0, "a", "btc")], {L0: 1, L1: 0}, {"btc": [L1]})
    )
    assert not passed and metadata["empty_hours"] == [L1] and metadata["history_hours_without_points"] == {"btc": [L1]}


def test_bronze_no_duplicate_ids_fails_on_a_coin_twice_in_one_capture_not_across_captures():
    assert evaluate(bronze.CHECKS, "no_duplicate_ids", bronze_window([(H0, "a", "btc"), (H0, "b", "btc")]))[0]
    passed, metadata = evaluate(bronze.CHECKS, "no_duplicate_ids", bronze_window([(H0, "a", "btc"), (H0, "a", "btc")]))
    assert not passed and metadata["duplicates"] == [f"{L0} btc"]


def test_bronze_no_schema_drift_fails_on_an_unknown_field():
    assert evaluate(bronze.CHECKS, "no_schema_drift", bronze_window([], texts=['{"id": "btc"}']))[0]
    passed, metadata = evaluate(bronze.CHECKS, "no_schema_drift", bronze_window([], texts=['{"id": "btc", "new": 1}']))
    assert not passed and metadata["unknown_fields"] == {"new": 1}


def test_bronze_history_coins_found_warns_naming_the_coins_the_api_does_not_know():
    assert evaluate(bronze.CHECKS, "history_coins_found", bronze_window([(H0, "a", "btc")]))[0]
    passed, metadata = evaluate(bronze.CHECKS, "history_coins_found", bronze_window([], not_found=["delisted"]))
    assert not passed and metadata["coins_not_found"] == ["delisted"]
    assert not check(bronze.CHECKS, "history_coins_found").blocking


# --- Silver -------------------------------------------------------------------------------


def silver_rows(coins, hour=H0, price=1.0, vs="usd") -> list[dict]:
    return [{"coin_id": coin, "ingest_hour": hour, "current_price": price, "vs_currency": vs} for coin in coins]


def silver_window(*, rows=None, quarantined=(), bronze_counts=None, superseded=None, duplicate=False, ratio=0.05):
    rows = rows if rows is not None else silver_rows(["bitcoin", "ethereum"] + (["bitcoin"] if duplicate else []))
    schema = pa.schema(
        [SILVER.arrow_schema.field(n) for n in ("coin_id", "ingest_hour", "current_price", "vs_currency")]
    )
    quarantine = pa.Table.from_pylist(
        [{"ingest_hour": hour, "reason": reason} for hour, reason in quarantined],
        schema=pa.schema([QUARANTINE.arrow_schema.field("ingest_hour"), QUARANTINE.arrow_schema.field("reason")]),
    )
    counts = bronze_counts or {L0: len(rows) + len(quarantined)}
    return silver.SilverWindow(pa.Table.from_pylist(rows, schema=schema), quarantine, counts, superseded or {}, ratio)


def test_silver_accounts_for_bronze_counts_superseded_records_and_fails_on_a_lost_one():
    assert evaluate(silver.CHECKS, "accounts_for_bronze", silver_window(bronze_counts={L0: 5}, superseded={L0: 3}))[0]
    passed, metadata = evaluate(
        silver.CHECKS, "accounts_for_bronze", silver_window(bronze_counts={L0: 5}, superseded={L0: 2})
    )
    assert not passed
    assert metadata["hours_not_accounted"] == {L0: {"bronze": 5, "silver": 2, "quarantine": 0, "superseded": 2}}


def test_silver_unique_coin_hour_fails_on_a_coin_twice_in_an_hour():
    assert evaluate(silver.CHECKS, "unique_coin_hour", silver_window())[0]
    passed, metadata = evaluate(silver.CHECKS, "unique_coin_hour", silver_window(duplicate=True))
    assert not passed and metadata["repeated"] == [f"{L0} bitcoin"]


def test_silver_keys_and_price_valid_fails_on_a_missing_key_or_price():
    assert evaluate(silver.CHECKS, "keys_and_price_valid", silver_window())[0]
    bad = silver_rows(["bitcoin"]) + silver_rows(["ethereum"], price=0.0) + silver_rows([None])
    passed, metadata = evaluate(silver.CHECKS, "keys_and_price_valid", silver_window(rows=bad))
    assert not passed and metadata["invalid_rows"] == 2


def test_silver_hours_not_all_rejected_fails_when_an_hour_loses_every_record():
    mixed = silver_window(rows=silver_rows(["bitcoin"]), quarantined=[(H0, "non_positive_price")])
    assert evaluate(silver.CHECKS, "hours_not_all_rejected", mixed)[0]
    lost = silver_window(
        rows=silver_rows(["bitcoin"]), quarantined=[(H1, "non_positive_price")] * 3, bronze_counts={L0: 1, L1: 3}
    )
    passed, metadata = evaluate(silver.CHECKS, "hours_not_all_rejected", lost)
    assert not passed and metadata["hours_all_rejected"] == {L1: {"non_positive_price": 3}}


def test_silver_quarantine_ratio_warns_above_the_threshold():
    rows = silver_rows([f"c{i}" for i in range(19)])
    assert evaluate(silver.CHECKS, "quarantine_ratio", silver_window(rows=rows, quarantined=[(H0, "x")]))[0]
    passed, metadata = evaluate(
        silver.CHECKS, "quarantine_ratio", silver_window(rows=rows, quarantined=[(H0, "x")] * 2)
    )
    assert (
        not passed
        and metadata["ratio_per_hour"] == {L0: 0.0952}
        and not check(silver.CHECKS, "quarantine_ratio").blocking
    )


def test_silver_quote_currency_plausible_fails_when_stablecoins_are_off_one():
    assert evaluate(silver.CHECKS, "quote_currency_plausible", silver_window(rows=silver_rows(["tether", "dai"])))[0]
    passed, metadata = evaluate(
        silver.CHECKS, "quote_currency_plausible", silver_window(rows=silver_rows(["tether", "dai"], price=0.92))
    )
    assert not passed and metadata["stablecoin_median_price_by_hour"] == {L0: 0.92}


# --- Gold ---------------------------------------------------------------------------------


@pytest.fixture
def silver_frame(spark):
    names = [f.name for f in SILVER.arrow_schema]
    rows = []
    for h in range(2):
        for n, coin in enumerate(["bitcoin", "ethereum", "tether", "tiny"]):
            cap = [1.2e12, 3e11, 1.1e11, 5e7][n] * (1 + h / 10)
            rows.append(
                {
                    **dict.fromkeys(names),
                    "coin_id": coin,
                    "vs_currency": "usd",
                    "current_price": 1.0 + n,
                    "market_cap": cap,
                    "total_volume": cap / 20,
                    "ingest_hour": H0 + timedelta(hours=h),
                    "ingest_date": "2026-11-25",
                }
            )
    return spark.createDataFrame(pa.Table.from_pylist(rows, schema=SILVER.arrow_schema))


def gold_checks(table):
    [found] = [g for g in gold.GOLD if g.table is table]
    return found.checks


def test_gold_totals_match_silver_fails_on_a_wrong_total(silver_frame):
    overview = market_overview(silver_frame).toArrow()
    assert evaluate(
        gold_checks(GOLD_OVERVIEW), "totals_match_silver", gold.GoldWindow(overview, silver_frame.toArrow())
    )[0]
    doctored = overview.set_column(
        overview.schema.get_field_index("coins_tracked"), "coins_tracked", pa.array([3, 4], pa.int64())
    )
    passed, metadata = evaluate(
        gold_checks(GOLD_OVERVIEW), "totals_match_silver", gold.GoldWindow(doctored, silver_frame.toArrow())
    )
    assert not passed and metadata["mismatched_hours"] == [L0]
    passed, metadata = evaluate(
        gold_checks(GOLD_OVERVIEW), "totals_match_silver", gold.GoldWindow(overview.slice(0, 1), silver_frame.toArrow())
    )
    assert not passed and metadata["hours_missing"] == [L1]


def test_gold_totals_match_silver_refuses_an_overflowed_total(spark):
    """Two caps of 1e308 are finite, their sum is not: no total of it matches, whatever Gold says."""
    rows = [{"coin_id": coin, "market_cap": 1e308, "ingest_hour": H0, "ingest_date": "2026-11-25"} for coin in "ab"]
    silver = spark.createDataFrame(pa.Table.from_pylist(rows, schema=SILVER.arrow_schema))
    overview = market_overview(silver).toArrow()
    checks = gold_checks(GOLD_OVERVIEW)
    passed, metadata = evaluate(checks, "totals_match_silver", gold.GoldWindow(overview, silver.toArrow()))
    assert not passed and metadata["mismatched_hours"] == [L0]
    finite = overview.set_column(
        overview.schema.get_field_index("total_market_cap"), "total_market_cap", pa.array([1e308])
    )
    assert not evaluate(checks, "totals_match_silver", gold.GoldWindow(finite, silver.toArrow()))[0]


def test_gold_shares_sum_to_one_fails_when_a_tier_is_lost(silver_frame):
    distribution = market_distribution(silver_frame).toArrow()
    checks = gold_checks(GOLD_DISTRIBUTION)
    assert evaluate(checks, "shares_sum_to_one", gold.GoldWindow(distribution, silver_frame.toArrow()))[0]
    passed, metadata = evaluate(
        checks, "shares_sum_to_one", gold.GoldWindow(distribution.slice(1), silver_frame.toArrow())
    )
    assert not passed and list(metadata["hours_off"]) == [L0]


# --- Warehouse ----------------------------------------------------------------------------


def loaded(counts, orphans=None):
    return warehouse.LoadedWindow(WindowLoad({}, counts, orphans or {}, False), {"fact_market_snapshot": 4})


def test_warehouse_fact_rows_match_lakehouse_fails_on_a_missing_row():
    assert evaluate(warehouse.CHECKS, "fact_rows_match_lakehouse", loaded({"fact_market_snapshot": 4}))[0]
    passed, metadata = evaluate(warehouse.CHECKS, "fact_rows_match_lakehouse", loaded({"fact_market_snapshot": 3}))
    assert not passed and metadata["mismatched"] == {"fact_market_snapshot": {"lakehouse": 4, "warehouse": 3}}


def test_warehouse_no_orphan_keys_fails_on_a_fact_without_its_dimension():
    assert evaluate(warehouse.CHECKS, "no_orphan_keys", loaded({}, {"fact_market_snapshot": 0}))[0]
    passed, metadata = evaluate(warehouse.CHECKS, "no_orphan_keys", loaded({}, {"fact_market_trends": 2}))
    assert not passed and metadata["orphans"] == {"fact_market_trends": 2}


def test_a_window_checked_slice_by_slice_reports_one_result_per_check():
    from crypto_assets.assets.checks import merge_slices
    from crypto_assets.partitions import window_slices

    assert window_slices(H0, H0 + timedelta(hours=5), 2) == [
        (H0, H0 + timedelta(hours=2)),
        (H0 + timedelta(hours=2), H0 + timedelta(hours=4)),
        (H0 + timedelta(hours=4), H0 + timedelta(hours=5)),
    ]
    first = silver_window(bronze_counts={L0: 2})
    second = silver_window(rows=silver_rows(["bitcoin", "bitcoin"], hour=H1), bronze_counts={L1: 2})
    merged = merge_slices([check_results(first), check_results(second)])
    by_name = {result.check_name: result for result in merged}
    assert len(merged) == len(silver.CHECKS)
    assert not by_name["unique_coin_hour"].passed and by_name["unique_coin_hour"].metadata["count"].value == 1
    assert by_name["accounts_for_bronze"].passed
    assert set(by_name["quarantine_ratio"].metadata["ratio_per_hour"].value) == {L0, L1}


def test_slices_are_bounded_by_rows_as_well_as_hours():
    from crypto_assets.partitions import hour_label, window_slices

    hour = [H0 + timedelta(hours=n) for n in range(8)]
    # 3 rows an hour at first, then an hour of 10 (more than a slice holds), then daily-like gaps
    counts = {0: 3, 1: 3, 2: 3, 3: 10, 4: 1, 7: 1}
    rows = {hour_label(hour[n]): count for n, count in counts.items()}
    assert window_slices(H0, hour[7] + timedelta(hours=1), 4, rows, max_rows=6) == [
        (hour[0], hour[2]),
        (hour[2], hour[3]),
        (hour[3], hour[4]),  # alone: it holds more than a slice
        (hour[4], hour[7] + timedelta(hours=1)),  # sparse hours go together, up to the hours bound
    ]
    assert window_slices(H0, hour[2], 4, rows, max_rows=100) == [(H0, hour[2])]


def check_results(window):
    from crypto_assets.assets.checks import audit

    return audit(SILVER.asset_key, silver.CHECKS, window)
