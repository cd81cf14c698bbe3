"""Helpers the test modules share (no test module imports another): the CLI as CI runs it,
processes started and killed by pid, and table contents compared across lakes and warehouses."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyodbc
import pytest

from crypto_assets import star_schema as star
from crypto_assets.cli import materialize_command
from crypto_assets.process_groups import wait_until_gone
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.resources.warehouse import WarehouseResource
from crypto_assets.tables import ALL_TABLES

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
    "CRYPTO_TEST_MARIADB_ODBC", "DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=3306;UID=root;PWD=;"
)


def unavailable(reason: str):
    """Skip outside CI; under CI a missing real part is a failure, not a skip."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set: this test must run)")
    pytest.skip(reason)


def artifacts(name: str) -> Path:
    """A folder for what a test leaves for people to look at (screenshots): data/test-artifacts/<name>
    of the checkout (ignored by git), emptied first so it holds this run's files only."""
    folder = REPO / "data" / "test-artifacts" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def settle_hour(margin_seconds: int = 60) -> None:
    """Tests that capture "the current hour" compute it before the pipeline does: never start
    one in the last ``margin_seconds`` of an hour, or the two could name different hours."""
    now = datetime.now(timezone.utc)
    left = 3600 - (now.minute * 60 + now.second)
    if left <= margin_seconds:
        time.sleep(left + 1)


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


# The hours every "same data, other path" test builds: three past hours at 20 coins.
REFERENCE_HOURS, REFERENCE_COINS = 3, 20


# A local instance as `make demo` writes it: one CoinGecko capture at a time across its runs.
# Columns that say which capture and run a row came from, when and by which request: they differ
# between two runs over the same data and are left out when comparing contents.
CAPTURE_METADATA = {
    "capture_id",
    "run_id",
    "ingested_at",
    "request",
    "page",
    "position",
    "payload_sha256",
    "http_status",
}


def materialize(
    env: dict[str, str], *args: str, select: str = "*", expect_success: bool = True
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        materialize_command(*args, select=select), env=env, capture_output=True, text=True, timeout=600
    )
    if expect_success:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def pipeline_env(simulator_url: str, home: Path, lake: Path, odbc: str, coins: int, **extra: str) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ, "DAGSTER_HOME": str(home), "COINGECKO_BASE_URL": simulator_url,
        "COINGECKO_CALLS_PER_MINUTE": "60000", "CRYPTO_COINS_LIMIT": str(coins), "CRYPTO_LAKE_ROOT": str(lake),
        "CRYPTO_WAREHOUSE_ODBC": odbc, **extra,
    }  # fmt: skip


def start_in_own_group(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A process in a new session, so it and every child (Spark's JVM) can be killed together."""
    handle = open(log, "w")
    return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def kill_tree(process: subprocess.Popen) -> None:
    """kill -9 of the process and everything in its group, by its pid; waits until it is gone."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)
    if not wait_until_gone(process.pid, timeout=30):
        raise AssertionError(f"process group {process.pid} still alive after SIGKILL")


def wait_for(path: Path, process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(
                f"the run ended (exit {process.returncode}) before reaching its pause point:\n"
                + log.read_text()[-4000:]
            )
        if time.monotonic() > deadline:
            kill_tree(process)
            raise AssertionError(f"no pause point reached in {timeout} s:\n" + log.read_text()[-4000:])
        time.sleep(0.2)


def lake_state(lake: LakehouseResource, start: datetime, end: datetime) -> dict[str, pa.Table]:
    """Every lakehouse table's rows for the window, in key order."""
    return {
        table.path: lake.read_window_arrow(table, start, end).sort_by([(k, "ascending") for k in table.key])
        for table in ALL_TABLES
    }


def lake_content(lake: LakehouseResource, start: datetime, end: datetime) -> dict[str, list[dict]]:
    """Every table's rows for the window without capture metadata, sorted: what two lakes built
    from the same hours must agree on (Bronze: the record texts of each coin and hour)."""
    content = {}
    for table in ALL_TABLES:
        rows = lake.read_window_arrow(table, start, end)
        rows = rows.select([name for name in rows.column_names if name not in CAPTURE_METADATA])
        content[table.path] = sorted(rows.to_pylist(), key=repr)
    return content


def query(wh: WarehouseResource, sql: str, *params) -> list[tuple]:
    """Run SQL with ``{table}`` placeholders resolved to the resource's qualified names."""
    d = wh.sql_dialect()
    names = {t.name: d.table(wh.schema_name, t.name) for t in (*star.CREATED_TABLES, *star.VIEWS)}
    conn = pyodbc.connect(wh.odbc_connection_string)
    try:
        return [tuple(r) for r in conn.execute(sql.format(**names), *params).fetchall()]
    finally:
        conn.close()


def dump(wh: WarehouseResource, tables=(*star.STAR_TABLES, star.SCHEMA_VERSION_TABLE)) -> dict[str, list[tuple]]:
    return {t.name: sorted(query(wh, f"SELECT * FROM {{{t.name}}}"), key=repr) for t in tables}


def star_content(odbc: str) -> dict[str, list[tuple]]:
    """Every star table's rows (the schema's own change log aside)."""
    return dump(WarehouseResource(odbc_connection_string=odbc), star.STAR_TABLES)
