"""The offline demo (`make demo`): the whole graph against the CoinGecko simulator.

Starts the simulator on 127.0.0.1, then runs the same CLI the CI uses: a single-run backfill
of the three hours before this one (reconstructed from the history endpoint), then the current
hour (a live snapshot). Prints the rows each table holds for those hours.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from crypto_assets.cli import launch_command
from crypto_assets.local_instance import ensure_local_instance
from crypto_assets.partitions import HOUR, current_hour, hour_label, partition_key
from crypto_assets.resources.lakehouse import LakehouseResource, rows_per_hour
from crypto_assets.resources.warehouse import WarehouseResource, mask_password
from crypto_assets.settings import value
from crypto_assets.simulator import Simulator
from crypto_assets.tables import ALL_TABLES

DEMO_COINS = 300
# The run's progress lines (pages, rows, checks) without Dagster's per-event debug stream.
INFO_LOGS = '{"loggers": {"console": {"config": {"log_level": "INFO"}}}}'


def launch(partition_args: list[str], env: dict[str, str]) -> None:
    command = launch_command(*partition_args, "--config-json", INFO_LOGS)
    print("$ dg", " ".join(command[1:]), flush=True)
    started = time.monotonic()
    subprocess.run(command, env=env, check=True)
    print(f"  done in {time.monotonic() - started:.1f} s", flush=True)


def print_counts(env: dict[str, str], start, end) -> None:
    """Rows per table for the demo's hours, read back from the lakehouse and the warehouse."""
    lakehouse = LakehouseResource(root=env["CRYPTO_LAKE_ROOT"])
    print(f"\nRows per hour, {hour_label(start)} to {hour_label(end - HOUR)}:")
    for table in ALL_TABLES:
        counts = rows_per_hour(lakehouse.read_window_arrow(table, start, end), start, end)
        print(f"  {table.path:45s} " + "  ".join(f"{n:5d}" for n in counts.values()))
    warehouse = WarehouseResource(odbc_connection_string=env["CRYPTO_WAREHOUSE_ODBC"])
    print("\nWarehouse rows for those hours:")
    for name, n in warehouse.window_counts(start, end).items():
        print(f"  {name:45s} {n:5d}")


def main() -> None:
    data = Path(value("CRYPTO_DEMO_DATA")).absolute()
    home = Path(os.environ.get("DAGSTER_HOME", data / "dagster_home"))
    ensure_local_instance(home)
    with Simulator(coins=DEMO_COINS) as simulator:
        env = {
            **os.environ,
            "COINGECKO_BASE_URL": simulator.base_url,
            "COINGECKO_CALLS_PER_MINUTE": "6000",  # a local simulator, not the real API
            "DAGSTER_HOME": str(home),
        }
        env.setdefault("CRYPTO_LAKE_ROOT", str(data / "lake"))
        env.setdefault("CRYPTO_WAREHOUSE_ODBC", f"DRIVER={{SQLite3}};Database={data / 'warehouse.sqlite'};BigInt=1")
        now = current_hour()
        first = now - 3 * HOUR
        print(f"CoinGecko simulator at {simulator.base_url} ({DEMO_COINS} coins)")
        launch(["--partition-range", f"{partition_key(first)}...{partition_key(now - HOUR)}"], env)
        launch(["--partition", partition_key(now)], env)
        print_counts(env, first, now + HOUR)
    odbc = env["CRYPTO_WAREHOUSE_ODBC"]
    print(f"\nLakehouse: {env['CRYPTO_LAKE_ROOT']}\nWarehouse: {mask_password(odbc, odbc)}")


if __name__ == "__main__":
    main()
