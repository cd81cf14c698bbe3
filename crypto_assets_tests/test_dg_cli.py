"""Today's Dagster CLI from the repository root, configured by ``[tool.dg]`` in pyproject.toml:
`dg check defs`, `dg list defs` and `dg launch` (what `make demo` runs) — without the
SupersessionWarning `dagster asset materialize` prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from crypto_assets.cli import launch_command
from crypto_assets.local_instance import ensure_local_instance
from crypto_assets.partitions import HOUR, current_hour, partition_key
from crypto_assets.resources.lakehouse import LakehouseResource, rows_per_hour
from crypto_assets.tables import BRONZE
from support import REPO, pipeline_env

DG = str(Path(sys.executable).parent / "dg")


def dg(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run([DG, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_dg_checks_and_lists_the_definitions_from_the_repository_root(tmp_path):
    env = pipeline_env("http://127.0.0.1:9/api/v3", tmp_path / "home", tmp_path / "lake", "DRIVER={SQLite3}", 10)
    assert "All definitions loaded successfully" in dg("check", "defs", env=env).stdout
    listed = json.loads(dg("list", "defs", "--json", env=env).stdout)
    keys = {asset["asset_key"] for asset in listed["assets"]}
    assert {"raw_data/bronze_coingecko_markets", "warehouse/fact_market_snapshot"} <= keys and len(keys) == 14


def test_dg_launch_backfills_a_partition_range_without_warnings(simulator, tmp_path):
    now = current_hour()
    first, last = now - 3 * HOUR, now - 2 * HOUR
    odbc = f"DRIVER={{SQLite3}};Database={tmp_path / 'wh.sqlite'};BigInt=1"
    env = pipeline_env(simulator.base_url, tmp_path / "home", tmp_path / "lake", odbc, 10)
    ensure_local_instance(tmp_path / "home")
    command = launch_command(
        "--partition-range", f"{partition_key(first)}...{partition_key(last)}", assets="key:raw_data/*"
    )
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "RUN_SUCCESS" in output and "Warning" not in output
    rows = rows_per_hour(
        LakehouseResource(root=str(tmp_path / "lake")).read_window_arrow(BRONZE, first, now), first, now - HOUR
    )
    assert list(rows.values()) == [10, 10]
