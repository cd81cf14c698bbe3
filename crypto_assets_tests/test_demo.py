"""`make demo` (``python -m crypto_assets.demo``) as a user runs it, a few coins, with a warehouse
connection string that carries a password: both runs (through `dg launch`) succeed without a
warning from Dagster's CLI, it prints every table's rows and where its data is, and the password
nowhere."""

from __future__ import annotations

import os
import subprocess
import sys


def test_the_demo_runs_without_cli_warnings_and_names_its_warehouse_without_the_password(tmp_path):
    password = "demo-secret-5c1e"
    odbc = f"DRIVER={{SQLite3}};Database={tmp_path / 'wh.sqlite'};BigInt=1;PWD={password}"
    env = {
        **os.environ, "CRYPTO_DEMO_DATA": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "home"),
        "CRYPTO_LAKE_ROOT": str(tmp_path / "lake"), "CRYPTO_WAREHOUSE_ODBC": odbc, "CRYPTO_COINS_LIMIT": "3",
    }  # fmt: skip
    demo = subprocess.run(
        [sys.executable, "-m", "crypto_assets.demo"], env=env, capture_output=True, text=True, timeout=600
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    output = demo.stdout + demo.stderr
    assert password not in output
    assert "SupersessionWarning" not in output and "PreviewWarning" not in output
    assert "aggregated_data/gold_market_trends" in demo.stdout and "fact_market_snapshot" in demo.stdout
    assert f"Warehouse: {odbc.replace(password, '***')}" in demo.stdout
