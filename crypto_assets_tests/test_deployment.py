"""The deployment, proven without Docker.

1. Structure: docker-compose.yml, the Dockerfiles, .env.example and deploy/ are checked as
   files (every service, build, port, volume, health check, start-up order; every variable the
   compose file uses is documented; every setting of the settings table is passed to the code
   server and named in .env.example; no secret in an image).
2. Topology: the production instance (deploy/dagster.yaml, verbatim, on a fresh PostgreSQL
   database) with the same three processes the compose file runs — the user-code gRPC server,
   the daemon and the webserver — as local processes on 127.0.0.1. Runs are submitted through the
   webserver's GraphQL API, queued, dequeued and launched by the daemon, executed by the code
   server against the simulator; the run, its events and the tables must then exist.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance

from crypto_assets.local_instance import ensure_local_instance
from crypto_assets.partitions import HOUR, current_hour, partition_key
from crypto_assets.settings import BY_NAME, SETTINGS
from crypto_assets.tables import ALL_TABLES
from services import free_port, running, spark_env, spark_home
from support import REPO, postgres_database

# dagster_graphql's client calls gql with arguments gql has deprecated: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gql")

BIN = Path(sys.executable).parent
LOCATION = "crypto_assets"
JOB = "crypto_hourly"
BRONZE_KEY = "raw_data/bronze_coingecko_markets"

# What the code server reads (the settings table); the webserver and the daemon never import the package.
APP_VARIABLES = {setting.name for setting in SETTINGS if setting.deployment}
# Dagster's own switches the compose file sets for every Dagster process (docs/deployment.md).
COMPOSE_TUNING = {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true", "DAGSTER_EVENT_BATCH_SIZE": "1000"}
INSTANCE_VARIABLES = {
    "DAGSTER_POSTGRES_HOST", "DAGSTER_POSTGRES_PORT", "DAGSTER_POSTGRES_USER",
    "DAGSTER_POSTGRES_PASSWORD", "DAGSTER_POSTGRES_DB", "DAGSTER_COMPUTE_LOGS_DIR",
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# 1. Structure
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def env_example() -> dict[str, str]:
    """NAME=value lines of .env.example (comments and blank lines ignored)."""
    names = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            names[match.group(1)] = match.group(2)
    return names


def compose_variables(text: str) -> set[str]:
    """Every ${VAR}, ${VAR:-default}, ${VAR:?error} the compose file interpolates ($$ escapes)."""
    text = text.replace("$$", "")
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)) | set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", text))


def service_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: str(value) for key, value in env.items()}


def test_compose_has_every_service_with_image_or_build(compose):
    services = compose["services"]
    expected = {"postgres", "warehouse", "user_code", "dagster-webserver", "dagster-daemon",
                "simulator", "spark-master", "spark-worker", "spark-connect", "sqlserver", "minio",
                "minio-bucket"}  # fmt: skip
    assert expected <= set(services), expected - set(services)
    # one-shot jobs (waited for with service_completed_successfully) need no health check
    one_shot = {
        name
        for service in services.values()
        for name, dep in service.get("depends_on", {}).items()
        if isinstance(dep, dict) and dep.get("condition") == "service_completed_successfully"
    }
    assert one_shot == {"minio-bucket"}
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        assert name in one_shot or service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    # Our own images are built from the repository, the databases are stock images.
    assert services["user_code"]["build"]["dockerfile"] == "Dockerfile"
    for name in ("dagster-webserver", "dagster-daemon"):
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile.dagster"
    for name in ("simulator", "spark-master", "spark-worker", "spark-connect"):
        assert services[name]["image"] == services["user_code"]["image"], name
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["warehouse"]["image"].startswith("postgres:")
    assert "mssql/server" in services["sqlserver"]["image"]


def test_the_objectstore_profile_makes_the_bucket_and_every_lake_reader_gets_the_store_settings(compose):
    services = compose["services"]
    assert services["minio"]["profiles"] == ["objectstore"] == services["minio-bucket"]["profiles"]
    assert "mc mb --ignore-existing" in " ".join(services["minio-bucket"]["entrypoint"])
    assert services["minio-bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for reader in ("user_code", "spark-worker", "spark-connect"):  # runs, executors, Connect's driver read the lake
        environment = service_env(services[reader])
        assert {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AZURE_STORAGE_ACCOUNT_KEY"} <= set(
            environment
        )
    assert services["user_code"]["depends_on"]["minio-bucket"] == {
        "condition": "service_completed_successfully",
        "required": False,
    }


def test_compose_profiles_ports_volumes_and_commands(compose):
    services = compose["services"]
    assert services["simulator"]["profiles"] == ["simulator"]
    assert set(services["spark-master"]["profiles"]) == {"spark"} == set(services["spark-worker"]["profiles"])
    assert services["sqlserver"]["profiles"] == ["sqlserver"]
    assert services["spark-connect"]["profiles"] == ["connect"]
    for name in ("postgres", "warehouse", "user_code", "dagster-webserver", "dagster-daemon"):
        assert "profiles" not in services[name], name

    assert any(str(port).endswith(":3000") for port in services["dagster-webserver"]["ports"])
    # Nothing is published beyond the host's loopback unless the user says so (the UI has no login).
    published = [str(port) for service in services.values() for port in service.get("ports", [])]
    assert published and all(p.startswith(("127.0.0.1:", "${DAGSTER_UI_BIND:-127.0.0.1}:")) for p in published), (
        published
    )
    assert "dagster-webserver" in " ".join(services["dagster-webserver"]["command"])
    assert services["dagster-daemon"]["command"][:2] == ["dagster-daemon", "run"]
    user_code_command = " ".join(services["user_code"]["command"])
    assert "crypto_assets.definitions" in user_code_command and "4000" in user_code_command
    assert "spark-class" in services["spark-master"]["command"][0]
    assert any("spark://spark-master:7077" in part for part in services["spark-worker"]["command"])

    # The lakehouse is a named volume, mounted where the code server and the Spark workers
    # (which read the same Parquet files) expect it.
    volumes = compose["volumes"]
    assert {"lake", "dagster-postgres", "warehouse-postgres"} <= set(volumes)
    lake_mounts = {name: m for name, s in services.items() for m in s.get("volumes", []) if m.startswith("lake:")}
    assert {"user_code", "spark-worker", "spark-connect"} <= set(lake_mounts)
    assert len(set(lake_mounts.values())) == 1
    lake_path = lake_mounts["user_code"].split(":")[1]
    assert env_example()["CRYPTO_LAKE_ROOT"] == lake_path
    assert any(m.startswith("dagster-postgres:") for m in services["postgres"]["volumes"])


ABSENT = "no-such-host.invalid"


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"SPARK_CLUSTER_HOST": "localhost"}, ("spark://localhost:7077", "")),  # the spark profile's master resolves
        ({"SPARK_CLUSTER_HOST": ABSENT}, ("", "")),  # no profile on: the settings' local[*]
        ({"SPARK_CLUSTER_HOST": "localhost", "SPARK_MASTER": "yarn"}, ("yarn", "")),  # set: kept
        ({"SPARK_CLUSTER_HOST": "localhost", "SPARK_REMOTE": "sc://connect:15002"}, ("", "sc://connect:15002")),
        ({"SPARK_CONNECT_HOST": "localhost"}, ("", "sc://localhost:15002")),  # the connect profile's server resolves
        ({"SPARK_CONNECT_HOST": "localhost", "SPARK_CLUSTER_HOST": "localhost"}, ("", "sc://localhost:15002")),
        ({"SPARK_CONNECT_HOST": "localhost", "SPARK_MASTER": "local[2]"}, ("local[2]", "")),  # set: kept
    ],
)
def test_the_code_server_uses_the_spark_or_connect_profile_when_it_runs(compose, env, expected):
    """(SPARK_MASTER, SPARK_REMOTE) as the code server's command sees them."""
    user_code = compose["services"]["user_code"]
    script = user_code["entrypoint"][-1].replace("/opt/crypto_assets/", "")
    for name in ("SPARK_MASTER", "SPARK_REMOTE"):  # empty unless the user sets them
        assert user_code["environment"][name] == f"${{{name}:-}}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_")}
    shown = subprocess.run(
        ["sh", str(REPO / script), "sh", "-c", 'printf "%s\\n%s" "$SPARK_MASTER" "$SPARK_REMOTE"'],
        env={**clean, "SPARK_CONNECT_HOST": ABSENT, "SPARK_CLUSTER_HOST": ABSENT, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert tuple(shown.stdout.split("\n")) == expected


CONNECT_CLIENT = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
print(*spark.sql("SELECT current_timezone(), 6 * 7").collect()[0])
spark.stop()
"""


def test_the_connect_profiles_server_command_serves_sessions_in_utc(compose, tmp_path):
    """The compose file's Spark Connect command, with its defaults, run from the pyspark wheel here
    (on a free port of 127.0.0.1 instead of 15002 on every interface), its JVM in another time zone."""
    port = free_port()
    command = [
        re.sub(r"\$\{[A-Z_]+:-(.*)\}", r"\1", part).replace("port=15002", f"port={port}")
        for part in compose["services"]["spark-connect"]["command"]
    ]
    assert f"spark.connect.grpc.binding.port={port}" in command
    command[1:1] = ["--conf", "spark.connect.grpc.binding.address=127.0.0.1"]
    command[0] = str(spark_home() / "bin" / command[0])
    with running(
        command,
        port,
        "Spark Connect server",
        tmp_path / "connect.log",
        spark_env({"TZ": "Pacific/Auckland"}),
        timeout=120,
    ):
        # A client of its own: this process may hold a classic session already.
        asked = subprocess.run(
            [sys.executable, "-c", CONNECT_CLIENT, f"sc://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert asked.returncode == 0, asked.stderr[-2000:]
    assert asked.stdout.split() == ["UTC", "42"]


def test_compose_start_up_order(compose):
    services = compose["services"]

    def depends(name: str) -> dict:
        return services[name]["depends_on"]

    for name in ("user_code", "dagster-webserver", "dagster-daemon"):
        assert depends(name)["postgres"]["condition"] == "service_healthy", name
    assert depends("user_code")["warehouse"]["condition"] == "service_healthy"
    # The webserver and the daemon need the code location up before they load the workspace.
    for name in ("dagster-webserver", "dagster-daemon"):
        assert depends(name)["user_code"]["condition"] == "service_healthy", name
    # Profiled services are optional dependencies: the default `docker compose up` must not need them.
    for optional in ("simulator", "spark-master", "spark-connect"):
        assert depends("user_code")[optional] == {"condition": "service_healthy", "required": False}
    assert depends("spark-worker")["spark-master"]["condition"] == "service_healthy"


def test_compose_environment_is_the_public_contract(compose):
    services = compose["services"]
    user_code = service_env(services["user_code"])
    assert APP_VARIABLES | INSTANCE_VARIABLES <= set(user_code), (APP_VARIABLES | INSTANCE_VARIABLES) - set(user_code)
    # a default the compose file gives is one the setting takes (parse raises ValueError otherwise)
    for name in APP_VARIABLES:
        default = re.fullmatch(r"\$\{" + name + r":-(.+)\}", user_code[name])
        if default:
            BY_NAME[name].parse(default.group(1))
    for name in ("dagster-webserver", "dagster-daemon"):
        env = service_env(services[name])
        assert INSTANCE_VARIABLES <= set(env), name
    for name in ("user_code", "dagster-webserver", "dagster-daemon"):
        assert COMPOSE_TUNING.items() <= service_env(services[name]).items(), name
        assert not (APP_VARIABLES & set(env)), f"{name} gets the application's settings (and secrets)"
    # Every variable deploy/dagster.yaml reads reaches every process that loads the instance
    # (run workers are children of the code server), and compute logs land on the shared volume.
    instance_reads = set(re.findall(r"env: ([A-Z_]+)", (REPO / "deploy" / "dagster.yaml").read_text()))
    assert instance_reads == INSTANCE_VARIABLES, instance_reads ^ INSTANCE_VARIABLES
    for name in ("user_code", "dagster-webserver", "dagster-daemon"):
        logs = service_env(services[name])["DAGSTER_COMPUTE_LOGS_DIR"]
        assert f"dagster-logs:{logs}" in services[name]["volumes"], name
    # The key is passed through from .env, never written into the compose file.
    assert user_code["COINGECKO_API_KEY"] == "${COINGECKO_API_KEY:-}"


def test_every_compose_variable_is_documented_in_env_example():
    documented = env_example()
    used = compose_variables((REPO / "docker-compose.yml").read_text())
    assert used, "the compose file takes nothing from .env?"
    assert used <= set(documented), f"undocumented in .env.example: {sorted(used - set(documented))}"
    assert APP_VARIABLES <= set(documented), APP_VARIABLES - set(documented)
    # Settings the package parses without a fallback for an empty string need a value.
    for name in ("CRYPTO_PARTITIONS_START", "CRYPTO_MAX_HOURS_PER_RUN", "DAGSTER_POSTGRES_PASSWORD"):
        assert documented[name], name


def test_dockerfiles_install_java_odbc_and_the_package_without_secrets():
    user_code = (REPO / "Dockerfile").read_text()
    dagster = (REPO / "docker" / "Dockerfile.dagster").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", user_code, re.M)
    assert re.search(r"^FROM python:3\.\d+-slim", dagster, re.M)
    assert re.search(r"openjdk-(1[7-9]|2\d)-jre-headless", user_code)
    for package in ("unixodbc", "libsqliteodbc", "odbc-postgresql", "tdsodbc", "odbc-mariadb"):
        assert re.search(rf"\b{package}\b", user_code), package
    # Microsoft's driver is an opt-in build argument (its EULA), off by default.
    assert re.search(r"^ARG INSTALL_MSODBC18=false$", user_code, re.M)
    assert "msodbcsql18" in user_code
    # the production image runs every Spark mode, Spark Connect's client included
    assert "pip install" in user_code and "'.[deploy,spark-connect]'" in user_code
    assert "o['spark-connect']" in user_code
    for text in (user_code, dagster):
        assert "deploy/dagster.yaml" in text
        for line in text.splitlines():
            if re.match(r"^\s*(ENV|ARG)\b", line):
                assert not re.search(r"(KEY|PASSWORD|PWD|SECRET|TOKEN)", line, re.I), line
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".venv" in ignored and "data" in ignored


def test_instance_and_workspace_files():
    instance = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    db = instance["storage"]["postgres"]["postgres_db"]
    assert {key: db[key] for key in ("hostname", "port", "username", "password", "db_name")} == {
        "hostname": {"env": "DAGSTER_POSTGRES_HOST"}, "port": {"env": "DAGSTER_POSTGRES_PORT"},
        "username": {"env": "DAGSTER_POSTGRES_USER"}, "password": {"env": "DAGSTER_POSTGRES_PASSWORD"},
        "db_name": {"env": "DAGSTER_POSTGRES_DB"},
    }  # fmt: skip
    coordinator = instance["run_coordinator"]
    assert coordinator["class"] == "QueuedRunCoordinator"
    limits = {limit["key"]: limit for limit in instance["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert instance["concurrency"]["pools"]["default_limit"] == 1  # one CoinGecko capture at a time
    assert limits["dagster/partition"] == {
        "key": "dagster/partition",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    }
    assert instance["run_retries"]["enabled"] is True
    assert instance["run_retries"]["retry_on_asset_or_op_failure"] is False
    assert instance["run_monitoring"]["enabled"] is True
    assert instance["telemetry"]["enabled"] is False
    workspace = yaml.safe_load((REPO / "deploy" / "workspace.yaml").read_text())
    assert workspace == {"load_from": [{"grpc_server": {"host": "user_code", "port": 4000, "location_name": LOCATION}}]}


# --------------------------------------------------------------------------------------------
# 2. The topology as local processes
# --------------------------------------------------------------------------------------------

PG = {
    "host": os.environ.get("PGHOST", "127.0.0.1"),
    "port": os.environ.get("PGPORT", "5432"),
    "user": os.environ.get("PGUSER", "postgres"),
    "password": os.environ.get("PGPASSWORD", ""),
}
RUN_TIMEOUT = 240  # seconds for both runs, queue included


def pg_connect(dbname: str):
    import psycopg2  # dagster-postgres' own driver (the `deploy` extra)

    return psycopg2.connect(dbname=dbname, connect_timeout=5, **PG)


@pytest.fixture(scope="module")
def dagster_database():
    """A fresh PostgreSQL database for the instance, dropped afterwards. CI must have PostgreSQL."""
    with postgres_database("crypto_deploy") as name:
        yield name


class Processes:
    """Long-running processes, each in its own process group (run workers and Spark's JVM are
    children of the code server), all killed at the end."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        with open(self.log_dir / f"{name}.log", "wb") as log:
            self.started[name] = subprocess.Popen(
                args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def check_alive(self) -> None:
        for name, process in self.started.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}\n{self.logs()}")

    def logs(self, chars: int = 4000) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"----- {path.name} (last {chars} chars) -----\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def stop_all(self) -> None:
        for process in reversed(list(self.started.values())):
            self._signal(process, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.started.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The group may outlive its leader (a run worker, a JVM): kill what is left.
            self._signal(process, signal.SIGKILL)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    @staticmethod
    def _signal(process: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def wait_for(what: str, check, processes: Processes, timeout: float, interval: float = 1.0):
    """Poll `check` until it returns something truthy; fail with every process log on timeout."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        processes.check_alive()
        try:
            result = check()
            if result:
                return result
        except AssertionError:  # a verdict, not "not up yet"
            raise
        except Exception as error:  # not up yet
            last_error = error
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error!r})\n{processes.logs()}"
    )


def graphql(port: int, query: str) -> dict:
    import requests

    response = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=10)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


LOCATION_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
DAEMON_QUERY = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"


def location_loaded(port: int) -> bool:
    entries = graphql(port, LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
    entry = next(entry for entry in entries if entry["name"] == LOCATION)
    if entry["locationOrLoadError"] and entry["locationOrLoadError"]["__typename"] == "PythonError":
        raise AssertionError(f"the code location failed to load: {entry['locationOrLoadError']['message']}")
    return entry["loadStatus"] == "LOADED" and entry["locationOrLoadError"]["__typename"] == "RepositoryLocation"


def daemons_healthy(port: int) -> bool:
    statuses = graphql(port, DAEMON_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
    healthy = {status["daemonType"] for status in statuses if status["healthy"]}
    return {"SCHEDULER", "QUEUED_RUN_COORDINATOR", "MONITORING"} <= healthy


@pytest.fixture(scope="module")
def topology(dagster_database, tmp_path_factory):
    """Code server, daemon and webserver on 127.0.0.1, as docker-compose runs them; two runs of
    one past hour submitted through GraphQL: the whole job, then its Bronze asset alone."""
    from dagster_graphql import DagsterGraphQLClient

    from crypto_assets.simulator import Simulator

    root = tmp_path_factory.mktemp("deployment")
    home, lake, logs, work = (root / name for name in ("dagster_home", "lake", "logs", "work"))
    for folder in (home, lake, logs, work, root / "compute_logs"):
        folder.mkdir()
    # The production instance file, verbatim: only the environment differs from compose.
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    grpc_port, web_port = free_port(), free_port()
    workspace = yaml.safe_load((REPO / "deploy" / "workspace.yaml").read_text())
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=grpc_port)
    (root / "workspace.yaml").write_text(yaml.safe_dump(workspace))

    base_env = {key: value for key, value in os.environ.items() if key not in APP_VARIABLES}
    instance_env = {
        **base_env,
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_HOST": PG["host"],
        "DAGSTER_POSTGRES_PORT": PG["port"],
        "DAGSTER_POSTGRES_USER": PG["user"],
        "DAGSTER_POSTGRES_PASSWORD": PG["password"],
        "DAGSTER_POSTGRES_DB": dagster_database,
        "DAGSTER_COMPUTE_LOGS_DIR": str(root / "compute_logs"),
        "PYTHONUNBUFFERED": "1",
        # as docker-compose.yml gives every Dagster process
        **{name: str(value) for name, value in COMPOSE_TUNING.items()},
    }
    processes = Processes(logs)
    with Simulator(coins=30) as simulator:
        code_env = {
            **instance_env,
            "COINGECKO_BASE_URL": simulator.base_url,
            "COINGECKO_CALLS_PER_MINUTE": "60000",
            "CRYPTO_COINS_LIMIT": "20",
            "CRYPTO_LAKE_ROOT": str(lake),
            "CRYPTO_WAREHOUSE_ODBC": f"DRIVER={{SQLite3}};Database={root / 'wh.sqlite'};BigInt=1",
            "SPARK_MASTER": "local[2]",
        }
        try:
            processes.start(
                "code_server",
                [str(BIN / "dagster"), "api", "grpc", "-m", "crypto_assets.definitions",
                 "-h", "127.0.0.1", "-p", str(grpc_port), "--location-name", LOCATION],
                code_env, work,
            )  # fmt: skip
            health = [str(BIN / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(grpc_port)]
            wait_for(
                "the gRPC code server",
                lambda: subprocess.run(health, env=instance_env, capture_output=True, timeout=30).returncode == 0,
                processes, timeout=120, interval=2,
            )  # fmt: skip
            # The daemon and the webserver would both create the fresh database's tables at the
            # same moment and race on the migrations: create them first, once.
            subprocess.run(
                [str(BIN / "dagster"), "instance", "migrate"],
                env=instance_env,
                cwd=work,
                check=True,
                capture_output=True,
                timeout=120,
            )
            workspace_args = ["-w", str(root / "workspace.yaml")]
            processes.start("daemon", [str(BIN / "dagster-daemon"), "run", *workspace_args], instance_env, work)
            processes.start(
                "webserver",
                [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port), *workspace_args],
                instance_env, work,
            )  # fmt: skip
            wait_for(
                "the webserver to load the code location", lambda: location_loaded(web_port), processes, timeout=90
            )
            wait_for("the daemons' heartbeats", lambda: daemons_healthy(web_port), processes, timeout=90, interval=2)

            client = DagsterGraphQLClient("127.0.0.1", port_number=web_port)
            key = partition_key(current_hour() - HOUR)
            requests_before = len(simulator.requests)
            whole = client.submit_job_execution(JOB, repository_location_name=LOCATION, tags={"dagster/partition": key})
            # Same hour again, right behind it: the partition limit must hold it in the queue.
            bronze = client.submit_job_execution(
                JOB, repository_location_name=LOCATION, tags={"dagster/partition": key}, asset_selection=[BRONZE_KEY.split("/")]
            )  # fmt: skip

            def finished():
                statuses = {run: client.get_run_status(run).value for run in (whole, bronze)}
                if any(status in ("FAILURE", "CANCELED") for status in statuses.values()):
                    raise AssertionError(f"a run did not succeed: {statuses}\n{processes.logs(8000)}")
                return all(status == "SUCCESS" for status in statuses.values())

            started = time.monotonic()
            wait_for("both runs to succeed", finished, processes, timeout=RUN_TIMEOUT, interval=2)
            yield {
                "database": dagster_database, "key": key, "runs": {"whole": whole, "bronze": bronze},
                "lake": lake, "warehouse": root / "wh.sqlite", "api_calls": len(simulator.requests) - requests_before,
                "seconds": time.monotonic() - started, "processes": processes,
            }  # fmt: skip
        finally:
            processes.stop_all()


@pytest.fixture(scope="module")
def storage(topology):
    """What the instance recorded in PostgreSQL, read with SQL (not through Dagster)."""
    connection = pg_connect(topology["database"])
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT run_id, status, start_time, end_time FROM runs")
            runs = {row[0]: {"status": row[1], "start": row[2], "end": row[3]} for row in cursor.fetchall()}
            cursor.execute("SELECT run_id, key, value FROM run_tags")
            for run_id, key, value in cursor.fetchall():
                runs.get(run_id, {}).setdefault("tags", {})[key] = value
            cursor.execute(
                "SELECT run_id, dagster_event_type, asset_key FROM event_logs WHERE dagster_event_type IS NOT NULL ORDER BY id"
            )
            events: dict[str, list] = {}
            for run_id, event_type, asset_key in cursor.fetchall():
                events.setdefault(run_id, []).append((event_type, asset_key))
    finally:
        connection.close()
    return {"runs": runs, "events": events}


def test_runs_went_through_the_queue_and_succeeded(topology, storage):
    runs = storage["runs"]
    for run_id in topology["runs"].values():
        assert runs[run_id]["status"] == "SUCCESS"
        assert runs[run_id]["tags"]["dagster/partition"] == topology["key"]
        types = [event_type for event_type, _ in storage["events"][run_id]]
        # Submitted to the QueuedRunCoordinator (ENQUEUED), taken off the queue and launched by
        # the daemon (STARTING), then executed by a run worker of the code server (START).
        lifecycle = [
            t for t in types if t in ("PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_START", "PIPELINE_SUCCESS")
        ]
        assert lifecycle == ["PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_START", "PIPELINE_SUCCESS"], types


def test_two_runs_of_one_hour_never_overlap(topology, storage):
    whole, bronze = (storage["runs"][topology["runs"][name]] for name in ("whole", "bronze"))
    assert bronze["start"] >= whole["end"], (whole, bronze)


def test_materializations_are_recorded_in_postgres(topology, storage):
    whole = storage["events"][topology["runs"]["whole"]]
    materialized = {asset_key for event_type, asset_key in whole if event_type == "ASSET_MATERIALIZATION"}
    keys = {re.sub(r'[\[\]" ]', "", key).replace(",", "/") for key in materialized}
    assert {table.path for table in ALL_TABLES} <= keys, keys
    assert any(key.startswith("warehouse/") for key in keys), keys
    bronze_only = storage["events"][topology["runs"]["bronze"]]
    assert {asset_key for event_type, asset_key in bronze_only if event_type == "ASSET_MATERIALIZATION"} == {
        '["raw_data", "bronze_coingecko_markets"]'
    }


def test_the_lakehouse_and_the_warehouse_were_written(topology):
    assert topology["api_calls"] > 0, "the code server's runs never reached the simulator"
    for table in ALL_TABLES:
        log = topology["lake"] / table.path / "_delta_log"
        assert log.is_dir() and any(log.glob("*.json")), f"no Delta log for {table.path}"
    with sqlite3.connect(topology["warehouse"]) as warehouse:
        tables = [row[0] for row in warehouse.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        snapshot = [name for name in tables if name.endswith("fact_market_snapshot")]
        assert snapshot, tables
        assert warehouse.execute(f'SELECT COUNT(*) FROM "{snapshot[0]}"').fetchone()[0] > 0


def test_every_local_instance_limits_the_coingecko_pool_and_keeps_a_users_own(tmp_path):
    makefile = (REPO / "Makefile").read_text()
    for target in ("run", "ui"):  # as make demo does (crypto_assets/demo.py)
        body = makefile.split(f"\n{target}: setup\n", 1)[1].split("\n\n", 1)[0]
        assert 'crypto_assets.local_instance "$(DAGSTER_HOME)"' in body, target
    config = ensure_local_instance(tmp_path / "home")
    with DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    config.write_text("telemetry:\n  enabled: false\n")
    ensure_local_instance(tmp_path / "home")
    assert config.read_text() == "telemetry:\n  enabled: false\n"
