"""Scale benchmark: the two floors, one hour at 1,000 and 18,000 coins, backfills of 24 and 744
hours and a year in one run each, and the hourly run after a year of history, in one sitting.

`python -m benchmarks.scale [--coins 1000] [--all-coins 18000] [--repeat 3] [--no-year]` runs the
real CLI against the simulator (as pipeline.py does) and prints medians where it repeats, each
figure beside its target from issue #12. Peak RSS is the whole process tree's (Python and the JVM).

* floor 1: a bare Spark session start + stop, with the session settings of an hourly run;
* floor 2: a no-op `dagster asset materialize` of one partitioned asset (benchmarks/noop.py);
* Dagster's floor of a backfill: the graph's assets and checks recorded for the range with no work
  done (benchmarks/recorded_graph.py), its time and Python's peak, for 744 hours and the year;
* one hour: the current hour (a snapshot) in a fresh lake, the whole graph; and the same on a
  warm Spark Connect server (`SPARK_REMOTE`: a session that outlives the runs, warmed by one run
  first as earlier hours would have; its JVM is not in the run's process tree);
* backfills: past hours from history in one run, each in a fresh lake; Dagster's own storage is
  SQLite (its default, `make run`'s) and, for 744 hours and the year, the deployment's PostgreSQL
  instance on 127.0.0.1:5432 with its event batching (benchmarks/pipeline.py: dagster_storage);
* after a year: the current hour on the lake the year's backfill left (the cost of history), each of
  the three on its own copy of that lake, interleaved with the same hour on a fresh lake (runs an
  hour apart are not comparable: the first may be a snapshot, the second a history capture of a
  past hour; a rerun of an hour already captured is not the first hour after the year);
* DuckDB: the same Silver and Gold logic over the 744-hour lake (benchmarks/duckdb_reference.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.duckdb_reference import window_argument
from benchmarks.pipeline import dagster_storage, report, run_once, samples_until_exit
from crypto_assets.cli import materialize_command
from crypto_assets.partitions import HOUR, current_hour, partition_key
from crypto_assets.simulator import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crypto_assets_tests"))
from services import spark_connect_server  # noqa: E402  (the tests' own server, as scaleout.py uses)

YEAR_HOURS = 24 * 366
# Partitions from well before a year ago, for every run alike (the default starts 2026-01-01).
PARTITIONS_START = "2024-01-01-00:00"
STORAGES = ("sqlite", "postgres")  # Dagster's default instance, and the deployment's (deploy/dagster.yaml)
SPARK_FLOOR = """
from crypto_assets.resources.spark import QUICK_JIT, SparkResource
resource = SparkResource(java_options=QUICK_JIT)  # as an hourly run starts it
resource._init_session()
resource._spark_session.stop()
"""


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds the command took, to the exit (no sampling: the floors are ratios' denominators)."""
    started = time.monotonic()
    subprocess.run(
        command, env={**os.environ, **(env or {})}, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.monotonic() - started


def sampled(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Seconds the command took and its own peak RSS in bytes (benchmarks/pipeline.py's samples)."""
    started = time.monotonic()
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = samples_until_exit(process)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    return time.monotonic() - started, max((python for _, _, python in samples), default=0)


def floors(repeat: int) -> tuple[float, float]:
    spark = statistics.median(timed([sys.executable, "-c", SPARK_FLOOR]) for _ in range(repeat))
    with tempfile.TemporaryDirectory(prefix="crypto_noop_") as home:
        noop = materialize_command(*this_hour(), select="noop", module="benchmarks.noop")
        cli = statistics.median(timed(noop, {"DAGSTER_HOME": home}) for _ in range(repeat))
    print(f"{'floor: bare Spark start+stop':34s} {spark:6.1f}s")
    print(f"{'floor: no-op CLI materialize':34s} {cli:6.1f}s")
    return spark, cli


def recorded_floor(hours: int, storage: str = "sqlite") -> float:
    """Seconds Dagster alone spends on a run of the graph over ``hours`` hours (nothing computed)."""
    with tempfile.TemporaryDirectory(prefix="crypto_recorded_") as home:
        Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        with dagster_storage(Path(home), storage) as storage_env:
            command = materialize_command(*backfill(hours), module="benchmarks.recorded_graph")
            seconds, peak = sampled(command, {"DAGSTER_HOME": home, **storage_env})
    print(
        f"{f'floor: Dagster recording {hours} h, {storage}':34s} {seconds:6.1f}s  Python's peak {peak / 2**20:4.0f} MB"
        "  (the graph, no work)"
    )
    return seconds


def hours_after(url: str, coins: int, kept: Path, repeat: int) -> tuple[dict[str, float], dict[str, float]]:
    """The current hour on the lake and warehouse ``kept`` holds, each run on a copy of them (so each is
    the first hour after that history), interleaved with the same hour on a fresh lake: medians of each."""
    after, fresh = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="crypto_after_") as copy:
            shutil.copytree(kept, copy, dirs_exist_ok=True)
            os.sync()  # the copy's writes hit the disk now, not during the run it is timed against
            after.append(run_once(url, coins, this_hour(), workdir=Path(copy)))
        fresh.append(run_once(url, coins, this_hour()))
    return report("one hour after a year of history", after), report("the same hour on a fresh lake, beside it", fresh)


def this_hour() -> list[str]:
    """The current hour, when the run starts (a sitting takes longer than an hour)."""
    return ["--partition", partition_key(current_hour())]


def warm_connect_hour(url: str, coins: int, repeat: int) -> dict[str, float]:
    """One hour's figures on a Spark Connect server that one run of an hour warmed first."""
    with tempfile.TemporaryDirectory(prefix="crypto_connect_") as logs, spark_connect_server(Path(logs)) as remote:
        remote_env = {"SPARK_REMOTE": remote}
        run_once(url, coins, this_hour(), extra_env=remote_env)
        runs = [run_once(url, coins, this_hour(), extra_env=remote_env) for _ in range(repeat)]
    return report("one hour, warm Spark Connect server", runs)


def backfill(hours: int) -> list[str]:
    now = current_hour()
    return ["--partition-range", f"{partition_key(now - hours * HOUR)}...{partition_key(now - HOUR)}"]


def verdict(name: str, value: float, target: float, unit: str = "×") -> None:
    print(f"  {name:58s} {value:7.2f}{unit}  target ≤ {target}{unit}  {'met' if value <= target else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=1000)
    parser.add_argument(
        "--all-coins", type=int, default=18000, help="the simulator's universe for CRYPTO_COINS_LIMIT=all"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-year", action="store_true", help="skip the one-year backfill (the longest figure)")
    args = parser.parse_args()
    os.environ["CRYPTO_PARTITIONS_START"] = PARTITIONS_START  # the CLI runs inherit it
    print(
        f"{args.coins} coins (and all {args.all_coins}), medians of {args.repeat} where repeated, {os.cpu_count()} cores"
    )
    spark_floor, cli_floor = floors(args.repeat)
    floor = spark_floor + cli_floor
    with Simulator(coins=args.all_coins) as simulator:
        url = simulator.base_url
        hour = report("one hour, 1,000 coins", [run_once(url, args.coins, this_hour()) for _ in range(args.repeat)])
        connect = warm_connect_hour(url, args.coins, args.repeat)
        every = report(f"one hour, all {args.all_coins} coins", [run_once(url, "all", this_hour())])
        day = report("24-hour backfill", [run_once(url, args.coins, backfill(24))])
        recorded = {storage: recorded_floor(744, storage) for storage in STORAGES}
        with tempfile.TemporaryDirectory(prefix="crypto_month_") as kept:
            month = report("744-hour backfill", [run_once(url, args.coins, backfill(744), workdir=Path(kept))])
            print("Silver + Gold logic on the 744-hour lake, Spark path vs DuckDB (compute only):", flush=True)
            now = current_hour()
            windows = [window_argument(now - HOUR, now), window_argument(now - 744 * HOUR, now)]
            reference = [sys.executable, "-m", "benchmarks.duckdb_reference", str(Path(kept, "lake")), *windows]
            subprocess.run(reference, check=True)
        month_pg = report(
            "744-hour backfill, PostgreSQL", [run_once(url, args.coins, backfill(744), storage="postgres")]
        )
        year = after_year = small_lake = None
        if not args.no_year:  # on PostgreSQL: on SQLite, Dagster alone needs about an hour to record a year
            recorded_floor(YEAR_HOURS, "postgres")
            with tempfile.TemporaryDirectory(prefix="crypto_year_") as kept:
                year = report(
                    f"{YEAR_HOURS}-hour backfill (a year), PostgreSQL",
                    [run_once(url, args.coins, backfill(YEAR_HOURS), workdir=Path(kept), storage="postgres")],
                )
                after_year, small_lake = hours_after(url, args.coins, Path(kept), args.repeat)
    print("targets (issue #12):")
    verdict("one hour / (no-op CLI + bare Spark), 1,000 coins", hour["wall"] / floor, 1.3)
    verdict(f"one hour / (no-op CLI + bare Spark), {args.all_coins} coins", every["wall"] / floor, 1.5)
    print(
        f"  (one hour on a warm Spark Connect server: {connect['wall']:.1f} s, {connect['wall'] / floor:.2f}× the floors, "
        f"{connect['wall'] / cli_floor:.2f}× the no-op CLI alone; the server's JVM is outside the run)"
    )
    verdict("744-hour backfill / one hour (SQLite instance)", month["wall"] / hour["wall"], 6)
    verdict("744-hour backfill / one hour (PostgreSQL instance)", month_pg["wall"] / hour["wall"], 6)
    for storage, seconds in recorded.items():
        print(
            f"  (on {storage}, Dagster alone records the 744 hours in {seconds:.0f} s: "
            f"{seconds / hour['wall']:.1f}× one hour before any work)"
        )
    peaks = [
        day["peak_rss_mb"],
        month["peak_rss_mb"],
        month_pg["peak_rss_mb"],
        *([year["peak_rss_mb"]] if year else []),
    ]
    verdict("peak RSS of any backfill", max(peaks) / 1024, 1.5, " GB")
    verdict("largest / smallest backfill peak (flat: ±20 %)", max(peaks) / min(peaks), 1.2)
    if year and after_year and small_lake:
        print(f"  a one-year backfill completed in one run: {year['wall']:.0f} s")
        verdict("hourly run after a year / on a fresh lake, beside it", after_year["wall"] / small_lake["wall"], 1.1)
    else:
        print("  (one-year figures skipped: --no-year)")
    print("  (Silver + Gold vs DuckDB: the ratios printed above, target ≤ 3× over the 744-hour window)")


if __name__ == "__main__":
    main()
