"""Pipeline benchmark: wall time and peak memory per stage, one hour and a 24-hour backfill.

`python -m benchmarks.pipeline [--coins 1000] [--repeat 3]` runs the real CLI
(`dagster asset materialize`) against the simulator with CRYPTO_COINS_LIMIT coins, each
scenario in a fresh lakehouse, and prints medians:

* one hour: the current hour (a snapshot), cold (the whole graph, Spark start included);
* 24-hour backfill: 24 past hours in one run (history fetched once per coin);
* reference, in the same run: 24 separate hourly runs, extrapolated from the one-hour run
  (what a backfill costs without single-run backfills).

Stage times come from Dagster's step stats; fetch is the HTTP part of Bronze. Peak memory is
the largest sum of RSS over the run's process tree (Python and Spark's JVM), sampled from
/proc every 100 ms (Linux); both it and Python's own peak are also given per step (the samples
taken between the step's start and end), which shows which step, and which process, holds it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dagster import DagsterInstance

from crypto_assets.cli import materialize_command
from crypto_assets.partitions import HOUR, current_hour, partition_key
from crypto_assets.simulator import Simulator
from crypto_assets.tables import BRONZE

STAGES = {
    "bronze": ("raw_data__bronze_coingecko_markets",),
    "silver": ("silver_market_snapshots",),
    "gold": ("gold_tables",),
    "warehouse": ("warehouse_star_schema",),
}


# The deployment's Dagster storage (deploy/dagster.yaml) on the local server, with its event batching.
POSTGRES_INSTANCE = """storage:
  postgres:
    postgres_db:
      {{hostname: 127.0.0.1, port: 5432, username: postgres, password: "", db_name: {database}, scheme: postgresql+psycopg2}}
telemetry:
  enabled: false
"""
POSTGRES_TUNING = {"DAGSTER_EVENT_BATCH_SIZE": "1000"}  # as docker-compose.yml sets it


@contextmanager
def dagster_storage(home: Path, storage: str) -> Iterator[dict[str, str]]:
    """The Dagster home's storage: ``sqlite`` (Dagster's default, as `make run` has it) or
    ``postgres`` (a fresh database on 127.0.0.1:5432, dropped afterwards); yields its environment."""
    if storage == "sqlite":
        yield {}
        return
    import psycopg2

    database = f"crypto_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {database}")
    Path(home, "dagster.yaml").write_text(POSTGRES_INSTANCE.format(database=database))
    try:
        yield POSTGRES_TUNING
    finally:
        Path(home, "dagster.yaml").unlink()  # a later run in this home gets the default storage
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.close()


def run_once(
    base_url: str,
    coins: int | str,
    partition_args: list[str],
    lake: str | None = None,
    extra_env: dict[str, str] | None = None,
    workdir: Path | None = None,
    storage: str = "sqlite",
) -> dict[str, float]:
    """One CLI run in a fresh lakehouse (a temporary folder unless ``lake`` is given), warehouse
    and Dagster home (its ``storage``: see dagster_storage), or in those of ``workdir`` (kept, so
    a later run sees this one's tables); its figures."""
    with tempfile.TemporaryDirectory(prefix="crypto_bench_") as scratch:
        tmp = workdir or Path(scratch)
        home = Path(tmp, "home")
        home.mkdir(exist_ok=True)
        with dagster_storage(home, storage) as storage_env:
            return _run(base_url, coins, partition_args, tmp, home, lake, {**storage_env, **(extra_env or {})})


def _run(
    base_url: str,
    coins: int | str,
    partition_args: list[str],
    tmp: Path,
    home: Path,
    lake: str | None,
    extra_env: dict[str, str],
) -> dict[str, float]:
    """The run itself and its figures (read back while its Dagster storage still exists)."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "COINGECKO_BASE_URL": base_url,
        "COINGECKO_CALLS_PER_MINUTE": "1000000",
        "CRYPTO_COINS_LIMIT": str(coins),
        "CRYPTO_LAKE_ROOT": lake or str(Path(tmp, "lake")),
        "CRYPTO_WAREHOUSE_ODBC": f"DRIVER={{SQLite3}};Database={tmp}/warehouse.sqlite;BigInt=1",
        **extra_env,
    }
    command = materialize_command(*partition_args)
    started = time.monotonic()
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        samples = samples_until_exit(process)  # peaks per step come from them
        wall = time.monotonic() - started
        if process.returncode != 0:
            stderr.seek(0)
            raise SystemExit(f"benchmark run failed:\n{stderr.read().decode(errors='replace')[-4000:]}")
    figures = {
        "wall": wall,
        "peak_rss_mb": max(tree for _, tree, _ in samples) / 2**20,
        "peak_python_mb": max(python for _, _, python in samples) / 2**20,
    }
    with DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs(limit=1)
        steps = {stat.step_key: stat for stat in instance.get_run_step_stats(run.run_id)}
        for stage, keys in STAGES.items():
            figures[stage] = sum(steps[key].end_time - steps[key].start_time for key in keys)
            during = [
                (tree, python)
                for at, tree, python in samples
                if any(steps[key].start_time <= at <= steps[key].end_time for key in keys)
            ]
            figures[f"{stage} tree_mb"] = max((tree for tree, _ in during), default=0) / 2**20
            figures[f"{stage} python_mb"] = max((python for _, python in during), default=0) / 2**20
        [record] = instance.fetch_materializations(BRONZE.asset_key, limit=1).records
        figures["fetch"] = record.asset_materialization.metadata["fetch_seconds"].value
    return figures


def samples_until_exit(process: subprocess.Popen) -> list[tuple[float, int, int]]:
    """(epoch seconds, tree bytes, Python bytes) of ``process`` every 100 ms until it exits."""
    samples = []
    while process.poll() is None:
        samples.append((time.time(), tree_rss(process.pid), rss(process.pid)))
        time.sleep(0.1)
    return samples


def rss(pid: int) -> int:
    """Bytes resident in ``pid`` alone now (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return 0


def tree_rss(pid: int) -> int:
    """Bytes resident in ``pid`` and all its descendants now (0 for what has exited)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        total += rss(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def report(name: str, runs: list[dict[str, float]]) -> dict[str, float]:
    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    stages = "  ".join(f"{stage} {medians[stage]:6.1f}s" for stage in ("fetch", *STAGES))
    peaks = "  ".join(
        f"{stage} {medians[f'{stage} tree_mb']:4.0f} ({medians[f'{stage} python_mb']:3.0f})" for stage in STAGES
    )
    print(
        f"{name:36s} wall {medians['wall']:6.1f}s  peak RSS {medians['peak_rss_mb']:6.0f} MB "
        f"(Python {medians['peak_python_mb']:5.0f})  |  {stages}\n"
        f"{'':36s} peak RSS per step, MB, the process tree (Python alone): {peaks}"
    )
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    now = current_hour()
    backfill = f"{partition_key(now - 24 * HOUR)}...{partition_key(now - HOUR)}"
    print(f"{args.coins} coins, median of {args.repeat} runs each, {os.cpu_count()} cores")
    with Simulator(coins=args.coins + 50) as simulator:
        hour = report(
            "one hour (snapshot)",
            [run_once(simulator.base_url, args.coins, ["--partition", partition_key(now)]) for _ in range(args.repeat)],
        )
        day = report(
            "24-hour backfill, one run",
            [run_once(simulator.base_url, args.coins, ["--partition-range", backfill]) for _ in range(args.repeat)],
        )
    print(f"{'reference: 24 hourly runs':36s} wall {24 * hour['wall']:6.1f}s  (24 × one hour)")
    print(
        f"single-run backfill is {24 * hour['wall'] / day['wall']:.1f}× faster than hour by hour; "
        f"{args.coins * 24 / day['wall']:.0f} coin-hours/s"
    )


if __name__ == "__main__":
    main()
