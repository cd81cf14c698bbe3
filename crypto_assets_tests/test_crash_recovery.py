"""kill -9 of a real run's whole process tree (Python and Spark's JVM) at each commit point, then a
rerun: the tables end exactly as one clean run leaves them, and a capture that was landed but
never committed is committed by the rerun instead of being fetched again.

A run is stopped at a point by ``CRYPTO_PAUSE_AT`` (``crypto_assets/crashpoints.py``): it writes
a marker and waits there; the test then kills its process group by pid. The runs share one lake,
and each has a fresh Dagster instance (the killed run's instance would still show it as started).
"""

from __future__ import annotations

from crypto_assets import crashpoints
from crypto_assets.partitions import HOUR, partition_key
from crypto_assets.resources.lakehouse import LakehouseResource
from support import (
    REFERENCE_COINS,
    kill_tree,
    lake_content,
    materialize,
    materialize_command,
    pipeline_env,
    star_content,
    start_in_own_group,
    wait_for,
)


def test_a_run_killed_at_each_commit_point_in_turn_then_rerun_ends_as_one_clean_run(
    still_simulator, reference_run, tmp_path
):
    """One lake: the first run is killed at the first point, the next run (which finds what the
    killed one left) at the second, and so on through every point, in the order a run reaches them."""
    simulator = still_simulator
    start, end = reference_run["window"]
    partition = ["--partition-range", f"{partition_key(start)}...{partition_key(end - HOUR)}"]
    odbc = f"DRIVER={{SQLite3}};Database={tmp_path / 'wh.sqlite'};BigInt=1"
    history_calls = []
    for number, point in enumerate(crashpoints.POINTS):
        marker, log = tmp_path / f"paused-{number}", tmp_path / f"run-{number}.log"
        env = pipeline_env(
            simulator.base_url,
            tmp_path / f"home-{number}",
            tmp_path / "lake",
            odbc,
            REFERENCE_COINS,
            CRYPTO_PAUSE_AT=point,
            CRYPTO_PAUSE_MARKER=str(marker),
        )
        before = simulator.request_count
        process = start_in_own_group(materialize_command(*partition), env, log)
        wait_for(marker, process, log)
        assert marker.read_text().startswith(point)
        kill_tree(process)
        history_calls.append(simulator.request_count - before)
    rerun = pipeline_env(simulator.base_url, tmp_path / "home-rerun", tmp_path / "lake", odbc, REFERENCE_COINS)
    before = simulator.request_count
    materialize(rerun, *partition)
    history_calls.append(simulator.request_count - before)

    # only the first run called the API: every later one found the capture (landed or committed)
    assert history_calls[0] > REFERENCE_COINS and history_calls[1:] == [0] * len(crashpoints.POINTS)
    assert lake_content(LakehouseResource(root=str(tmp_path / "lake")), start, end) == reference_run["lake"]
    assert star_content(odbc) == reference_run["warehouse"]
