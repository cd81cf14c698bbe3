"""Scale-out benchmark: a 168-hour backfill at 1,000 coins with the lake on local disk vs on an S3
server, and Spark local vs a standalone cluster, in one run.

`python -m benchmarks.scaleout [--coins 1000] [--hours 168] [--repeat 1]` starts moto's S3 server
and a standalone master + worker from the pyspark wheel on 127.0.0.1 (as the tests do), runs the
real CLI once per scenario in a fresh lake, and prints wall time, the driver's peak memory (RSS of
the CLI's process tree: Python and the driver JVM, which in local mode holds the executors too;
a cluster's executors live in the worker) and the time per stage. The reference is the first
row, measured in the same run. Target: the object store and the cluster cost a bounded factor,
and the driver's peak does not grow with the window (slices of CRYPTO_SLICE_HOURS).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path

from benchmarks.pipeline import report, run_once
from crypto_assets.partitions import HOUR, current_hour, partition_key
from crypto_assets.simulator import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crypto_assets_tests"))
from services import create_bucket, s3_server, spark_cluster  # noqa: E402  (the tests' own servers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=168)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    now = current_hour()
    window = ["--partition-range", f"{partition_key(now - args.hours * HOUR)}...{partition_key(now - HOUR)}"]
    print(f"{args.hours}-hour backfill at {args.coins} coins, median of {args.repeat}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="crypto_scaleout_") as tmp, Simulator(coins=args.coins + 50) as simulator:
        logs = Path(tmp)
        with s3_server(logs) as s3:
            create_bucket(s3, "bench")
            os.environ.update(s3)  # this process reads nothing from S3, its children do

            def runs(lake=None, **env):
                return [
                    run_once(simulator.base_url, args.coins, window, lake and f"{lake}/{uuid.uuid4().hex}", env)
                    for _ in range(args.repeat)
                ]

            local = report("local disk, local Spark (ref)", runs())
            on_s3 = report("S3 (moto), local Spark", runs("s3://bench"))
            with spark_cluster(logs, env=s3) as master:
                cluster = report(
                    "local disk, standalone cluster", runs(SPARK_MASTER=master, SPARK_LOCAL_IP="127.0.0.1")
                )
                both = report(
                    "S3 (moto), standalone cluster", runs("s3://bench", SPARK_MASTER=master, SPARK_LOCAL_IP="127.0.0.1")
                )
    for name, figures in (
        ("S3 / local disk", on_s3),
        ("cluster / local Spark", cluster),
        ("S3 + cluster / local", both),
    ):
        print(
            f"{name:28s} wall {figures['wall'] / local['wall']:.2f}×  driver peak {figures['peak_rss_mb'] / local['peak_rss_mb']:.2f}×"
        )


if __name__ == "__main__":
    main()
