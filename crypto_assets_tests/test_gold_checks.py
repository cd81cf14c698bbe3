"""Gold's blocking checks catch wrong numbers: computed on real transform output, then doctored."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc

from crypto_assets.assets.gold import shares_off, totals_mismatch
from crypto_assets.tables import SILVER
from crypto_assets.transforms.gold import market_distribution, market_overview

H0 = datetime(2026, 11, 25, 10, tzinfo=timezone.utc)


def silver_frame(spark):
    names = [f.name for f in SILVER.arrow_schema]
    rows = []
    for h in range(2):
        for n, coin in enumerate(["bitcoin", "ethereum", "tether", "tiny"]):
            row = dict.fromkeys(names)
            cap = [1.2e12, 3e11, 1.1e11, 5e7][n] * (1 + h / 10)
            row.update(coin_id=coin, symbol=coin[:3], vs_currency="usd", current_price=10.0 + n,
                       market_cap=cap, total_volume=cap / 20, price_change_percentage_24h=n - 1.5,
                       is_high_volume=True, is_stale=False, source="snapshot",
                       ingest_hour=H0 + timedelta(hours=h), ingest_date="2026-11-25")
            rows.append(row)
    return spark.createDataFrame(pa.Table.from_pylist(rows, schema=SILVER.arrow_schema))


def test_overview_totals_check_passes_on_real_output_and_fails_on_a_wrong_total(spark):
    silver = silver_frame(spark)
    overview = market_overview(silver).toArrow()
    totals = silver.select("ingest_hour", "coin_id", "market_cap", "total_volume").toArrow()
    assert totals_mismatch(totals, overview) == ([], [])

    doctored = overview.set_column(
        overview.schema.get_field_index("total_market_cap"), "total_market_cap",
        pc.multiply(overview.column("total_market_cap"), 1.001))
    mismatched, _ = totals_mismatch(totals, doctored)
    assert mismatched == ["2026-11-25T10:00Z", "2026-11-25T11:00Z"]
    _, missing = totals_mismatch(totals, overview.slice(0, 1))
    assert len(missing) == 1


def test_distribution_shares_check_passes_on_real_output_and_fails_when_a_tier_is_lost(spark):
    distribution = market_distribution(silver_frame(spark)).toArrow()
    assert shares_off(distribution) == {}
    without_mega = distribution.filter(pc.not_equal(distribution.column("market_cap_tier"), "mega"))
    assert set(shares_off(without_mega)) == {"2026-11-25T10:00Z", "2026-11-25T11:00Z"}
