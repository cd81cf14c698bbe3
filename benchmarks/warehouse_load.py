"""Warehouse load speed: our sink (``WarehouseResource.load_window``) against PostgreSQL's own
``COPY`` (``psql \\copy`` of a CSV) into the same fact_market_snapshot table, and our sink on
SQLite. 200,000 coin × hour rows, 3 repetitions, medians.

    python -m benchmarks.warehouse_load [--rows 200000] [--repeat 3]

Needs the PostgreSQL server of the tests (127.0.0.1:5432, user postgres, trust auth); it
creates and drops its own database. Our figure is end to end: Arrow to rows, dim_time,
dim_coin SCD2, the window delete and the multi-row INSERTs, in one transaction. COPY is
timed on a ready CSV (generous to COPY). Each repetition starts from an empty fact table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyodbc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also runnable as a script

from crypto_assets.resources.warehouse import WarehouseResource  # noqa: E402
from crypto_assets.tables import SILVER  # noqa: E402

PG = "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;UID=postgres;BoolsAsChar=0;Protocol=7.4-1"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
COINS = 250


def silver_rows(rows: int) -> tuple[pa.Table, datetime]:
    """``rows`` Silver rows: 250 coins × as many hours as needed, from START."""
    hours = -(-rows // COINS)
    n = list(range(rows))
    price = [100.0 + (i % 997) * 0.37 for i in n]
    columns = {
        "coin_id": [f"coin-{i % COINS:03d}" for i in n],
        "symbol": [f"c{i % COINS}" for i in n],
        "name": [f"Coin {i % COINS}" for i in n],
        "vs_currency": ["usd"] * rows,
        "market_cap_rank": [i % COINS + 1 for i in n],
        "current_price": price,
        "market_cap": [p * 1e9 for p in price],
        "fully_diluted_valuation": [p * 2e9 for p in price],
        "total_volume": [p * 1e7 for p in price],
        "high_24h": [p * 1.01 for p in price],
        "low_24h": [p * 0.99 for p in price],
        "price_change_percentage_24h": [(i % 21 - 10) / 3 for i in n],
        "circulating_supply": [1e6 + i % 13 for i in n],
        "total_supply": [2e6] * rows,
        "max_supply": [None] * rows,
        "is_high_volume": [i % 3 == 0 for i in n],
        "is_stale": [False] * rows,
        "source": ["snapshot"] * rows,
        "ingest_hour": [START + timedelta(hours=i // COINS) for i in n],
    }
    arrays = [
        pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(rows, f.type) for f in SILVER.arrow_schema
    ]
    return pa.Table.from_arrays(arrays, schema=SILVER.arrow_schema), START + timedelta(hours=hours)


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def empty_facts(wh: WarehouseResource) -> None:
    conn = pyodbc.connect(wh.odbc_connection_string)
    conn.execute(f"DELETE FROM {wh.sql_dialect().table(wh.schema_name, 'fact_market_snapshot')}")
    conn.commit()
    conn.close()


def sink_runs(wh: WarehouseResource, silver: pa.Table, end: datetime, repeat: int) -> list[float]:
    wh.load_window(silver.slice(0, COINS), {}, START, START + timedelta(hours=1))  # schema and dim_coin
    runs = []
    for _ in range(repeat):
        empty_facts(wh)
        runs.append(timed(lambda: wh.load_window(silver, {}, START, end)))
    return runs


def psql(database: str, command: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-qc", command],
        check=True,
        capture_output=True,
        text=True,
    )


def report(label: str, rows: int, runs: list[float]) -> float:
    median = statistics.median(runs)
    print(
        f"{label:<34} median {median:7.3f} s   {rows / median:>10,.0f} rows/s   runs {', '.join(f'{r:.3f}' for r in runs)}"
    )
    return rows / median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    silver, end = silver_rows(args.rows)
    print(
        f"{args.rows:,} fact_market_snapshot rows ({COINS} coins × {(end - START) // timedelta(hours=1)} hours), "
        f"{args.repeat} repetitions\n"
    )

    with tempfile.TemporaryDirectory() as tmp:
        lite = WarehouseResource(odbc_connection_string=f"DRIVER={{SQLite3}};Database={tmp}/bench.sqlite;BigInt=1")
        report("SQLite3 ODBC, our sink", args.rows, sink_runs(lite, silver, end, args.repeat))

        database = f"crypto_bench_{os.getpid()}"
        admin = pyodbc.connect(f"{PG};DATABASE=postgres", autocommit=True)
        admin.execute(f"CREATE DATABASE {database}")
        try:
            pg = WarehouseResource(
                odbc_connection_string=f"{PG};DATABASE={database}", schema_name="bench", reader_role=None
            )
            ours = report("PostgreSQL psqlODBC, our sink", args.rows, sink_runs(pg, silver, end, args.repeat))
            csv = Path(tmp) / "facts.csv"
            psql(database, f"\\copy bench.fact_market_snapshot TO '{csv}' CSV")  # the rows our sink wrote
            copies = []
            for _ in range(args.repeat):
                empty_facts(pg)
                copies.append(timed(lambda: psql(database, f"\\copy bench.fact_market_snapshot FROM '{csv}' CSV")))
            copy = report("PostgreSQL COPY (psql \\copy CSV)", args.rows, copies)
            print(f"\nour sink / COPY on PostgreSQL: {ours / copy:.2f} (target >= 0.50)")
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            admin.close()


if __name__ == "__main__":
    main()
