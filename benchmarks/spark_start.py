"""Spark start benchmark: what a run waits for before its first Spark step can work.

`python -m benchmarks.spark_start [--repeat 5]` starts a local session in a fresh process, as every
run does, and runs a run's first queries once (``warm_up``: Silver and Gold over one record in a
throwaway lake; their class loading and code generation), alternately without and with the
archive of Spark's classes (``crypto_assets/resources/spark_classes.py``), and prints the medians:

* without (the reference, measured in the same run): the JVM loads and verifies Spark's classes;
* with: it maps them from the archive `make setup` made.

Target: start plus first query at least 1.5× faster with the archive.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from crypto_assets.resources import spark_classes

PROBE = """
import json, sys, time
from crypto_assets.resources.spark import SparkResource
from crypto_assets.warm_up import warm_up
began = time.monotonic()
resource = SparkResource(master="local[*]", class_archive=sys.argv[1] == "with")
session = resource.spark_session
started = time.monotonic()
warm_up(session)
print(json.dumps({"start": started - began, "first_query": time.monotonic() - started}))
session.stop()
"""


def once(archive: bool) -> dict[str, float]:
    began = time.monotonic()
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, "with" if archive else "without"], capture_output=True, text=True, check=True
    )
    figures = json.loads(probe.stdout.strip().splitlines()[-1])
    return {**figures, "process": time.monotonic() - began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    archive = spark_classes.build()  # made if missing, as `make setup` does
    print(f"archive: {archive} ({archive.stat().st_size / 1e6:.0f} MB)")
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(args.repeat):
        for with_archive in (False, True):
            runs[with_archive].append(once(with_archive))
    medians = {
        with_archive: {key: statistics.median(run[key] for run in figures) for key in figures[0]}
        for with_archive, figures in runs.items()
    }
    print(f"medians of {args.repeat} fresh processes each (seconds)")
    print(f"{'':24}{'start':>8}{'1st query':>11}{'both':>8}{'process':>9}")
    for with_archive, label in ((False, "without (reference)"), (True, "with the archive")):
        m = medians[with_archive]
        print(
            f"{label:24}{m['start']:8.2f}{m['first_query']:11.2f}{m['start'] + m['first_query']:8.2f}{m['process']:9.2f}"
        )
    before, after = (medians[flag]["start"] + medians[flag]["first_query"] for flag in (False, True))
    print(f"start + first query: {before / after:.2f}× faster with the archive (target ≥ 1.5×)")


if __name__ == "__main__":
    main()
