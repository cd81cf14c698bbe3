"""Every recorded real `/coins/markets` response replayed through a real server, the real client,
Bronze's capture and Silver's Spark rules (files read from ../shared, never copied here).

Each file is served byte for byte; the capture is dated at the file's own time (its newest
`last_updated`), as if the pipeline had fetched it then.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from crypto_assets.assets.silver import stablecoin_peg_breaks
from crypto_assets.captures import land_snapshot
from crypto_assets.partitions import floor_hour
from crypto_assets.resources.coingecko import CoinGeckoError, CoinGeckoResource
from crypto_assets.resources.landing import Landing
from crypto_assets.simulator import Simulator
from crypto_assets.tables import BRONZE
from crypto_assets.transforms.silver import SilverRules, clean_markets, unknown_fields
from support import SAMPLES

FILES = sorted(path.name for path in SAMPLES.glob("markets_*.json"))
WRAPPED = [name for name in FILES if "wrapped" in name]
BARE = [name for name in FILES if "wrapped" not in name]


def file_time(records: list[dict]) -> datetime:
    return max(datetime.fromisoformat(r["last_updated"].replace("Z", "+00:00")) for r in records)


def replay(path: Path, spark):
    """(bronze rows, silver, quarantine) for one recorded file, landed and read back as a run would."""
    with Simulator(markets_file=path) as sim:
        markets = CoinGeckoResource(base_url=sim.base_url, calls_per_minute=60000).get_client().markets(250)
    captured_at = file_time([record for _, _, record in markets.records]) + timedelta(seconds=30)
    with tempfile.TemporaryDirectory(prefix="replay_landing_") as folder:
        landing = Landing(folder)
        rows = (
            land_snapshot(landing, markets, floor_hour(captured_at), "usd", "replay-run")
            .part_rows(1, landing)
            .to_pylist()
        )
    for row in rows:
        row.update(ingested_at=captured_at)
    columns = [f for f in BRONZE.arrow_schema if f.name != "ingest_date"]
    bronze = pa.Table.from_pylist(rows, schema=pa.schema(columns))
    frame = spark.createDataFrame(bronze).withColumn("ingest_date", F.date_format("ingest_hour", "yyyy-MM-dd"))
    silver, quarantine, _ = clean_markets(frame, SilverRules())
    return rows, silver, quarantine


def by_id(table: pa.Table) -> dict[str, dict]:
    return {row["coin_id"]: row for row in table.to_pylist()}


def test_every_sample_file_is_here():
    assert len(FILES) == 18 and len(WRAPPED) == 2


@pytest.mark.parametrize("name", BARE)
def test_every_record_lands_in_silver_or_quarantine(name, spark, samples):
    path = samples / name
    records = json.loads(path.read_bytes())
    rows, silver, quarantine = replay(path, spark)
    assert len(rows) == len(records)
    assert len(silver) + len(quarantine) == len(records)
    assert [json.loads(row["record_json"]) for row in rows] == records  # every record, as sent
    # real data is clean: nothing is quarantined, and no field is unknown but sparklines'
    assert len(quarantine) == 0, quarantine.column("reason").to_pylist()
    assert not unknown_fields(row["record_json"] for row in rows)
    assert set(silver.column("coin_id").to_pylist()) == {r["id"] for r in records}


@pytest.mark.parametrize("name", WRAPPED)
def test_wrapped_responses_are_refused_not_unwrapped(name, samples):
    """`{"data": [...]}` / `{"markets": [...]}` is not what /coins/markets sends: some tool
    rewrote it. Accepting it would hide a proxy or a client bug, so the page is refused."""
    with Simulator(markets_file=samples / name) as sim:
        client = CoinGeckoResource(base_url=sim.base_url, calls_per_minute=60000).get_client()
        with pytest.raises(CoinGeckoError, match="page 1") as error:
            client.markets(100)
    assert "HTTP 200" in str(error.value) and "refusing to unwrap" in str(error.value)


def test_the_2023_snapshot_keeps_its_quirks(spark, samples):
    name = "markets_2023-05-13T10-38Z_250.json"
    records = json.loads((samples / name).read_bytes())
    _, silver, _ = replay(samples / name, spark)
    rows = by_id(silver)
    assert len(rows) == 250
    stale = {coin for coin, row in rows.items() if row["is_stale"]}
    assert {"fuc", "compound-usdt"} <= stale
    for coin in ("fuc", "compound-usdt"):
        assert rows[coin]["high_24h"] is None and rows[coin]["price_change_percentage_24h"] is None
    assert rows["safemoon"]["circulating_supply"] == 0.0 and rows["safemoon"]["market_cap"] > 0
    assert sum(row["roi_times"] is not None for row in rows.values()) == 52
    assert rows["ordinals"]["price_change_percentage_7d_in_currency"] is None
    assert rows["bitcoin"]["price_change_percentage_24h_in_currency"] is not None
    # rank inversions are kept as CoinGecko sent them (order follows market cap, not rank)
    ranks = [rows[r["id"]]["market_cap_rank"] for r in records]
    assert ranks == [r["market_cap_rank"] for r in records]


def test_exponent_numbers_and_full_precision_percentages_survive(spark, samples):
    name = "markets_2025-03-19T09-26Z_100_1h.json"
    records = json.loads((samples / name).read_bytes())
    _, silver, _ = replay(samples / name, spark)
    rows = by_id(silver)
    for record in records:
        row = rows[record["id"]]
        assert row["current_price"] == record["current_price"]
        assert row["price_change_percentage_1h_in_currency"] == record["price_change_percentage_1h_in_currency"]
    text = (samples / name).read_text()
    assert "e-0" in text or any(r["current_price"] < 1e-4 for r in records)
    assert rows["blackrock-usd-institutional-digital-liquidity-fund"]["total_volume"] == 0.0


def test_the_non_usd_file_is_flagged_by_the_stablecoin_check(spark, samples):
    """The file claims USD but holds EUR prices (USDT 0.949): Silver keeps it (the numbers are
    valid) and the quote_currency_plausible check warns."""
    _, silver, _ = replay(samples / "markets_2025-03-04T14-45Z_30_NOT-USD-likely-eur.json", spark)
    breaks = stablecoin_peg_breaks(silver)
    assert len(breaks) == 1 and 0.94 < next(iter(breaks.values())) < 0.96
    _, usd, _ = replay(samples / "markets_2025-02-25T11-02Z_100.json", spark)
    assert stablecoin_peg_breaks(usd) == {}
