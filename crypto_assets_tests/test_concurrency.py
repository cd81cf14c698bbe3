"""Two real `dagster asset materialize` processes writing the same hour of one lake and warehouse
at once: no capture is lost and nothing is duplicated or silently replaced.

The simulator holds its `/coins/markets` answers, and the second run starts only once the first
one's request is held, so both runs have decided to capture before either has committed: the
race is forced, not left to timing.
"""

from __future__ import annotations

import time

import pytest
from dagster import DagsterInstance

from crypto_assets.assets.bronze import COINGECKO_POOL
from crypto_assets.local_instance import ensure_local_instance
from crypto_assets.partitions import HOUR, current_hour, partition_key
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.tables import BRONZE, SILVER
from support import kill_tree, materialize_command, pipeline_env, star_content, start_in_own_group

COINS = 30
# The longest a held snapshot reply waits (under the client's 30 s timeout); it is released as soon
# as the test has seen what it waits for.
HOLD_SECONDS = 25
POOL_WAIT = "blocked by limit for pool coingecko"  # Dagster's line for a step queued at a pool
pytestmark = pytest.mark.usefixtures("hour_settled")


def test_two_instances_capturing_one_hour_at_once_keep_both_captures(simulator, tmp_path):
    now = current_hour()
    lake_root, odbc = tmp_path / "lake", f"DRIVER={{SQLite3}};Database={tmp_path / 'wh.sqlite'};BigInt=1"
    envs = [pipeline_env(simulator.base_url, tmp_path / f"home-{i}", lake_root, odbc, COINS) for i in (1, 2)]
    command = materialize_command("--partition", partition_key(now))

    # The first run's snapshot request is held; the second run starts only then, and its own
    # request is held too, so both capture the hour before either commits (not left to timing).
    already = simulator.request_count
    simulator.inject("slow", times=2, delay=HOLD_SECONDS)
    first = start_in_own_group(command, envs[0], tmp_path / "first.log")
    try:
        wait_for_markets_calls(simulator, already, 1, first, tmp_path / "first.log")
        second = start_in_own_group(command, envs[1], tmp_path / "second.log")
        try:
            wait_for_markets_calls(simulator, already, 2, second, tmp_path / "second.log")
            deadline = time.monotonic() + 5  # a request is logged, then held
            while simulator.held < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert simulator.release_held() == 2, "both snapshot requests must be held at once"
            codes = [first.wait(timeout=600), second.wait(timeout=600)]
        finally:
            kill_tree(second)
    finally:
        kill_tree(first)
        simulator.clear_faults()
    outputs = [(tmp_path / f"{name}.log").read_text() for name in ("first", "second")]
    assert codes == [0, 0], outputs[0][-6000:] + outputs[1][-6000:]

    lake = LakehouseResource(root=str(lake_root))
    bronze = lake.read_window_arrow(BRONZE, now, now + HOUR)
    captures = set(bronze.column("capture_id").to_pylist())
    assert len(captures) == 2 and len(bronze) == 2 * COINS  # both captures, whole
    silver = lake.read_window_arrow(SILVER, now, now + HOUR)
    assert len(silver) == COINS == len(set(silver.column("coin_id").to_pylist()))
    # Silver took every coin from the newer capture (the documented precedence)
    assert set(silver.column("capture_id").to_pylist()) == {max(captures)}
    assert len(star_content(odbc)["fact_market_snapshot"]) == COINS


def test_two_runs_of_one_instance_take_turns_at_the_api(simulator, tmp_path):
    now = current_hour()
    home = tmp_path / "home"
    home.mkdir()
    ensure_local_instance(home)
    with DagsterInstance.from_config(str(home)) as instance:
        # The storage exists before two processes race to create it, and so does the pool: two
        # runs making the very first claim on a pool at once can both initialise it from
        # default_limit and get a slot each (Dagster's SQLite storage), as a deployment avoids
        # by setting the pool once (docs/deployment.md).
        instance.event_log_storage.set_concurrency_slots(COINGECKO_POOL, 1)
    lake_root, odbc = tmp_path / "lake", f"DRIVER={{SQLite3}};Database={tmp_path / 'wh.sqlite'};BigInt=1"
    env = pipeline_env(simulator.base_url, home, lake_root, odbc, COINS)
    command = materialize_command("--partition", partition_key(now), select="key:raw_data/*")  # the API is Bronze's

    # The first run holds the pool's slot while its snapshot request waits; the second starts only
    # then, so it meets the held slot whatever the machine's load (not a race left to timing).
    already = simulator.request_count
    simulator.inject("slow", delay=HOLD_SECONDS)
    first = start_in_own_group(command, env, tmp_path / "first.log")
    try:
        wait_for_markets_calls(simulator, already, 1, first, tmp_path / "first.log")
        second = start_in_own_group(command, env, tmp_path / "second.log")
        try:
            wait_for_line(POOL_WAIT, second, tmp_path / "second.log")
            simulator.release_held()  # the second run is queued at the pool: let the first finish
            codes = [second.wait(timeout=600), first.wait(timeout=600)]
        finally:
            kill_tree(second)
    finally:
        kill_tree(first)
        simulator.clear_faults()
    outputs = [(tmp_path / f"{name}.log").read_text() for name in ("first", "second")]
    assert codes == [0, 0], outputs[1][-6000:] + outputs[0][-6000:]

    # the coingecko pool kept the second Bronze step waiting; it then re-used the first one's capture
    assert POOL_WAIT in outputs[1], outputs[1][-6000:]
    bronze = LakehouseResource(root=str(lake_root)).read_window_arrow(BRONZE, now, now + HOUR)
    assert len(set(bronze.column("capture_id").to_pylist())) == 1 and len(bronze) == COINS
    assert len(markets_calls_since(simulator, already)) == 1


def markets_calls_since(simulator, count: int) -> list[dict]:
    """The snapshot requests the simulator answered after its first ``count`` requests."""
    newer = simulator.requests[len(simulator.requests) - (simulator.request_count - count) :]
    return [request for request in newer if "/coins/markets" in request["path"]]


def wait_for_line(text: str, process, log) -> None:
    """Until ``process``'s log has a line with ``text``, while it still runs."""
    deadline = time.monotonic() + 180
    while text not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-6000:]
        time.sleep(0.2)


def wait_for_markets_calls(simulator, count: int, calls: int, process, log) -> None:
    """Until the simulator has had ``calls`` snapshot requests since its first ``count`` (held ones
    included), while ``process`` still runs."""
    deadline = time.monotonic() + 180
    while len(markets_calls_since(simulator, count)) < calls:
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-6000:]
        time.sleep(0.2)
