"""Real servers the tests start on 127.0.0.1 with free ports and stop by pid: moto's S3 server and
Azurite (object stores delta-rs and obstore write to), and Spark's own master, worker and Spark
Connect server from the pyspark wheel. Installed by `make setup` (dev dependencies; Azurite by
npm into .tools/node)."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AZURITE = REPO / ".tools" / "node" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
S3_KEYS = {
    "AWS_ACCESS_KEY_ID": "test-access-key",
    "AWS_SECRET_ACCESS_KEY": "test-secret-key-9f8e7d",
    "AWS_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} not listening on {port} after {timeout} s")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group by pid, SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def running(command: list[str], port: int, what: str, log: Path, env: dict | None = None, timeout: float = 60):
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_listening(port, process, what, timeout)
        yield process
    finally:
        stop(process)


# --- S3 (moto) ----------------------------------------------------------------------------------


@contextmanager
def s3_server(log_dir: Path, checks_credentials: bool = False):
    """moto's S3 server: yields the environment that points delta-rs and obstore at it. One that
    ``checks_credentials`` knows no access key at all (moto's IAM starts empty), so it refuses
    every request as a store refuses wrong credentials."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"} if checks_credentials else None
    with running(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        port,
        "moto S3 server",
        log_dir / f"moto{'-auth' if checks_credentials else ''}.log",
        env=env,
    ):
        yield {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true", **S3_KEYS}


def create_bucket(env: dict, bucket: str) -> None:
    request = urllib.request.Request(f"{env['AWS_ENDPOINT_URL']}/{bucket}", method="PUT", data=b"")
    urllib.request.urlopen(request, timeout=10).close()


# --- Azure Blob (Azurite) -----------------------------------------------------------------------


@contextmanager
def azurite(log_dir: Path):
    """Azurite's blob service: yields the environment for its emulator account."""
    if not AZURITE.exists():
        raise FileNotFoundError(f"{AZURITE} is missing: `make setup` installs Azurite with npm")
    port = free_port()
    data = log_dir / "azurite-data"
    data.mkdir(exist_ok=True)
    command = [
        str(AZURITE),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(data),
        "--skipApiVersionCheck",
        "--loose",
        "--silent",
    ]
    with running(command, port, "Azurite", log_dir / "azurite.log"):
        yield {
            "AZURE_STORAGE_USE_EMULATOR": "true",
            "AZURE_STORAGE_ACCOUNT_NAME": AZURITE_ACCOUNT,
            "AZURITE_BLOB_STORAGE_URL": f"http://127.0.0.1:{port}",
        }


def create_container(env: dict, name: str) -> None:
    """PUT ?restype=container, signed with the emulator's SharedKey (obstore cannot create one)."""
    endpoint = f"{env['AZURITE_BLOB_STORAGE_URL']}/{AZURITE_ACCOUNT}"
    headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
    canonical = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
    resource = f"/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{name}\nrestype:container"
    to_sign = "\n".join(["PUT", "", "", "", "", "", "", "", "", "", "", "", canonical + resource])
    signature = base64.b64encode(hmac.new(base64.b64decode(AZURITE_KEY), to_sign.encode(), hashlib.sha256).digest())
    headers["Authorization"] = f"SharedKey {AZURITE_ACCOUNT}:{signature.decode()}"
    request = urllib.request.Request(f"{endpoint}/{name}?restype=container", method="PUT", headers=headers)
    request.add_header("Content-Length", "0")
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as error:
        if error.code != 409:  # exists already
            raise


# --- Spark ----------------------------------------------------------------------------------


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def spark_env(extra: dict | None = None) -> dict:
    return {
        **os.environ,
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        **(extra or {}),
    }


@contextmanager
def spark_cluster(log_dir: Path, env: dict | None = None):
    """A standalone master and one worker from the pyspark wheel: yields the master URL."""
    home, env = (
        spark_home(),
        spark_env({**(env or {}), "SPARK_DAEMON_MEMORY": "256m"}),
    )  # the daemons, not the executors
    port, master_ui, worker_ui = free_port(), free_port(), free_port()
    master = [
        str(home / "bin" / "spark-class"),
        "org.apache.spark.deploy.master.Master",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--webui-port",
        str(master_ui),
    ]
    url = f"spark://127.0.0.1:{port}"
    with running(master, port, "Spark master", log_dir / "spark-master.log", env):
        worker = [
            str(home / "bin" / "spark-class"),
            "org.apache.spark.deploy.worker.Worker",
            url,
            "--host",
            "127.0.0.1",
            "--cores",
            "2",
            "--memory",
            "2g",
            "--webui-port",
            str(worker_ui),
            "--work-dir",
            str(log_dir / "spark-work"),
        ]
        with running(worker, worker_ui, "Spark worker", log_dir / "spark-worker.log", env):
            deadline = time.monotonic() + 60
            while not _workers_alive(master_ui):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Spark worker did not register with the master in 60 s")
                time.sleep(0.5)
            yield url


def _workers_alive(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as response:
            return json.load(response).get("aliveworkers", 0)
    except OSError:
        return 0


@contextmanager
def spark_connect_server(log_dir: Path, env: dict | None = None):
    """A Spark Connect server (local[2]) from the pyspark wheel: yields its sc:// URL."""
    home, port = spark_home(), free_port()
    command = [
        str(home / "sbin" / "start-connect-server.sh"),
        "--wait",
        "--master",
        "local[2]",
        "--driver-memory",
        "1g",
        "--conf",
        "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf",
        f"spark.connect.grpc.binding.port={port}",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        "spark.sql.session.timeZone=UTC",
    ]
    with running(command, port, "Spark Connect server", log_dir / "spark-connect.log", spark_env(env), timeout=120):
        yield f"sc://127.0.0.1:{port}"


# --- headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) --------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


def browser_missing() -> str | None:
    """What of the headless browser is missing here, or None."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    return ", ".join(missing) or None


@contextmanager
def headless_chromium(profile: Path, window: str = "1600,1400"):
    """A Selenium driver of headless Chromium with its own profile folder, quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--window-size={window}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
