"""Shared fixtures: the real parts every test layer uses (Spark, the simulator, ODBC databases)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from crypto_assets.resources.spark import SparkResource
from crypto_assets.simulator import Simulator
from services import AZURITE, BIN, azurite, create_bucket, create_container, s3_server
from support import (
    POSTGRES_SERVER,
    REFERENCE_COINS,
    REFERENCE_HOURS,
    SAMPLES,
    postgres_database,
    settle_hour,
    unavailable,
)


@pytest.fixture
def hour_settled() -> None:
    settle_hour()


@pytest.fixture(scope="session")
def samples() -> Path:
    if not SAMPLES.is_dir():
        unavailable(f"recorded samples not found at {SAMPLES}")
    return SAMPLES


@pytest.fixture(scope="session")
def spark(s3):
    """One small local Spark session for the whole run, configured as the pipeline's resource.
    Started after the S3 settings are in the environment: its executors (Python workers the JVM
    starts) read object-store lakes with the environment the JVM was given, as in a real run."""
    resource = SparkResource(master="local[2]", shuffle_partitions=4, driver_memory="1g")
    session = resource.spark_session
    yield session
    session.stop()


@pytest.fixture(scope="session")
def simulator():
    """The CoinGecko simulator on 127.0.0.1, shared; tests that inject faults clear them."""
    with Simulator(coins=400) as sim:
        yield sim


@pytest.fixture(scope="session")
def still_simulator():
    """A simulator whose clock stands still at the session's start: the history universe (today's
    top coins) is the same for every run, however long the suite takes or whenever an hour ends."""
    with Simulator(coins=400, now=datetime.now(timezone.utc)) as sim:
        yield sim


@pytest.fixture(scope="session")
def reference_run(still_simulator, tmp_path_factory):
    """One clean in-order run of the reference hours, one-hour slices at a time (as a year-long
    backfill goes a week at a time): (window, lake content, warehouse content) for the crash,
    order and scale-out tests to compare against."""
    from crypto_assets.partitions import HOUR, floor_hour, partition_key
    from crypto_assets.resources.lakehouse import LakehouseResource
    from support import lake_content, materialize, pipeline_env, star_content

    end = floor_hour(still_simulator.now)
    start = end - REFERENCE_HOURS * HOUR
    root = tmp_path_factory.mktemp("reference")
    odbc = f"DRIVER={{SQLite3}};Database={root / 'wh.sqlite'};BigInt=1"
    env = pipeline_env(
        still_simulator.base_url, root / "home", root / "lake", odbc, REFERENCE_COINS, CRYPTO_SLICE_HOURS="1"
    )
    run = materialize(env, "--partition-range", f"{partition_key(start)}...{partition_key(end - HOUR)}")
    assert "Spark session started (local[" in run.stdout + run.stderr
    return {
        "window": (start, end),
        "run": run,
        "lake_root": root / "lake",  # left as the run wrote it: the notebook and dashboard tests read it
        "odbc": odbc,
        "lake": lake_content(LakehouseResource(root=str(root / "lake")), start, end),
        "warehouse": star_content(odbc),
    }


@pytest.fixture(scope="module")
def sqlite_odbc(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("warehouse") / "warehouse.sqlite"
    return f"DRIVER={{SQLite3}};Database={path};BigInt=1"


@pytest.fixture(scope="module")
def postgres_odbc():
    """A fresh PostgreSQL database for the module: its ODBC connection string."""
    with postgres_database("crypto_test") as name:
        yield f"{POSTGRES_SERVER};DATABASE={name}"


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """moto's S3 server with bucket ``lake``; its AWS_* settings are in this process's environment
    for the session (delta-rs and obstore read them), and returned for subprocesses."""
    if not (BIN / "moto_server").exists():
        unavailable("moto_server is missing: `make setup` installs the dev dependencies")
    with s3_server(tmp_path_factory.mktemp("moto")) as env, pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        create_bucket(env, "lake")
        yield env


@pytest.fixture(scope="session")
def azure(tmp_path_factory):
    """Azurite with container ``lake``; its AZURE_* settings set like ``s3``'s."""
    if not AZURITE.exists():
        unavailable(f"{AZURITE} is missing: `make setup` installs Azurite with npm")
    with azurite(tmp_path_factory.mktemp("azurite")) as env, pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        create_container(env, "lake")
        yield env
