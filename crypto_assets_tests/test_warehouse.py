"""The SQL sink against real databases: a SQLite file through the SQLite3 ODBC driver,
PostgreSQL through psqlODBC and MariaDB through MariaDB Connector/ODBC (the servers must answer
under CI; skipped elsewhere when they do not).
SQL Server cannot run here: its T-SQL is checked as text, produced by the same code path."""

from __future__ import annotations

import itertools
import os
import re
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyodbc
import pytest

from crypto_assets import star_schema as star
from crypto_assets.resources.warehouse import WarehouseError, WarehouseResource
from crypto_assets.tables import GOLD_DISTRIBUTION, GOLD_OVERVIEW, GOLD_TRENDS, GOLD_VOLATILITY, SILVER
from support import MARIADB_SERVER, POSTGRES_SERVER, dump, mariadb_schemas, postgres_database, query

H0 = datetime(2026, 3, 2, 0, tzinfo=timezone.utc)  # a Monday


def hour(i: int) -> datetime:
    return H0 + timedelta(hours=i)


# --- input tables shaped like tables.py ---------------------------------------------------

COINS = {  # coin_id: (symbol, name) before, (symbol, name) after the rename hour, rename hour
    "bitcoin": (("btc", "Bitcoin"), None, None),
    "ethereum": (("eth", "Ethereum"), None, None),
    "binancecoin": (("bnb", "Binance Coin"), ("bnb", "BNB"), 3),
    "usd-coin": (("usdc", "USD Coin"), ("usdc", "USDC"), 4),
}


def identity(coin_id: str, h: int) -> tuple[str, str]:
    before, after, at = COINS[coin_id]
    return after if at is not None and h >= at else before


def silver(hours, coins=COINS, names=identity, **extra) -> pa.Table:
    records = []
    for h, (n, coin_id) in itertools.product(hours, enumerate(sorted(coins))):
        symbol, name = names(coin_id, h)
        price = 100.0 * (n + 1) + h
        records.append(
            {
                "coin_id": coin_id,
                "symbol": symbol,
                "name": name,
                "vs_currency": "usd",
                "market_cap_rank": n + 1,
                "current_price": price,
                "market_cap": price * 1e9,
                "total_volume": price * 1e7,
                "high_24h": price + 1,
                "low_24h": price - 1,
                "price_change_percentage_24h": (h % 3) - 1.0,
                "circulating_supply": 1e6,
                "max_supply": None,
                "is_high_volume": n % 2 == 0,
                "is_stale": False,
                "source": "snapshot",
                "last_updated": hour(h),
                "ingest_hour": hour(h),
                "ingest_date": hour(h).date().isoformat(),
                "capture_id": f"c{h}",
                "page": 1,
                "position": n,
                "ingested_at": hour(h) + timedelta(minutes=5),
            }
        )
    table = pa.Table.from_pylist(records, schema=SILVER.arrow_schema)
    for name, values in extra.items():
        table = table.append_column(name, pa.array(values(table)))
    return table


def gold(snapshot: pa.Table) -> dict[str, pa.Table]:
    rows = snapshot.to_pylist()
    per_hour = {r["ingest_hour"]: [x for x in rows if x["ingest_hour"] == r["ingest_hour"]] for r in rows}
    window = {"ingest_hour": None, "ingest_date": None}
    overview, distribution, volatility, trends = [], [], [], []
    for h, coins in per_hour.items():
        common = {"ingest_hour": h, "ingest_date": h.date().isoformat()}
        total = sum(c["market_cap"] for c in coins)
        overview.append(
            {
                **window,
                **common,
                "vs_currency": "usd",
                "coins_tracked": len(coins),
                "total_market_cap": total,
                "total_volume": sum(c["total_volume"] for c in coins),
                "advancers": 1,
                "decliners": 1,
                "unchanged": 0,
            }
        )
        distribution.append(
            {
                **common,
                "market_cap_tier": "mega",
                "tier_order": 1,
                "coin_count": len(coins),
                "total_market_cap": total,
                "market_cap_share": 1.0,
            }
        )
        for c in coins:
            base = {**common, "coin_id": c["coin_id"], "symbol": c["symbol"]}
            volatility.append(
                {
                    **base,
                    "observations": 1,
                    "avg_price": c["current_price"],
                    "min_price": c["current_price"],
                    "max_price": c["current_price"],
                    "price_range_pct": 0.0,
                }
            )
            trends.append(
                {
                    **base,
                    "current_price": c["current_price"],
                    "ma_24h": c["current_price"],
                    "trend": "up",
                    "market_cap_rank": c["market_cap_rank"],
                    "rank_change_24h": 0,
                }
            )
    return {
        GOLD_OVERVIEW.name: pa.Table.from_pylist(overview, schema=GOLD_OVERVIEW.arrow_schema),
        GOLD_DISTRIBUTION.name: pa.Table.from_pylist(distribution, schema=GOLD_DISTRIBUTION.arrow_schema),
        GOLD_VOLATILITY.name: pa.Table.from_pylist(volatility, schema=GOLD_VOLATILITY.arrow_schema),
        GOLD_TRENDS.name: pa.Table.from_pylist(trends, schema=GOLD_TRENDS.arrow_schema),
    }


def load(wh: WarehouseResource, first: int, last: int, **kwargs) -> dict[str, int]:
    """Load hours [first, last) of the standard market."""
    snapshot = silver(range(first, last), **kwargs)
    return wh.load_window(snapshot, gold(snapshot), hour(first), hour(last))


# --- backends -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_database():
    """A throw-away PostgreSQL database (and reader role) for this module."""
    role = f"crypto_reader_t{os.getpid()}"
    with postgres_database("crypto_wh_test") as name:
        yield name, role
    # Roles are server-wide and own objects in the database: drop them once it is gone.
    admin = pyodbc.connect(POSTGRES_SERVER + ";DATABASE=postgres", autocommit=True)
    for created in (role, "crypto_wh_noperm", "crypto_wh_maker"):
        admin.execute(f"DROP ROLE IF EXISTS {created}")
    admin.close()


def login_role(database: str, role: str, grant: str) -> str:
    """A fresh login role with one statement of rights; the connection string to use it."""
    admin = pyodbc.connect(POSTGRES_SERVER + f";DATABASE={database}", autocommit=True)
    admin.execute(f"DROP ROLE IF EXISTS {role}")
    admin.execute(f"CREATE ROLE {role} LOGIN")
    admin.execute(grant)
    admin.close()
    return POSTGRES_SERVER.replace("UID=postgres", f"UID={role}") + f";DATABASE={database}"


SCHEMAS = itertools.count()


@pytest.fixture(scope="module")
def mariadb():
    with mariadb_schemas() as name:
        yield name


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def wh(request, tmp_path) -> WarehouseResource:
    if request.param == "sqlite":
        return WarehouseResource(odbc_connection_string=f"DRIVER={{SQLite3}};Database={tmp_path}/wh.sqlite;BigInt=1")
    if request.param == "mariadb":
        return WarehouseResource(
            odbc_connection_string=MARIADB_SERVER,
            schema_name=request.getfixturevalue("mariadb")(),
            reader_role=f"crypto_reader_t{os.getpid()}",
        )
    database, role = request.getfixturevalue("pg_database")
    return WarehouseResource(
        odbc_connection_string=f"{POSTGRES_SERVER};DATABASE={database}",
        schema_name=f"crypto_t{next(SCHEMAS)}",
        reader_role=role,
    )


def facts_with_versions(wh: WarehouseResource, fact: str = "fact_market_snapshot") -> list[tuple]:
    """(time_key, coin_id, symbol, name, valid_from, valid_to) of every coin fact row."""
    return query(
        wh,
        f"SELECT f.time_key, c.coin_id, c.symbol, c.name, c.valid_from, c.valid_to FROM {{{fact}}} f "
        "JOIN {dim_coin} c ON c.coin_key = f.coin_key ORDER BY f.time_key, c.coin_id",
    )


def assert_versions_valid(wh: WarehouseResource, names=identity) -> None:
    """Every coin fact points at a version valid in its hour, carrying that hour's name."""
    for fact in ("fact_market_snapshot", "fact_price_volatility", "fact_market_trends"):
        rows = facts_with_versions(wh, fact)
        assert rows
        for key, coin_id, symbol, name, valid_from, valid_to in rows:
            at = star.hour_of_time_key(key)
            assert valid_from <= at and (valid_to is None or at < valid_to), (fact, key, coin_id)
            h = int((at - hour(0).replace(tzinfo=None)).total_seconds() // 3600)
            assert (symbol, name) == names(coin_id, h), (fact, key, coin_id)


# --- tests --------------------------------------------------------------------------------


def test_schema_created_and_loaded(wh):
    written = load(wh, 0, 3)
    assert written["dim_time"] == 3 and written["dim_coin"] == 4
    assert written["fact_market_snapshot"] == 12 and written["fact_market_overview"] == 3
    counts = wh.table_counts()
    assert set(counts) == {t.name for t in star.STAR_TABLES}
    assert counts["fact_market_trends"] == 12 and counts["dim_time"] == 3
    assert wh.window_counts(hour(0), hour(3))["fact_market_distribution"] == 3
    assert wh.window_counts(hour(3), hour(5))["fact_market_snapshot"] == 0
    assert query(wh, "SELECT version FROM {schema_version}") == [(1,)]
    assert query(wh, "SELECT time_key, date, hour, weekday, week, month, quarter, year FROM {dim_time} ORDER BY 1")[1][
        :1
    ] == (2026030201,)
    row = query(wh, "SELECT weekday, week, quarter, hour FROM {dim_time} WHERE time_key = ?", 2026030201)[0]
    assert row == (1, 10, 1, 1)
    price = query(
        wh,
        "SELECT current_price, is_high_volume FROM {fact_market_snapshot} f JOIN {dim_coin} c "
        "ON c.coin_key = f.coin_key WHERE c.coin_id = 'bitcoin' AND time_key = 2026030202",
    )
    assert price == [(202.0, False)]  # bitcoin is the second coin id
    assert len(query(wh, "SELECT * FROM {v_daily_coin_summary}")) == 4


def native_comments(wh: WarehouseResource) -> dict[tuple[str, str], str]:
    """(relation, column or '') -> the engine's own comment, read from its catalogue."""
    if wh.sql_dialect().name == "postgresql":
        sql = (
            "SELECT c.relname, COALESCE(a.attname, ''), d.description FROM pg_description d "
            "JOIN pg_class c ON c.oid = d.objoid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid AND d.objsubid > 0 "
            "WHERE n.nspname = ?"
        )
    else:  # MariaDB: tables and their columns (a view has no comments)
        sql = (
            "SELECT table_name, '', table_comment FROM information_schema.tables WHERE table_schema = ? "
            "AND table_type = 'BASE TABLE' UNION ALL SELECT c.table_name, c.column_name, c.column_comment "
            "FROM information_schema.columns c JOIN information_schema.tables t ON t.table_schema = c.table_schema "
            "AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE' WHERE c.table_schema = ?"
        )
    params = [wh.schema_name] * sql.count("?")
    return {(relation, column): text for relation, column, text in query(wh, sql, *params)}


def test_every_table_view_and_column_is_described(wh):
    load(wh, 0, 1)
    docs = star.documentation()
    assert sorted(query(wh, "SELECT relation_name, column_name, description FROM {column_docs}")) == sorted(docs)
    described = {(relation, column) for relation, column, _ in docs if column}
    loader = wh.loader()
    conn = pyodbc.connect(wh.odbc_connection_string)
    try:
        in_catalogue = {(r, c) for r, columns in loader.existing_columns(conn).items() for c in columns}
    finally:
        conn.close()
    assert in_catalogue == described  # nothing the engine holds goes undescribed, views included
    if wh.sql_dialect().name != "sqlite":
        views = {v.name for v in star.VIEWS}
        native = native_comments(wh)
        expected = {
            (relation, column): text
            for relation, column, text in docs
            if wh.sql_dialect().name == "postgresql" or relation not in views
        }
        assert native == expected


def test_changed_descriptions_are_brought_up_to_date(wh):
    load(wh, 0, 1)
    docs = wh.sql_dialect().table(wh.schema_name, "column_docs")
    conn = pyodbc.connect(wh.odbc_connection_string)
    conn.execute(f"UPDATE {docs} SET description = 'stale' WHERE column_name = 'coin_key'")
    conn.execute(f"DELETE FROM {docs} WHERE relation_name = 'dim_time'")
    conn.commit()
    conn.close()
    load(wh, 1, 2)
    assert sorted(query(wh, "SELECT relation_name, column_name, description FROM {column_docs}")) == sorted(
        star.documentation()
    )


def test_reload_same_window_changes_nothing(wh):
    load(wh, 0, 6)
    first = dump(wh)
    for _ in range(2):
        written = load(wh, 0, 6)
        assert written["dim_time"] == 0 and written["dim_coin"] == 0
        assert dump(wh) == first
    load(wh, 6, 8)
    second = dump(wh)
    load(wh, 2, 5)  # a sub-window reloaded after a later one
    assert dump(wh) == second


def test_scd2_rename_in_order(wh):
    for start in range(0, 6, 2):
        load(wh, start, start + 2)
    versions = query(
        wh, "SELECT coin_key, coin_id, name, valid_from, valid_to, is_current FROM {dim_coin} ORDER BY coin_key"
    )
    assert [(k, c, n) for k, c, n, *_ in versions] == [
        (1, "binancecoin", "Binance Coin"),
        (2, "bitcoin", "Bitcoin"),
        (3, "ethereum", "Ethereum"),
        (4, "usd-coin", "USD Coin"),
        (5, "binancecoin", "BNB"),
        (6, "usd-coin", "USDC"),
    ]
    naive = {k: (vf, vt, bool(cur)) for k, _, _, vf, vt, cur in versions}
    assert naive[1] == (hour(0).replace(tzinfo=None), hour(3).replace(tzinfo=None), False)
    assert naive[5] == (hour(3).replace(tzinfo=None), None, True)
    assert_versions_valid(wh)
    latest = query(wh, "SELECT coin_id, name, time_key FROM {v_latest_market} ORDER BY coin_id")
    assert latest[0] == ("binancecoin", "BNB", 2026030205) and latest[3] == ("usd-coin", "USDC", 2026030205)
    seen = query(wh, "SELECT DISTINCT first_seen, last_seen FROM {dim_coin} WHERE coin_id = 'usd-coin'")
    assert seen == [(hour(0).replace(tzinfo=None), hour(5).replace(tzinfo=None))]


def test_scd2_out_of_order_windows(wh):
    load(wh, 4, 6)  # "BNB" and "USDC" first
    load(wh, 0, 2)  # then the old names
    load(wh, 2, 4)  # then the hours in between: bnb changes at 3 inside this window
    assert_versions_valid(wh)
    assert len(query(wh, "SELECT * FROM {dim_coin}")) == 6
    in_order = facts_with_versions(wh)
    load(wh, 0, 6)  # reloading the whole range changes nothing
    assert facts_with_versions(wh) == in_order


def test_scd2_temporary_rename_loaded_late_splits_the_version(wh):
    def renamed_in_hour_2_3(coin_id, h):
        return ("eth", "Ether (temporary)") if coin_id == "ethereum" and h in (2, 3) else identity(coin_id, h)

    load(wh, 0, 2)
    load(wh, 4, 6)
    load(wh, 2, 4, names=renamed_in_hour_2_3)  # lands inside ethereum's loaded version
    assert_versions_valid(wh, renamed_in_hour_2_3)
    eth = query(
        wh,
        "SELECT name, valid_from, valid_to, is_current FROM {dim_coin} WHERE coin_id = 'ethereum' ORDER BY valid_from",
    )
    assert [(n, bool(c)) for n, _, _, c in eth] == [
        ("Ethereum", False),
        ("Ether (temporary)", False),
        ("Ethereum", True),
    ]
    before = dump(wh)
    load(wh, 2, 4, names=renamed_in_hour_2_3)
    assert dump(wh) == before
    assert set(wh.orphan_counts(hour(0), hour(6)).values()) == {0}


def test_scd2_corrected_reload(wh):
    def wrong(coin_id, h):
        return ("eth", "Etherium") if coin_id == "ethereum" and h < 4 else identity(coin_id, h)

    load(wh, 2, 4, names=wrong)  # a bad name, later corrected upstream
    load(wh, 4, 6)
    load(wh, 2, 4)  # the corrected hours: the version that starts there is renamed in place
    assert_versions_valid(wh)
    names = query(wh, "SELECT DISTINCT name FROM {dim_coin} WHERE coin_id = 'ethereum'")
    assert names == [("Ethereum",)]


def test_foreign_keys_enforced_and_no_orphans(wh):
    load(wh, 0, 4)
    assert set(wh.orphan_counts(hour(0), hour(4)).values()) == {0}
    d = wh.sql_dialect()
    conn = pyodbc.connect(wh.odbc_connection_string, autocommit=True)
    if d.name == "sqlite":  # as the loader does on every connection
        conn.execute("PRAGMA foreign_keys = ON")
    with pytest.raises(pyodbc.Error):
        conn.execute(f"INSERT INTO {d.table(wh.schema_name, 'fact_market_overview')} (time_key) VALUES (1999010100)")
    conn.close()


HOSTILE = {
    "bitcoin": ("btc'--", "'); DROP TABLE crypto_dim_coin;--"),
    "ethereum": ('e"th', 'Robert"); DELETE FROM x; -- 🚀'),
    "binancecoin": ("b\\nb", "名前 with ümlauts 🌕🌕"),
    "usd-coin": ("NULL", "L" + "o" * 5000 + 'ng {a,b} \\" NULL'),  # array-literal syntax is data too
}


def test_hostile_names_are_data(wh):
    load(wh, 0, 2, names=lambda coin_id, h: HOSTILE[coin_id])
    stored = dict(query(wh, "SELECT coin_id, name FROM {dim_coin}"))
    assert stored == {c: n for c, (_, n) in HOSTILE.items()}
    symbols = dict(query(wh, "SELECT coin_id, symbol FROM {dim_coin}"))
    assert symbols == {c: s for c, (s, _) in HOSTILE.items()}
    before = dump(wh)
    load(wh, 0, 2, names=lambda coin_id, h: HOSTILE[coin_id])
    assert dump(wh) == before


def test_additive_evolution(wh):
    load(wh, 0, 2)
    snapshot = silver(range(2, 4), new_metric=lambda t: [1.5] * t.num_rows)
    golds = gold(snapshot)
    golds[GOLD_TRENDS.name] = golds[GOLD_TRENDS.name].append_column(
        "rsi_14h", pa.array(range(golds[GOLD_TRENDS.name].num_rows), pa.int32())
    )
    wh.load_window(snapshot, golds, hour(2), hour(4))
    assert query(wh, "SELECT DISTINCT new_metric FROM {fact_market_snapshot} WHERE time_key >= 2026030202") == [(1.5,)]
    assert query(wh, "SELECT COUNT(*) FROM {fact_market_snapshot} WHERE new_metric IS NULL") == [(8,)]
    assert query(wh, "SELECT MAX(rsi_14h) FROM {fact_market_trends}") == [(7,)]
    assert [v for (v,) in query(wh, "SELECT version FROM {schema_version} ORDER BY version")] == [1, 2]
    load(wh, 0, 2)  # older input without the new columns still loads
    assert wh.table_counts()["fact_market_snapshot"] == 16


def test_rollback_keeps_previous_window(wh):
    load(wh, 0, 4)
    before = dump(wh)
    coins = {**COINS, "newcoin": (("new", "New"), None, None)}
    snapshot = silver(
        range(0, 4), coins=coins, names=lambda c, h: ("zzz", "Renamed") if c == "bitcoin" else coins[c][0]
    )
    golds = gold(snapshot)
    trends = golds[GOLD_TRENDS.name]
    golds[GOLD_TRENDS.name] = pa.concat_tables([trends, trends.slice(0, 1)])  # duplicate key: fails late
    with pytest.raises(WarehouseError, match="rolled back"):
        wh.load_window(snapshot, golds, hour(0), hour(4))
    assert dump(wh) == before


def test_a_gold_row_of_a_coin_silver_lacks_names_it_and_writes_nothing(wh):
    load(wh, 0, 2)
    before = dump(wh)
    snapshot = silver(range(2, 4))
    golds = gold(snapshot)
    ghost = golds[GOLD_TRENDS.name].slice(3, 1).to_pylist()[0] | {"coin_id": "ghost-coin"}
    golds[GOLD_TRENDS.name] = pa.concat_tables(
        [golds[GOLD_TRENDS.name], pa.Table.from_pylist([ghost], schema=GOLD_TRENDS.arrow_schema)]
    )
    at = ghost["ingest_hour"].strftime("%Y-%m-%d %H:00")
    with pytest.raises(WarehouseError, match=rf"gold_market_trends: coin 'ghost-coin' at {at} has no dim_coin version"):
        wh.load_window(snapshot, golds, hour(2), hour(4))
    assert dump(wh) == before


def test_rows_outside_window_are_refused(wh):
    snapshot = silver(range(0, 3))
    with pytest.raises(WarehouseError, match="outside the window"):
        wh.load_window(snapshot, {}, hour(0), hour(2))


# --- errors ---------------------------------------------------------------------------------


def test_missing_driver_lists_installed_drivers():
    wh = WarehouseResource(
        odbc_connection_string="DRIVER={ODBC Driver 18 for SQL Server};SERVER=x;UID=sa;PWD=Sup3rSecret!"
    )
    with pytest.raises(WarehouseError) as error:
        wh.table_counts()
    message = str(error.value)
    assert "not installed" in message and "SQLite3" in message and "Sup3rSecret" not in message


def test_unknown_driver_is_a_clear_error():
    with pytest.raises(WarehouseError, match="cannot tell the SQL dialect"):
        WarehouseResource(odbc_connection_string="DRIVER={Oracle 19};PWD=x").sql_dialect()


def test_unreachable_server(pg_database):
    wh = WarehouseResource(
        odbc_connection_string=f"{POSTGRES_SERVER.replace('5432', '1')};DATABASE=x;PWD=hunter2secret"
    )
    with pytest.raises(WarehouseError) as error:
        wh.table_counts()
    message = str(error.value)
    assert "cannot connect" in message and "unreachable" in message
    assert "hunter2secret" not in message and "PWD=***" in message


def test_bad_credentials(pg_database):
    database, _ = pg_database
    conn = POSTGRES_SERVER.replace("UID=postgres", "UID=nobody_here") + f";DATABASE={database};PWD={{pa;ss}}"
    with pytest.raises(WarehouseError) as error:
        WarehouseResource(odbc_connection_string=conn).table_counts()
    message = str(error.value)
    assert "nobody_here" in message and "pa;ss" not in message and "ss}" not in message


def test_permission_error_is_clear(pg_database):
    database, _ = pg_database
    conn = login_role(database, "crypto_wh_noperm", f"REVOKE CREATE ON DATABASE {database} FROM PUBLIC")
    wh = WarehouseResource(odbc_connection_string=conn, schema_name="noperm")
    with pytest.raises(WarehouseError, match="permission denied"):
        load(wh, 0, 1)


def test_reader_role(pg_database, caplog):
    database, role = pg_database
    owner = WarehouseResource(
        odbc_connection_string=f"{POSTGRES_SERVER};DATABASE={database}", schema_name="granted", reader_role=role
    )
    load(owner, 0, 1)
    grants = query(
        owner,
        "SELECT privilege_type FROM information_schema.role_table_grants "
        "WHERE grantee = ? AND table_schema = 'granted' AND table_name = 'dim_coin'",
        role,
    )
    assert grants == [("SELECT",)]
    conn = login_role(database, "crypto_wh_maker", f"GRANT CREATE ON DATABASE {database} TO crypto_wh_maker")
    maker = WarehouseResource(
        odbc_connection_string=conn, schema_name="made", reader_role="crypto_reader_never_created"
    )
    caplog.set_level("INFO", logger="dagster.builtin.crypto_assets.warehouse")
    assert load(maker, 0, 1)["fact_market_snapshot"] == 4  # loads without the right to create roles
    assert "crypto_reader_never_created not set up" in caplog.text


# --- SQL Server: the generated T-SQL ----------------------------------------------------------

MSSQL = "DRIVER={FreeTDS};SERVER=sql.example;PORT=1433;DATABASE=dw;UID=loader;PWD=T0pSecret;TDS_Version=7.4"


def test_tsql_ddl():
    wh = WarehouseResource(odbc_connection_string=MSSQL)
    assert wh.sql_dialect().name == "mssql"
    ddl = "\n".join(wh.ddl_statements())
    assert "IF SCHEMA_ID(N'crypto') IS NULL EXEC(N'CREATE SCHEMA [crypto]');" in ddl
    assert "IF OBJECT_ID(N'[crypto].[dim_coin]', N'U') IS NULL\nCREATE TABLE [crypto].[dim_coin]" in ddl
    assert "[coin_id] nvarchar(200) NOT NULL" in ddl and "[is_current] bit NOT NULL" in ddl
    assert "FOREIGN KEY ([coin_key]) REFERENCES [crypto].[dim_coin] ([coin_key])" in ddl
    assert "CREATE OR ALTER VIEW [crypto].[v_latest_market]" in ddl
    assert "GRANT SELECT ON SCHEMA::[crypto] TO [crypto_reader];" in ddl
    assert "IF NOT EXISTS" not in ddl and '"' not in ddl
    column = "@level1type = N'TABLE', @level1name = N'dim_coin', @level2type = N'COLUMN', @level2name = N'coin_key'"
    assert (
        "EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Surrogate key of this version of the "
        f"coin.', @level0type = N'SCHEMA', @level0name = N'crypto', {column};"
    ) in ddl
    assert "@level1type = N'VIEW', @level1name = N'v_latest_market';" in ddl  # views describe themselves too
    assert ddl.count("sp_addextendedproperty") == len(star.documentation())


class RecordingConnection:
    """Stands in for pyodbc's connection to a SQL Server that is empty: records every statement."""

    def __init__(self):
        self.statements: list[tuple[str, int]] = []
        self.commits = 0

    def cursor(self):
        return self

    def execute(self, sql, *params):
        flat = params[0] if len(params) == 1 and isinstance(params[0], list) else params
        self.statements.append((sql, len(flat)))
        return self

    def fetchall(self):
        return []

    def fetchone(self):
        return (None,)

    def commit(self):
        self.commits += 1

    rollback = close = lambda self: None


def test_tsql_load_path(monkeypatch):
    recorder = RecordingConnection()
    monkeypatch.setattr(pyodbc, "drivers", lambda: ["FreeTDS"])
    monkeypatch.setattr(pyodbc, "connect", lambda *a, **k: recorder)
    snapshot = silver(range(0, 40))  # 160 rows: more than one statement at 2,099 parameters
    wh = WarehouseResource(odbc_connection_string=MSSQL)
    written = wh.load_window(snapshot, gold(snapshot), hour(0), hour(40))
    assert written["fact_market_snapshot"] == 160
    inserts = [
        (sql, n) for sql, n in recorder.statements if sql.startswith("INSERT INTO [crypto].[fact_market_snapshot]")
    ]
    assert len(inserts) == 2 and all(n <= 2100 for _, n in inserts)
    assert inserts[0][0].count("(?") == 2099 // 16 and inserts[0][0].endswith(");")
    assert all(n <= 2100 and sql.count("), (") < 1000 for sql, n in recorder.statements)
    sent = "\n".join(sql for sql, _ in recorder.statements)
    assert "SELECT COUNT(*) FROM [crypto].[dim_coin] WITH (TABLOCKX, HOLDLOCK);" in sent
    assert "DELETE FROM [crypto].[fact_market_trends] WHERE [time_key] >= ? AND [time_key] < ?" in sent
    assert "Binance Coin" not in sent and '"' not in sent  # names are parameters, identifiers bracketed
    assert recorder.commits == 3  # DDL, reader role, the load


def test_batch_sizes_per_dialect():
    from crypto_assets.resources.warehouse.dialects import DIALECTS

    assert DIALECTS["mssql"].rows_per_statement(16) == 131
    assert DIALECTS["mssql"].rows_per_statement(1) == 1000
    assert DIALECTS["postgresql"].rows_per_statement(16) == 437
    assert DIALECTS["sqlite"].rows_per_statement(16) == 62  # 999 parameters: see the SQLite dialect
    sql = DIALECTS["postgresql"].insert("crypto", "dim_time", ["a", "b"], 3)
    assert re.fullmatch(r'INSERT INTO "crypto"\."dim_time" \("a", "b"\) VALUES \(\?, \?\), \(\?, \?\), \(\?, \?\)', sql)
