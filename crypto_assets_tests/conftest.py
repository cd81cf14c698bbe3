"""Shared fixtures: the real parts every test layer uses (Spark, the simulator, ODBC databases)."""

from __future__ import annotations

import os
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest

from crypto_assets.resources.spark import SparkResource
from crypto_assets.simulator import Simulator
from services import AZURITE, BIN, azurite, create_bucket, create_container, s3_server

REPO = Path(__file__).resolve().parents[1]
# The recorded CoinGecko responses live beside the repository, never inside it.
SAMPLES = REPO.parent / "shared" / "coingecko" / "samples"
IN_CI = bool(os.environ.get("CI"))
# The PostgreSQL server of the tests, without a database: append ";DATABASE=name".
POSTGRES_SERVER = os.environ.get(
    "CRYPTO_TEST_POSTGRES_ODBC",
    "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;UID=postgres;BoolsAsChar=0;Protocol=7.4-1",
)

# The MariaDB server of the tests (a star schema is a database there: one per test, dropped).
MARIADB_SERVER = os.environ.get(
    "CRYPTO_TEST_MARIADB_ODBC", "DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=3306;UID=root;PWD=;")


def unavailable(reason: str):
    """Skip outside CI; under CI a missing real part is a failure, not a skip."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set: this test must run)")
    pytest.skip(reason)


def settle_hour(margin_seconds: int = 60) -> None:
    """Tests that capture "the current hour" compute it before the pipeline does: never start
    one in the last ``margin_seconds`` of an hour, or the two could name different hours."""
    now = datetime.now(timezone.utc)
    left = 3600 - (now.minute * 60 + now.second)
    if left <= margin_seconds:
        time.sleep(left + 1)


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


# The hours every "same data, other path" test builds: three past hours at 20 coins.
REFERENCE_HOURS, REFERENCE_COINS = 3, 20


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
    from support import lake_content, materialize, pipeline_env, star_content

    from crypto_assets.partitions import HOUR, floor_hour, partition_key
    from crypto_assets.resources.lakehouse import LakehouseResource

    end = floor_hour(still_simulator.now)
    start = end - REFERENCE_HOURS * HOUR
    root = tmp_path_factory.mktemp("reference")
    odbc = f"DRIVER={{SQLite3}};Database={root / 'wh.sqlite'};BigInt=1"
    env = pipeline_env(still_simulator.base_url, root / "home", root / "lake", odbc, REFERENCE_COINS,
                       CRYPTO_SLICE_HOURS="1")
    run = materialize(env, "--partition-range", f"{partition_key(start)}...{partition_key(end - HOUR)}")
    assert "Spark session started (local[" in run.stdout + run.stderr
    return {"window": (start, end), "run": run, "lake": lake_content(LakehouseResource(root=str(root / "lake")), start, end),
            "warehouse": star_content(odbc)}


@pytest.fixture(scope="module")
def sqlite_odbc(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("warehouse") / "warehouse.sqlite"
    return f"DRIVER={{SQLite3}};Database={path};BigInt=1"


@contextmanager
def postgres_database(prefix: str):
    """The name of a fresh database on the test server, dropped afterwards."""
    import pyodbc

    try:
        admin = pyodbc.connect(POSTGRES_SERVER + ";DATABASE=postgres", autocommit=True, timeout=5)
    except pyodbc.Error as error:
        unavailable(f"PostgreSQL not reachable through psqlODBC: {error}")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@contextmanager
def mariadb_schemas():
    """Names for star schemas (databases) on the MariaDB server, each dropped afterwards."""
    import pyodbc

    try:
        admin = pyodbc.connect(MARIADB_SERVER, autocommit=True, timeout=5)
    except pyodbc.Error as error:
        unavailable(f"MariaDB not reachable through MariaDB Connector/ODBC: {error}")
    made: list[str] = []

    def name() -> str:
        made.append(f"crypto_t{uuid.uuid4().hex[:10]}")
        return made[-1]

    try:
        yield name
    finally:
        for schema in made:
            admin.execute(f"DROP DATABASE IF EXISTS `{schema}`")
        admin.close()


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
