"""The Dagster UI in a real browser: the webserver and daemon on 127.0.0.1 against a temporary
instance, headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium),
the simulator in this process. The run is launched by clicking through the UI, queued like any
UI launch, and dequeued by the daemon; it must succeed. Screenshots stay in the test's tmp dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from dagster import DagsterInstance

from crypto_assets.partitions import current_hour, partition_key
from crypto_assets.simulator import Simulator
from services import browser_missing, free_port, headless_chromium
from support import artifacts, settle_hour

EXPECTED_ASSETS = {
    "raw_data/bronze_coingecko_markets",
    "cleaned_data/silver_market_snapshots",
    "cleaned_data/silver_quarantine",
    "aggregated_data/gold_market_overview",
    "aggregated_data/gold_market_distribution",
    "aggregated_data/gold_price_volatility",
    "aggregated_data/gold_market_trends",
    *(f"warehouse/{table}" for table in (
        "dim_coin", "dim_time", "fact_market_snapshot", "fact_market_overview", "fact_market_distribution",
        "fact_price_volatility", "fact_market_trends",
    )),
}  # fmt: skip
RUN_TIMEOUT_SECONDS = 180
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


if browser_missing():
    if os.environ.get("CI"):
        pytest.fail(f"the browser test must run under CI; missing: {browser_missing()}", pytrace=False)
    pytest.skip(f"no headless browser here ({browser_missing()})", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


class Dagster:
    """The webserver and daemon processes, and GraphQL queries against them."""

    def __init__(self, tmp: Path, env: dict[str, str]):
        self.url = f"http://127.0.0.1:{free_port()}"
        self.logs = {name: tmp / f"{name}.log" for name in ("webserver", "daemon")}
        bin_dir = Path(sys.executable).parent
        port = self.url.rsplit(":", 1)[1]
        commands = {
            "webserver": [
                str(bin_dir / "dagster-webserver"),
                "-m",
                "crypto_assets.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                port,
            ],
            "daemon": [str(bin_dir / "dagster-daemon"), "run", "-m", "crypto_assets.definitions"],
        }
        # Both processes would create a fresh instance's SQLite storage at the same moment and
        # race on its migrations: create it once, first.
        with DagsterInstance.from_config(env["DAGSTER_HOME"]):
            pass
        self.processes = {
            name: subprocess.Popen(command, env=env, stdout=self.logs[name].open("w"), stderr=subprocess.STDOUT)
            for name, command in commands.items()
        }

    def graphql(self, query: str, **variables) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=30)
        response.raise_for_status()
        return response.json()["data"]

    def wait_until_loaded(self, timeout: float = 90) -> None:
        query = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus locationOrLoadError { __typename } } } } }"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                assert process.poll() is None, f"{name} exited:\n{self.log_tail(name)}"
            try:
                entries = self.graphql(query)["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    kinds = {e["locationOrLoadError"]["__typename"] for e in entries}
                    assert kinds == {"RepositoryLocation"}, (
                        f"code location failed to load:\n{self.log_tail('webserver')}"
                    )
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise AssertionError(
            f"the webserver did not load the code location in {timeout}s:\n{self.log_tail('webserver')}"
        )

    def log_tail(self, name: str, chars: int = 3000) -> str:
        return self.logs[name].read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def shots() -> Path:
    return artifacts("dagster-ui")


@pytest.fixture(scope="module")
def dagster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with Simulator(coins=30) as sim:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "COINGECKO_BASE_URL": sim.base_url,
            "COINGECKO_CALLS_PER_MINUTE": "60000",
            "CRYPTO_COINS_LIMIT": "10",
            "CRYPTO_LAKE_ROOT": str(tmp / "lake"),
            "CRYPTO_WAREHOUSE_ODBC": f"DRIVER={{SQLite3}};Database={tmp}/wh.sqlite;BigInt=1",
        }
        env.pop("CRYPTO_ALERT_WEBHOOK_URL", None)
        server = Dagster(tmp, env)
        try:
            server.wait_until_loaded()
            server.graphql("mutation { setNuxSeen }")  # no first-visit community dialog over the page
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with headless_chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def open_page(browser, url: str) -> None:
    browser.get(url)
    WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.XPATH, "//*[normalize-space(.)='Catalog']")))


def button(browser, text: str, timeout: float = 30):
    return WebDriverWait(browser, timeout).until(
        EC.element_to_be_clickable((By.XPATH, f"//button[normalize-space(.)='{text}']"))
    )


def test_the_catalog_lists_every_asset_of_the_graph(dagster, browser, shots):
    open_page(browser, f"{dagster.url}/assets")
    link = "//a[contains(@href, '/assets/warehouse/fact_price_volatility')]"
    WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.XPATH, link)))
    hrefs = {a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "a[href*='/assets/']")}
    listed = {href.split("/assets/", 1)[1].split("?")[0] for href in hrefs}
    browser.save_screenshot(str(shots / "catalog.png"))
    assert EXPECTED_ASSETS <= listed, f"not in the UI: {sorted(EXPECTED_ASSETS - listed)}"


def test_materialising_the_current_hour_from_the_ui_succeeds(dagster, browser, shots):
    settle_hour()  # before the dialog opens: it lists the partitions that exist when it does
    open_page(browser, f"{dagster.url}/asset-groups")
    button(browser, "Materialize all…").click()
    dialog = WebDriverWait(browser, 30).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "[role=dialog]")))
    assert f"materialize {len(EXPECTED_ASSETS)} assets" in dialog.text
    # The dialog opens before its partition picker has loaded the partitions: wait for the input.
    partitions = WebDriverWait(dialog, 60).until(
        lambda d: next(
            iter(d.find_elements(By.CSS_SELECTOR, "input[placeholder='No matching partitions'], input[type=text]")),
            None,
        )
    )
    key = partition_key(current_hour())
    partitions.click()
    partitions.send_keys(key, Keys.ENTER)
    launch = button(browser, "Launch 1 run")
    browser.save_screenshot(str(shots / "launch_dialog.png"))
    launch.click()

    run = wait_for_run(dagster, key)
    open_page(browser, f"{dagster.url}/runs/{run['runId']}")
    WebDriverWait(browser, 30).until(
        EC.presence_of_element_located(
            (By.XPATH, "//*[normalize-space(.)='RUN_SUCCESS' or normalize-space(.)='RUN_FAILURE']")
        )
    )
    screenshot = shots / "run.png"
    browser.save_screenshot(str(screenshot))
    print(f"\nscreenshot of the run: {screenshot}")
    assert run["status"] == "SUCCESS", failure_report(dagster, run)
    assert run["tags"].get("dagster/partition") == key

    # Gold's chart is an image on the asset page.
    open_page(browser, f"{dagster.url}/assets/aggregated_data/gold_market_distribution")
    show = WebDriverWait(browser, 30).until(
        EC.presence_of_element_located(
            (By.XPATH, "//tr[.//*[normalize-space(.)='chart']]//a[normalize-space(.)='[Show Markdown]']")
        )
    )
    browser.execute_script("arguments[0].scrollIntoView()", show)
    show.click()
    image = WebDriverWait(browser, 30).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "[role=dialog] img")))
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert browser.execute_script("return arguments[0].naturalWidth", image) > 0
    time.sleep(0.5)  # the dialog fades in: let the screenshot show it opaque
    browser.save_screenshot(str(shots / "gold_chart.png"))


def wait_for_run(dagster: Dagster, key: str) -> dict:
    query = "{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }"
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    run = None
    while time.monotonic() < deadline:
        runs = dagster.graphql(query)["runsOrError"]["results"]
        if runs:
            run = {**runs[0], "tags": {tag["key"]: tag["value"] for tag in runs[0]["tags"]}}
            if run["status"] in TERMINAL:
                return run
        time.sleep(2)
    raise AssertionError(
        f"no finished run of {key} within {RUN_TIMEOUT_SECONDS}s (last: {run}):\n{dagster.log_tail('daemon')}"
    )


def failure_report(dagster: Dagster, run: dict) -> str:
    """The run's error messages, for an assertion that says why."""
    query = """query($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection {
        events { __typename ... on MessageEvent { message level } } } } }"""
    events = dagster.graphql(query, runId=run["runId"])["logsForRun"]["events"]
    errors = [event["message"] for event in events if event.get("level") == "ERROR"]
    return f"run {run['runId']} {run['status']}:\n" + "\n".join(errors[-5:])
