"""The warehouse dashboard (crypto_assets/dashboard): its panels' SQL against the reference run's
warehouse (the numbers are the fact tables'), the same panels on PostgreSQL and MariaDB read as
the read-only role, and the page itself in headless Chromium with a screenshot kept in
data/test-artifacts (the test prints where). The browser part fails rather than skips under CI when Chromium is missing."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pyodbc
import pytest

from crypto_assets import star_schema as star
from crypto_assets.dashboard import labels, quality, queries, reader
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.resources.warehouse import WarehouseError, WarehouseResource
from crypto_assets.resources.warehouse.dialects import DIALECTS
from crypto_assets.tables import GOLD_TABLES, SILVER
from services import browser_missing, free_port, headless_chromium, stop, wait_listening
from support import (
    MARIADB_SERVER,
    POSTGRES_SERVER,
    REFERENCE_COINS,
    REFERENCE_HOURS,
    artifacts,
    mariadb_schemas,
    postgres_database,
    query,
    unavailable,
)

PANELS = ("Market overview over time", "Distribution by tier", "Top movers", "Data quality per hour")
TOP = 5


def panels(connection_string: str, schema: str = reader.SCHEMA, role: str | None = reader.READER_ROLE) -> dict:
    """Every panel's rows, read the way the page reads them."""
    d = reader.dialect_of(connection_string)
    with reader.connect(connection_string, role) as conn:
        latest = reader.fetch(conn, *queries.latest_hour(d, schema))[0]["time_key"]
        return {
            "latest": latest,
            "overview": reader.fetch(conn, *queries.overview(d, schema, 0)),
            "distribution": reader.fetch(conn, *queries.distribution(d, schema, latest)),
            "movers": reader.fetch(conn, *queries.movers(d, schema, latest, TOP)),
            "quality": quality.statuses(reader.fetch(conn, *queries.quality(d, schema, 0))),
        }


def approx(rows: list[dict]) -> list[dict]:
    """Floats compared to 12 digits: the SQLite3 ODBC driver hands REALs over as 15-digit text."""
    return [{k: pytest.approx(v, rel=1e-12) if isinstance(v, float) else v for k, v in row.items()} for row in rows]


@pytest.fixture(scope="module")
def ref(reference_run) -> str:
    return reference_run["odbc"]


# --- the panels' SQL ------------------------------------------------------------------------


def test_panels_show_what_the_fact_tables_hold(ref):
    wh = WarehouseResource(odbc_connection_string=ref)
    got = panels(ref)
    overview = query(
        wh,
        "SELECT o.time_key, t.hour_start, o.coins_tracked, o.total_market_cap, o.total_volume, o.btc_dominance_pct, "
        "o.eth_dominance_pct FROM {fact_market_overview} o JOIN {dim_time} t ON t.time_key = o.time_key ORDER BY 1",
    )
    assert len(overview) == REFERENCE_HOURS
    assert got["latest"] == overview[-1][0]
    names = ("time_key", "hour_start", "coins_tracked", "total_market_cap", "total_volume", "btc_dominance_pct")
    assert [tuple(r[n] for n in names + ("eth_dominance_pct",)) for r in got["overview"]] == overview
    assert {r["coins_tracked"] for r in got["overview"]} == {REFERENCE_COINS}

    tiers = query(
        wh,
        "SELECT market_cap_tier, coin_count, total_market_cap, market_cap_share FROM {fact_market_distribution} "
        "WHERE time_key = ? ORDER BY tier_order",
        got["latest"],
    )
    assert tiers and sum(t[1] for t in tiers) == REFERENCE_COINS
    assert [(r["market_cap_tier"], r["coin_count"], r["total_market_cap"], r["market_cap_share"]) for r in got["distribution"]] == tiers  # fmt: skip

    # The reference hours are history only: no coin has a 24 h return or CoinGecko's own change.
    changes = query(
        wh,
        "SELECT COUNT(*) FROM {fact_market_snapshot} s LEFT JOIN {fact_market_trends} t ON t.time_key = s.time_key "
        "AND t.coin_key = s.coin_key WHERE s.time_key = ? AND COALESCE(t.return_24h_pct, "
        "s.price_change_percentage_24h) IS NOT NULL",
        got["latest"],
    )
    assert len(got["movers"]) == min(changes[0][0], 2 * TOP)

    hours = [f"{star.hour_of_time_key(r[0]):%Y-%m-%d %H:00}" for r in reversed(overview)]
    assert got["quality"] == [{"hour (UTC)": h, "status": "ok", "coins": REFERENCE_COINS, "details": ""} for h in hours]


@pytest.fixture
def altered(ref, tmp_path) -> tuple[str, list[int], dict[int, float]]:
    """A copy of the reference warehouse with known flaws: the middle hour gone, a snapshot row of
    the first hour gone, the last hour's stale coins up, and 24 h changes set in the last hour
    (one coin only with CoinGecko's change, no return of its own)."""
    path = tmp_path / "altered.sqlite"
    shutil.copy(pyodbc_database(ref), path)
    db = sqlite3.connect(path)
    keys = [k for (k,) in db.execute("SELECT time_key FROM crypto_dim_time ORDER BY 1")]
    first, middle, last = keys[0], keys[1], keys[-1]
    for table in (*(f.name for f in star.FACTS), "dim_time"):
        db.execute(f"DELETE FROM crypto_{table} WHERE time_key = ?", (middle,))
    db.execute("DELETE FROM crypto_fact_market_snapshot WHERE time_key = ? AND coin_key = 1", (first,))
    db.execute("UPDATE crypto_fact_market_overview SET stale_coins = 5 WHERE time_key = ?", (last,))
    coins = [k for (k,) in db.execute("SELECT coin_key FROM crypto_fact_market_trends WHERE time_key = ?", (last,))]
    changes = {key: (i - len(coins) / 2) * 1.5 for i, key in enumerate(sorted(coins))}  # falls and rises, one 0
    for key, change in changes.items():
        db.execute(
            "UPDATE crypto_fact_market_trends SET return_24h_pct = ? WHERE time_key = ? AND coin_key = ?",
            (change, last, key),
        )
    reported = coins[0]
    db.execute("UPDATE crypto_fact_market_trends SET return_24h_pct = NULL WHERE time_key = ? AND coin_key = ?", (last, reported))  # fmt: skip
    db.execute(
        "UPDATE crypto_fact_market_snapshot SET price_change_percentage_24h = 99.5 WHERE time_key = ? AND coin_key = ?",
        (last, reported),
    )
    changes[reported] = 99.5
    db.commit()
    db.close()
    return f"DRIVER={{SQLite3}};Database={path};BigInt=1", keys, changes


def pyodbc_database(connection_string: str) -> Path:
    return Path(connection_string.split("Database=", 1)[1].split(";", 1)[0])


def test_movers_and_quality_statuses_on_a_flawed_warehouse(altered):
    odbc, keys, changes = altered
    got = panels(odbc)
    coin_ids = dict(query(WarehouseResource(odbc_connection_string=odbc), "SELECT coin_key, coin_id FROM {dim_coin}"))
    up, down = queries.split_movers(got["movers"], TOP)
    by_change = sorted(changes.items(), key=lambda kv: (-kv[1], coin_ids[kv[0]]))
    assert [(r["coin_id"], r["change_24h_pct"]) for r in up] == [(coin_ids[k], c) for k, c in by_change[:TOP]]
    rising = sorted(changes.items(), key=lambda kv: (kv[1], coin_ids[kv[0]]))
    assert [(r["coin_id"], r["change_24h_pct"]) for r in down] == [(coin_ids[k], c) for k, c in rising[:TOP]]
    assert up[0]["change_24h_pct"] == 99.5 and up[0]["basis"] == "CoinGecko 24h change"
    assert {r["basis"] for r in up[1:] + down} == {"warehouse 24h return"}
    assert all(r["change_24h_pct"] < 0 for r in down) and all(r["current_price"] > 0 for r in up)

    statuses = {r["hour (UTC)"]: r for r in got["quality"]}
    first, middle, last = (f"{star.hour_of_time_key(k):%Y-%m-%d %H:00}" for k in (keys[0], keys[1], keys[-1]))
    assert [r["hour (UTC)"] for r in got["quality"]] == [last, middle, first]  # newest first, the gap filled
    assert statuses[middle]["status"] == "missing" and statuses[middle]["coins"] is None
    assert statuses[first]["status"] == "fail"
    assert f"snapshot holds {REFERENCE_COINS - 1} coins, overview counted {REFERENCE_COINS}" in statuses[first]["details"]  # fmt: skip
    assert statuses[last]["status"] == "warn" and "5 stale coins (25%)" in statuses[last]["details"]
    assert quality.summary(got["quality"]) == {"fail": 1, "missing": 1, "warn": 1, "ok": 0}


def test_sqlite_is_opened_read_only(ref, tmp_path):
    with reader.connect(ref) as conn:
        with pytest.raises(pyodbc.Error, match="readonly"):
            conn.execute(f"DELETE FROM {reader.dialect_of(ref).table(reader.SCHEMA, 'dim_time')}")
    absent = tmp_path / "no such" / "warehouse.sqlite"
    with pytest.raises(WarehouseError, match="cannot open the warehouse"):
        with reader.connect(f"DRIVER={{SQLite3}};Database={absent};BigInt=1"):
            pass
    assert not absent.parent.exists()  # nothing created


@pytest.mark.parametrize("engine", sorted(DIALECTS))
def test_every_engine_gets_the_panels_sql_with_its_own_names(engine):
    d = DIALECTS[engine]
    built = [
        queries.latest_hour(d, "crypto"), queries.overview(d, "crypto", 1), queries.distribution(d, "crypto", 1),
        queries.movers(d, "crypto", 1, TOP), queries.quality(d, "crypto", 1),
    ]  # fmt: skip
    for sql, params in built:
        assert sql.count("?") == len(params)
        assert " LIMIT " not in sql and " TOP " not in sql  # SQL Server has no LIMIT, the others no TOP
    assert d.table("crypto", "fact_market_overview") in built[0][0]
    with pytest.raises(KeyError, match="no column 'nope'"):
        queries.Names(d, "crypto").col("x", star.DIM_TIME, "nope")


def test_numbers_read_as_people_write_them():
    assert [labels.money(v) for v in (3.2994e12, 2.4298e11, 5e6, 12.5, None)] == [
        "$3.30 T", "$242.98 B", "$5.00 M", "$12.50", "–",
    ]  # fmt: skip
    assert [labels.price(v) for v in (102839.523, 1.0000764, 0.00418234, 7.46657e-06)] == [
        "$102,839.52", "$1.00", "$0.004182", "$0.000007467",
    ]  # fmt: skip
    assert (labels.percent(61.7317), labels.percent(-13.5, signed=True), labels.share(0.8579)) == (
        "61.73 %", "-13.50 %", "85.8 %",
    )  # fmt: skip
    assert (labels.count(None), labels.count(20)) == ("–", "20")


def test_failures_never_show_the_password():
    secret = f"pw-{uuid.uuid4().hex[:12]}"
    odbc = f"DRIVER={{PostgreSQL Unicode}};SERVER=127.0.0.1;PORT={free_port()};UID=reader;PWD={secret};DATABASE=x"
    with pytest.raises(WarehouseError) as failure:
        with reader.connect(odbc):
            pass
    assert secret not in str(failure.value) and "PWD=***" in str(failure.value)


# --- the same panels on the server engines, as the reader role ------------------------------------


def load_reference(wh: WarehouseResource, reference_run) -> None:
    """The reference hours loaded from its lake, as its own run loaded them into SQLite."""
    lake = LakehouseResource(root=str(reference_run["lake_root"]))
    start, end = reference_run["window"]
    gold = {table.name: lake.read_window_arrow(table, start, end) for table in GOLD_TABLES}
    wh.load_window(lake.read_window_arrow(SILVER, start, end), gold, start, end)


@pytest.fixture(params=["postgresql", "mariadb"])
def server(request, reference_run):
    """(connection string, schema, reader role) of a server warehouse holding the reference hours;
    the role is this test's own (roles are server-wide), dropped afterwards."""
    role = f"crypto_reader_d{uuid.uuid4().hex[:8]}"
    if request.param == "postgresql":
        with postgres_database("crypto_dash_test") as name:
            odbc = f"{POSTGRES_SERVER};DATABASE={name}"
            load_reference(WarehouseResource(odbc_connection_string=odbc, reader_role=role), reference_run)
            yield odbc, "crypto", role
        admin = pyodbc.connect(POSTGRES_SERVER + ";DATABASE=postgres", autocommit=True)
    else:
        with mariadb_schemas() as name:
            schema = name()
            wh = WarehouseResource(odbc_connection_string=MARIADB_SERVER, schema_name=schema, reader_role=role)
            load_reference(wh, reference_run)
            yield MARIADB_SERVER, schema, role
        admin = pyodbc.connect(MARIADB_SERVER, autocommit=True)
    admin.execute(f"DROP ROLE IF EXISTS {role}")
    admin.close()


def test_server_engines_show_the_same_panels_read_as_the_reader_role(server, ref):
    odbc, schema, role = server
    assert approx(panels(odbc, schema, role)["overview"]) == panels(ref)["overview"]
    on_server, on_sqlite = panels(odbc, schema, role), panels(ref)
    for panel in ("latest", "quality", "movers"):
        assert on_server[panel] == on_sqlite[panel], panel
    assert on_server["distribution"] == approx(on_sqlite["distribution"])
    d = reader.dialect_of(odbc)
    with reader.connect(odbc, role) as conn:
        current = "SELECT current_user" if d.name == "postgresql" else "SELECT CURRENT_ROLE()"
        assert conn.execute(current).fetchone()[0] == role
        with pytest.raises(pyodbc.Error, match="(?i)read.only"):
            conn.execute(f"DELETE FROM {d.table(schema, 'dim_time')}")
    assert reader.reading_as(d, role) == f"read-only as {role}"
    with pytest.raises(WarehouseError, match=f"cannot read as {role}x"):
        with reader.connect(odbc, role + "x"):
            pass


# --- the page in a browser --------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path):
    if browser_missing():
        unavailable(f"no headless browser for the dashboard here ({browser_missing()})")
    with headless_chromium(tmp_path / "chromium-profile", window="1600,2300") as driver:
        yield driver


@contextmanager
def served(odbc: str, tmp_path: Path):
    """``python -m crypto_assets.dashboard`` on a free port against ``odbc``, run from an empty
    folder (nothing may appear there), stopped by its process group's id: (url, process, log)."""
    port = free_port()
    folder = tmp_path / "cwd"
    folder.mkdir()
    log = tmp_path / "dashboard.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "crypto_assets.dashboard", "--port", str(port)],
            cwd=folder, env={**os.environ, "CRYPTO_WAREHOUSE_ODBC": odbc}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_listening(port, process, "the dashboard", timeout=60)
        yield f"http://127.0.0.1:{port}/", process, log
    finally:
        stop(process)
    assert not list(folder.iterdir()), "the dashboard wrote into its working folder"


def show(browser, url: str, process, log: Path, screenshot: Path, ready_text: str) -> str:
    """Open the page, wait until every panel has drawn, save the screenshot; the page's text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.monotonic()
    browser.get(url)

    def ready(driver) -> bool:
        text = driver.find_element(By.TAG_NAME, "body").text
        busy = driver.find_elements(
            By.CSS_SELECTOR, "[data-testid=stSpinner], [data-testid=stStatusWidget], [data-testid=stSkeleton]"
        )
        tables = driver.find_elements(By.CSS_SELECTOR, "[data-testid=stTable]")
        drawn = all(table.find_elements(By.CSS_SELECTOR, "tbody tr") for table in tables)
        return all(p in text for p in (*PANELS, ready_text)) and not busy and drawn

    try:
        WebDriverWait(browser, 45).until(ready)
        time.sleep(1)  # the charts draw after their data arrives
    finally:
        browser.save_screenshot(str(screenshot))
        print(f"\nscreenshot of the dashboard: {screenshot} (page ready in {time.monotonic() - started:.1f} s)")
    assert process.poll() is None, log.read_text()[-3000:]
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=stException], [data-testid=stAlertContentError]")
    return browser.find_element(By.TAG_NAME, "body").text


def table_rows(browser) -> list[list[list[str]]]:
    """The cells of every st.table on the page, in page order."""
    from selenium.webdriver.common.by import By

    return [
        [
            [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]
        for table in browser.find_elements(By.CSS_SELECTOR, "[data-testid=stTable] table")
    ]


def test_the_dashboard_shows_the_four_panels_in_a_browser(browser, ref, tmp_path):
    from selenium.webdriver.common.by import By

    with served(ref, tmp_path) as (url, process, log):
        body = show(browser, url, process, log, artifacts("dashboard") / "dashboard.png", f"{REFERENCE_HOURS} ok")
        metrics = {
            m.find_element(By.CSS_SELECTOR, "[data-testid=stMetricLabel]").text: m.find_element(
                By.CSS_SELECTOR, "[data-testid=stMetricValue]"
            ).text
            for m in browser.find_elements(By.CSS_SELECTOR, "[data-testid=stMetric]")
        }
        charts = browser.find_elements(By.CSS_SELECTOR, "[data-testid=stVegaLiteChart]")
        tiers, hours = table_rows(browser)

    got = panels(ref)
    last = got["overview"][-1]
    assert metrics == {
        "Total market cap": labels.money(last["total_market_cap"]),
        "24 h volume": labels.money(last["total_volume"]),
        "BTC dominance": labels.percent(last["btc_dominance_pct"]),
        "Coins tracked": str(REFERENCE_COINS),
    }
    assert len(charts) == 4  # 3 lines, 1 bar
    assert [(t[0], int(t[1])) for t in tiers] == [(r["market_cap_tier"], r["coin_count"]) for r in got["distribution"]]
    assert [h[:3] for h in hours] == [[r["hour (UTC)"], "ok", str(REFERENCE_COINS)] for r in got["quality"]]
    assert "No 24 h change is known for this hour yet" in body  # history-only hours: no movers
    assert "SQLite file opened read-only" in body


def test_the_dashboard_shows_movers_and_flawed_hours_never_the_password(browser, altered, tmp_path):
    odbc, keys, changes = altered
    secret = f"pw-{uuid.uuid4().hex[:12]}"  # the SQLite3 driver ignores PWD: the page must hide it all the same
    with served(f"{odbc};PWD={secret}", tmp_path) as (url, process, log):
        body = show(browser, url, process, log, artifacts("dashboard-flawed") / "dashboard-flawed.png", "1 missing")
        source = browser.page_source
        tiers, rises, falls, hours = table_rows(browser)

    assert secret not in source and "PWD=***" in body
    up, down = queries.split_movers(panels(odbc)["movers"], TOP)
    assert [r[3] for r in rises] == [labels.percent(m["change_24h_pct"], signed=True) for m in up]
    assert rises[0][3] == "+99.50 %" and rises[0][4] == "CoinGecko 24h change"
    assert [r[0] for r in falls] == [f"{m['symbol'].upper()} · {m['name']}" for m in down]
    assert len(tiers) == 2 and [h[1:3] for h in hours] == [
        ["warn", f"{REFERENCE_COINS}"],
        ["missing", "–"],
        ["fail", f"{REFERENCE_COINS}"],
    ]
    assert [r[2] for r in rises] == [labels.price(m["current_price"]) for m in up]
