"""The SQL sink: loads the star schema (``crypto_assets.star_schema``) through pyodbc.

One code path for three dialects — SQLite (the embedded default, through the SQLite3 ODBC
driver), PostgreSQL (psqlODBC) and SQL Server (Microsoft ODBC Driver 18 or FreeTDS) — so the
T-SQL it would run can be generated and checked where no SQL Server runs. Measured driver
behaviour it relies on is in ``shared/notes/odbc.md``: multi-row parameterised INSERTs in one
transaction (never ``fast_executemany`` outside Microsoft's driver: it crashes SQLite3 ODBC),
rollback on any error, naive-UTC datetimes, integer time keys.

SQLite has no schemas: star tables are named ``{schema_name}_{table}`` (``crypto_dim_coin``)
in the one database file, so the file stays self-contained (no ATTACH per connection).
Foreign keys are enforced on SQLite too (``PRAGMA foreign_keys=ON`` on every connection), as
on PostgreSQL and SQL Server. Concurrent loads are serialised by a table lock on dim_coin
(PostgreSQL, SQL Server); on SQLite the file lock does it, and a loser fails cleanly with
"database is locked" after the driver's busy timeout and rolls back.
"""

from __future__ import annotations

import itertools
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Optional

import pyarrow as pa
import pyodbc
from dagster import ConfigurableResource, get_dagster_logger
from pydantic import Field

from crypto_assets import crashpoints
from crypto_assets import star_schema as star
from crypto_assets.partitions import as_utc, hours_in, naive_utc
from crypto_assets.star_schema import Column, CoinVersion, StarTable

# A Dagster logger: inside a run its lines go to the run log (and the UI), outside to stderr.
log = get_dagster_logger("crypto_assets.warehouse")

DEFAULT_ODBC = "DRIVER={SQLite3};Database=./data/warehouse.sqlite;BigInt=1"
_PASSWORD = re.compile(r"((?:PWD|PASSWORD)\s*=\s*)(\{(?:[^}]|\}\})*\}|[^;]*)", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"\s*([^=;]+?)\s*=\s*(\{(?:[^}]|\}\})*\}|[^;]*)\s*;?")
_MS_DRIVER = re.compile(r"ODBC Driver \d+ for SQL Server", re.IGNORECASE)


class WarehouseError(Exception):
    """A load or query failed; the message says why and never contains the password."""


@dataclass(frozen=True)
class WindowLoad:
    """One window load as seen inside its transaction: what it wrote, what the window then holds."""

    written: dict[str, int]  # rows written per table
    counts: dict[str, int]  # fact rows in the window
    orphans: dict[str, int]  # fact rows in the window without their dimension rows
    committed: bool


def mask_password(text: str, connection_string: str = "") -> str:
    """Hide ``PWD=`` values, also where a driver echoes the password in its own message."""
    secrets = [m.group(2).strip("{}") for m in _PASSWORD.finditer(connection_string)]
    for secret in filter(None, secrets):
        text = text.replace(secret, "***")
    return _PASSWORD.sub(r"\1***", text)


def odbc_attributes(connection_string: str) -> dict[str, str]:
    """``KEY=value`` pairs of an ODBC connection string, keys upper-cased, braces removed."""
    return {
        key.upper(): value[1:-1].replace("}}", "}") if value.startswith("{") else value
        for key, value in _ATTRIBUTE.findall(connection_string)
    }


def infer_dialect(connection_string: str) -> str:
    driver = odbc_attributes(connection_string).get("DRIVER", "")
    lowered = driver.lower()
    if lowered.startswith("sqlite3"):
        return "sqlite"
    if lowered.startswith("postgresql"):
        return "postgresql"
    if _MS_DRIVER.fullmatch(driver) or lowered in ("freetds", "sql server"):
        return "mssql"
    raise WarehouseError(
        f"cannot tell the SQL dialect from DRIVER={{{driver}}}; supported drivers: SQLite3, "
        "PostgreSQL Unicode/ANSI, ODBC Driver 18 for SQL Server, FreeTDS — or set "
        "dialect to 'sqlite', 'postgresql' or 'mssql'"
    )


# --- dialects ---------------------------------------------------------------------------


# PostgreSQL array inserts: rows per statement (parameters are one per column, so no limit
# applies; this bounds the statement's size, about 20 bytes a value).
ARRAY_ROWS_PER_STATEMENT = 10_000


def _pg_text(value) -> str:
    if value is None:
        return "NULL"
    text = value.isoformat(sep=" ") if isinstance(value, datetime) else str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pg_array(values, kind: str) -> str:
    """A PostgreSQL array literal of one column's values. Text is always quoted, so a name that
    reads NULL or holds quotes, commas or braces stays data; numbers go as Python's repr."""
    if kind in ("int", "bigint", "double"):
        body = ",".join(map(repr, values)).replace("None", "NULL")
    elif kind == "bool":
        body = ",".join("NULL" if v is None else ("t" if v else "f") for v in values)
    else:
        body = ",".join(map(_pg_text, values))
    return "{" + body + "}"


@dataclass(frozen=True)
class Dialect:
    """What differs between the engines: names, types, DDL guards, parameter limits."""

    name: str
    param_limit: int
    types: dict[str, str]
    true: str  # boolean literal in views

    def ident(self, name: str) -> str:
        return f"[{name}]" if self.name == "mssql" else f'"{name}"'

    def table(self, schema: str, name: str) -> str:
        if self.name == "sqlite":
            return self.ident(f"{schema}_{name}")
        return f"{self.ident(schema)}.{self.ident(name)}"

    def rows_per_statement(self, columns: int) -> int:
        """min(1000, limit // columns): SQL Server allows 1,000 rows per VALUES list."""
        return max(1, min(1000, self.param_limit // columns))

    def create_schema(self, schema: str) -> list[str]:
        if self.name == "postgresql":
            return [f"CREATE SCHEMA IF NOT EXISTS {self.ident(schema)}"]
        if self.name == "mssql":
            return [f"IF SCHEMA_ID(N'{schema}') IS NULL EXEC(N'CREATE SCHEMA {self.ident(schema)}');"]
        return []

    def column_sql(self, column: Column) -> str:
        null = "" if column.nullable else " NOT NULL"
        return f"{self.ident(column.name)} {self.types[column.kind]}{null}"

    def create_table(self, schema: str, table: StarTable, extra: tuple[Column, ...] = ()) -> str:
        parts = [self.column_sql(c) for c in (*table.columns, *extra)]
        parts.append(f"PRIMARY KEY ({', '.join(map(self.ident, table.primary_key))})")
        if table.unique:
            parts.append(f"UNIQUE ({', '.join(map(self.ident, table.unique))})")
        for column, ref_table, ref_column in table.foreign_keys:
            parts.append(
                f"FOREIGN KEY ({self.ident(column)}) REFERENCES "
                f"{self.table(schema, ref_table)} ({self.ident(ref_column)})"
            )
        name = self.table(schema, table.name)
        body = ",\n  ".join(parts)
        if self.name == "mssql":
            return f"IF OBJECT_ID(N'{name}', N'U') IS NULL\nCREATE TABLE {name} (\n  {body}\n);"
        return f"CREATE TABLE IF NOT EXISTS {name} (\n  {body}\n)"

    def add_column(self, schema: str, table: str, column: Column) -> str:
        add = "ADD" if self.name == "mssql" else "ADD COLUMN"
        end = ";" if self.name == "mssql" else ""
        return f"ALTER TABLE {self.table(schema, table)} {add} {self.column_sql(column)}{end}"

    def insert(self, schema: str, table: str, columns: list[str], rows: int) -> str:
        row = "(" + ", ".join("?" * len(columns)) + ")"
        values = ", ".join([row] * rows)
        end = ";" if self.name == "mssql" else ""
        return f"INSERT INTO {self.table(schema, table)} ({', '.join(map(self.ident, columns))}) VALUES {values}{end}"

    def insert_arrays(self, schema: str, table: str, columns: list[str], kinds: list[str]) -> str:
        """PostgreSQL: every column as one array parameter, expanded by unnest()."""
        arrays = ", ".join(f"?::{self.types[kind]}[]" for kind in kinds)
        names = ", ".join(map(self.ident, columns))
        return f"INSERT INTO {self.table(schema, table)} ({names}) SELECT * FROM unnest({arrays})"

    def create_view(self, schema: str, name: str, select: str) -> str:
        view = self.table(schema, name)
        if self.name == "sqlite":
            return f"CREATE VIEW IF NOT EXISTS {view} AS\n{select}"
        if self.name == "mssql":
            return f"CREATE OR ALTER VIEW {view} AS\n{select};"
        return f"CREATE OR REPLACE VIEW {view} AS\n{select}"

    def lock(self, schema: str) -> list[str]:
        """Serialise loaders: dim_coin keys are max+1 inside the transaction."""
        dim_coin = self.table(schema, star.DIM_COIN.name)
        if self.name == "postgresql":
            return [f"LOCK TABLE {dim_coin} IN SHARE ROW EXCLUSIVE MODE"]
        if self.name == "mssql":
            return [f"SELECT COUNT(*) FROM {dim_coin} WITH (TABLOCKX, HOLDLOCK);"]
        # SQLite: any write statement takes the database's write lock, held to the commit.
        return [f"UPDATE {dim_coin} SET {self.ident('coin_key')} = {self.ident('coin_key')} WHERE 1 = 0"]

    def reader_role(self, schema: str, role: str) -> list[str]:
        """Read-only role: USAGE + SELECT now and on future tables."""
        s, r = self.ident(schema), self.ident(role)
        if self.name == "postgresql":
            return [
                f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
                f"THEN CREATE ROLE {r} NOLOGIN; END IF; END $$",
                f"GRANT USAGE ON SCHEMA {s} TO {r}",
                f"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}",
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT ON TABLES TO {r}",
            ]
        if self.name == "mssql":  # a schema-level grant covers tables created later
            return [
                f"IF DATABASE_PRINCIPAL_ID(N'{role}') IS NULL CREATE ROLE {r};",
                f"GRANT SELECT ON SCHEMA::{s} TO {r};",
            ]
        return []

    def relations_query(self, schema: str) -> tuple[str, list]:
        """(table or view name, column name) of every relation of the star schema."""
        if self.name == "sqlite":
            return (
                "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p "
                "WHERE m.type IN ('table', 'view') AND substr(m.name, 1, ?) = ?",
                [len(schema) + 1, f"{schema}_"],
            )
        return (
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = ?",
            [schema],
        )


DIALECTS = {
    "sqlite": Dialect(
        "sqlite",
        32766,  # SQLITE_MAX_VARIABLE_NUMBER since SQLite 3.32
        {"int": "INTEGER", "bigint": "INTEGER", "double": "REAL", "key": "TEXT", "text": "TEXT",
         "bool": "BOOLEAN", "timestamp": "TIMESTAMP", "date": "DATE"},
        "1",
    ),
    "postgresql": Dialect(
        "postgresql",
        7000,  # psqlODBC with server-side prepare loses sync above ~7,497
        {"int": "integer", "bigint": "bigint", "double": "double precision", "key": "text",
         "text": "text", "bool": "boolean", "timestamp": "timestamp", "date": "date"},
        "TRUE",
    ),
    "mssql": Dialect(
        "mssql",
        2099,  # 2,100 parameters a statement
        {"int": "int", "bigint": "bigint", "double": "float", "key": "nvarchar(200)",
         "text": "nvarchar(max)", "bool": "bit", "timestamp": "datetime2(0)", "date": "date"},
        "1",
    ),
}


def _views(d: Dialect, schema: str) -> list[tuple[str, str]]:
    """Reporting views; names resolve to the current dim_coin version of each coin."""
    q = d.ident
    fact, coin, tm = (d.table(schema, t.name) for t in (star.FACT_MARKET_SNAPSHOT, star.DIM_COIN, star.DIM_TIME))
    joins = (
        f"FROM {fact} f\n"
        f"JOIN {coin} c ON c.{q('coin_key')} = f.{q('coin_key')}\n"
        f"JOIN {coin} cur ON cur.{q('coin_id')} = c.{q('coin_id')} AND cur.{q('is_current')} = {d.true}\n"
        f"JOIN {tm} t ON t.{q('time_key')} = f.{q('time_key')}\n"
    )
    latest = (
        f"SELECT cur.{q('coin_key')}, cur.{q('coin_id')}, cur.{q('symbol')}, cur.{q('name')}, "
        f"f.{q('time_key')}, t.{q('hour_start')}, "
        + ", ".join(f"f.{q(m)}" for m in star.SNAPSHOT_MEASURES)
        + "\n"
        + joins
        + f"WHERE f.{q('time_key')} = (SELECT MAX(f2.{q('time_key')}) FROM {fact} f2 "
        f"JOIN {coin} c2 ON c2.{q('coin_key')} = f2.{q('coin_key')} WHERE c2.{q('coin_id')} = c.{q('coin_id')})"
    )
    group = f"t.{q('date')}, cur.{q('coin_id')}, cur.{q('symbol')}, cur.{q('name')}"
    daily = (
        f"SELECT {group}, COUNT(*) AS {q('hours_observed')}, "
        f"MIN(f.{q('current_price')}) AS {q('min_price')}, MAX(f.{q('current_price')}) AS {q('max_price')}, "
        f"AVG(f.{q('current_price')}) AS {q('avg_price')}, AVG(f.{q('market_cap')}) AS {q('avg_market_cap')}, "
        f"AVG(f.{q('total_volume')}) AS {q('avg_total_volume')}\n"
        + joins
        + f"GROUP BY {group}"
    )
    return [("v_latest_market", latest), ("v_daily_coin_summary", daily)]


def _identifier(name: str, what: str) -> str:
    if not star.IDENTIFIER.match(name):
        raise WarehouseError(f"{what} {name!r} is not a lower_snake_case SQL identifier")
    return name


# --- the resource -----------------------------------------------------------------------


class WarehouseResource(ConfigurableResource):
    """The SQL star schema, loaded per hour window in one transaction."""

    odbc_connection_string: str = Field(
        default=DEFAULT_ODBC,
        description="ODBC connection string (CRYPTO_WAREHOUSE_ODBC, read in definitions.py); default: SQLite file ./data/warehouse.sqlite",
    )
    schema_name: str = Field(default="crypto", description="schema of the star tables (SQLite: table prefix)")
    dialect: Optional[str] = Field(
        default=None, description="'sqlite', 'postgresql' or 'mssql'; default: inferred from DRIVER={...}"
    )
    reader_role: Optional[str] = Field(
        default="crypto_reader", description="read-only role granted SELECT (PostgreSQL, SQL Server); null: none"
    )

    # -- SQL generation (no connection needed) --

    def sql_dialect(self) -> Dialect:
        name = self.dialect or infer_dialect(self.odbc_connection_string)
        if name not in DIALECTS:
            raise WarehouseError(f"unknown dialect {name!r}; expected one of {sorted(DIALECTS)}")
        _identifier(self.schema_name, "schema_name")
        return DIALECTS[name]

    def ddl_statements(self) -> list[str]:
        """The full DDL for an empty database, e.g. to review or hand to a DBA (T-SQL on mssql)."""
        d = self.sql_dialect()
        statements = d.create_schema(self.schema_name)
        statements += [d.create_table(self.schema_name, t) for t in (*star.STAR_TABLES, star.SCHEMA_VERSION_TABLE)]
        statements += [d.create_view(self.schema_name, name, sql) for name, sql in _views(d, self.schema_name)]
        if self.reader_role:
            statements += d.reader_role(self.schema_name, _identifier(self.reader_role, "reader_role"))
        return statements

    # -- public API --

    def load_window(
        self, silver: pa.Table, gold: dict[str, pa.Table], start: datetime, end: datetime
    ) -> dict[str, int]:
        """Replace the hours [start, end) of every fact given (Silver, and the Gold tables in
        ``gold``; facts of Gold tables not in ``gold`` are left alone), in one transaction.

        Returns rows written per table (dim_time: hours added; dim_coin: versions added or
        changed; facts: rows inserted).
        """
        return self.load_fresh_window(start, end, lambda: (silver, gold)).written

    def load_fresh_window(
        self, start: datetime, end: datetime, read: Callable[[], tuple[pa.Table, dict[str, pa.Table]]],
        accept: Callable[[WindowLoad], bool] | None = None,
    ) -> WindowLoad:
        """Load hours [start, end) in one transaction: lock, ``read()`` the inputs, load, audit.

        The inputs are read under the loaders' lock, so of two runs loading the same hours the
        later one loads what the lakehouse holds after the earlier one: a stale read never
        overwrites a fresh one. ``accept`` sees the loaded, uncommitted window (its counts and
        orphans); if it returns False everything is rolled back (write, audit, publish).
        """
        d = self.sql_dialect()
        start, end = as_utc(start), as_utc(end)
        if start >= end:
            raise WarehouseError(f"empty window [{start}, {end})")
        with self._connection() as conn:
            self._ensure_schema(conn, d)
            try:
                cursor = conn.cursor()
                for statement in d.lock(self.schema_name):
                    cursor.execute(statement)
                silver, gold = read()
                inputs = self._inputs(silver, gold)
                self._add_new_columns(cursor, d, inputs)
                written = self._load(cursor, d, inputs, start, end)
                load = WindowLoad(written, self._run_counts(cursor, *self._window_count_queries(d, start, end)),
                                  self._run_counts(cursor, *self._orphan_queries(d, start, end)), False)
                if accept is not None and not accept(load):
                    conn.rollback()
                    return load
                crashpoints.reached("warehouse.before_commit")
                conn.commit()
                return replace(load, committed=True)
            except WarehouseError:
                conn.rollback()
                raise
            except (pyodbc.Error, ValueError) as error:
                conn.rollback()
                raise self._error(f"loading [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M}) failed; rolled back", error) from None

    @staticmethod
    def _inputs(silver: pa.Table, gold: dict[str, pa.Table]) -> list[tuple[StarTable, pa.Table]]:
        inputs = [(star.FACT_MARKET_SNAPSHOT, silver)]
        for name, table in gold.items():
            if name not in star.FACT_BY_SOURCE or star.FACT_BY_SOURCE[name] is star.FACT_MARKET_SNAPSHOT:
                raise WarehouseError(f"unknown Gold table {name!r}; expected one of {sorted(star.FACT_BY_SOURCE)[:-1]}")
            inputs.append((star.FACT_BY_SOURCE[name], table))
        return inputs

    def window_counts(self, start: datetime, end: datetime) -> dict[str, int]:
        """Rows per fact table with time_key in [start, end)."""
        return self._counts(*self._window_count_queries(self.sql_dialect(), start, end))

    def orphan_counts(self, start: datetime, end: datetime) -> dict[str, int]:
        """Fact rows in [start, end) whose time_key or coin_key has no dimension row."""
        return self._counts(*self._orphan_queries(self.sql_dialect(), start, end))

    def _window_count_queries(self, d: Dialect, start: datetime, end: datetime) -> tuple[dict[str, str], list]:
        q = d.ident
        queries = {
            f.name: f"SELECT COUNT(*) FROM {d.table(self.schema_name, f.name)} WHERE {q('time_key')} >= ? AND {q('time_key')} < ?"
            for f in star.FACTS
        }
        return queries, [star.time_key(start), star.time_key(end)]

    def _orphan_queries(self, d: Dialect, start: datetime, end: datetime) -> tuple[dict[str, str], list]:
        s, q = self.schema_name, d.ident
        dim_time, dim_coin = d.table(s, star.DIM_TIME.name), d.table(s, star.DIM_COIN.name)
        queries = {}
        for fact in star.FACTS:
            joins = f"LEFT JOIN {dim_time} t ON t.{q('time_key')} = f.{q('time_key')}"
            missing = f"t.{q('time_key')} IS NULL"
            if fact.has_coin:
                joins += f" LEFT JOIN {dim_coin} c ON c.{q('coin_key')} = f.{q('coin_key')}"
                missing += f" OR c.{q('coin_key')} IS NULL"
            queries[fact.name] = (
                f"SELECT COUNT(*) FROM {d.table(s, fact.name)} f {joins} "
                f"WHERE f.{q('time_key')} >= ? AND f.{q('time_key')} < ? AND ({missing})"
            )
        return queries, [star.time_key(start), star.time_key(end)]

    def table_counts(self) -> dict[str, int]:
        """Rows of every star table."""
        d = self.sql_dialect()
        return self._counts({t.name: f"SELECT COUNT(*) FROM {d.table(self.schema_name, t.name)}" for t in star.STAR_TABLES}, [])

    # -- connection --

    @contextmanager
    def _connection(self) -> Iterator[pyodbc.Connection]:
        """A connection with autocommit off, closed (never committed) on exit."""
        d = self.sql_dialect()
        attributes = odbc_attributes(self.odbc_connection_string)
        driver = attributes.get("DRIVER")
        if driver and driver not in pyodbc.drivers():
            raise WarehouseError(
                f"ODBC driver {driver!r} is not installed (unixODBC); installed drivers: {pyodbc.drivers()}"
            )
        if d.name == "sqlite" and attributes.get("DATABASE"):
            Path(attributes["DATABASE"]).expanduser().parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = pyodbc.connect(self.odbc_connection_string, autocommit=d.name == "sqlite", timeout=15)
        except pyodbc.Error as error:
            raise self._error("cannot connect to the warehouse", error) from None
        try:
            if d.name == "sqlite":  # the pragma is a no-op inside a transaction
                conn.execute("PRAGMA foreign_keys = ON")
                conn.autocommit = False
            yield conn
        finally:
            conn.close()

    def _error(self, what: str, error: Exception) -> WarehouseError:
        state = error.args[0] if isinstance(error, pyodbc.Error) and len(error.args) > 1 else ""
        detail = error.args[-1] if isinstance(error, pyodbc.Error) and error.args else str(error)
        hint = ""
        if state.startswith("08"):
            hint = " (server unreachable, refused the connection or rejected the login)"
        elif state.startswith("28"):
            hint = " (authentication failed)"
        elif state == "42501" or "permission denied" in str(detail).lower():
            hint = " (permission denied: the warehouse login lacks a right)"
        elif state == "IM002":
            hint = f"; installed ODBC drivers: {pyodbc.drivers()}"
        target = mask_password(self.odbc_connection_string, self.odbc_connection_string)
        message = f"{what}{hint}: {detail} — connection: {target}"
        return WarehouseError(mask_password(message, self.odbc_connection_string))

    def _counts(self, queries: dict[str, str], params: list) -> dict[str, int]:
        with self._connection() as conn:
            try:
                return self._run_counts(conn.cursor(), queries, params)
            except pyodbc.Error as error:
                raise self._error("counting warehouse rows failed", error) from None
            finally:
                conn.rollback()  # release read locks

    @staticmethod
    def _run_counts(cursor, queries: dict[str, str], params: list) -> dict[str, int]:
        return {name: cursor.execute(sql, params).fetchone()[0] for name, sql in queries.items()}

    # -- schema --

    def _existing_columns(self, cursor, d: Dialect) -> dict[str, set[str]]:
        """Relation name -> its column names (lower case), for the star schema's relations."""
        s = self.schema_name
        sql, params = d.relations_query(s)
        existing: dict[str, set[str]] = {}
        for relation, column in cursor.execute(sql, params).fetchall():
            name = relation[len(s) + 1 :] if d.name == "sqlite" else relation
            existing.setdefault(name.lower(), set()).add(column.lower())
        return existing

    def _record_schema_change(self, cursor, d: Dialect, notes: list[str]) -> None:
        s = self.schema_name
        version_table = d.table(s, star.SCHEMA_VERSION_TABLE.name)
        current = cursor.execute(f"SELECT MAX({d.ident('version')}) FROM {version_table}").fetchone()[0] or 0
        cursor.execute(
            d.insert(s, star.SCHEMA_VERSION_TABLE.name, star.SCHEMA_VERSION_TABLE.column_names, 1),
            current + 1,
            naive_utc(datetime.now(timezone.utc)).replace(microsecond=0),
            f"star schema v{star.SCHEMA_VERSION}: " + "; ".join(notes),
        )
        log.info("warehouse schema %s: %s", s, "; ".join(notes))

    def _ensure_schema(self, conn: pyodbc.Connection, d: Dialect) -> None:
        """Create the tables and views that are missing (never drop), committed on its own so
        the load transaction holds no DDL locks (unless it must add a new column)."""
        s = self.schema_name
        notes = []
        try:
            existing = self._existing_columns(conn, d)
            if not existing:
                for statement in d.create_schema(s):
                    conn.execute(statement)
            for table in (*star.STAR_TABLES, star.SCHEMA_VERSION_TABLE):
                if table.name not in existing:
                    conn.execute(d.create_table(s, table))
                    notes.append(f"created {table.name}")
            for name, select in _views(d, s):
                if name not in existing:
                    conn.execute(d.create_view(s, name, select))
            if notes:
                self._record_schema_change(conn, d, notes)
            conn.commit()
        except (pyodbc.Error, ValueError) as error:
            conn.rollback()
            raise self._error(f"creating schema {s!r} failed", error) from None
        if notes and self.reader_role:
            self._grant_reader(conn, d)

    def _add_new_columns(self, cursor, d: Dialect, inputs: list[tuple[StarTable, pa.Table]]) -> None:
        """Add the input columns a fact table lacks (new Silver/Gold columns), inside the load."""
        existing = self._existing_columns(cursor, d)
        notes = []
        for fact, arrow in inputs:
            types = {f.name: f.type for f in arrow.schema}
            have = existing.setdefault(fact.name, {c.lower() for c in fact.column_names})
            for column in star.carried_columns(fact, arrow):
                if column.lower() not in have:
                    _identifier(column, f"new column of {fact.name}")
                    kind = star.arrow_kind(types[column])
                    cursor.execute(d.add_column(self.schema_name, fact.name, Column(column, kind)))
                    have.add(column.lower())
                    notes.append(f"added {fact.name}.{column} {kind}")
        if notes:
            self._record_schema_change(cursor, d, notes)

    def _grant_reader(self, conn: pyodbc.Connection, d: Dialect) -> None:
        """Create and grant the read-only role where the login may; otherwise log and go on."""
        role = _identifier(self.reader_role, "reader_role")
        statements = d.reader_role(self.schema_name, role)
        try:
            for statement in statements:
                conn.execute(statement)
            conn.commit()
        except pyodbc.Error as error:
            conn.rollback()
            if error.args[0] != "42501" and "permission" not in str(error).lower():
                raise self._error(f"granting {role} failed", error) from None
            log.info("read-only role %s not set up: the warehouse login lacks the right (%s)", role, error.args[-1])

    # -- the load transaction --

    def _load(self, cursor, d: Dialect, inputs, start: datetime, end: datetime) -> dict[str, int]:
        s, q = self.schema_name, d.ident
        start_key, end_key = star.time_key(start), star.time_key(end)
        keyed = []
        for fact, arrow in inputs:
            keys = star.hour_keys(arrow)
            outside = [k for k in set(keys) if not start_key <= k < end_key]
            if outside:
                raise WarehouseError(f"{fact.source.name} has rows outside the window [{start_key}, {end_key}): hours {sorted(outside)[:5]}")
            keyed.append((fact, arrow, keys))
        written: dict[str, int] = {}

        hours = [star.dim_time_row(h) for h in hours_in(start, end)]
        have = {
            row[0]
            for row in cursor.execute(
                f"SELECT {q('time_key')} FROM {d.table(s, 'dim_time')} WHERE {q('time_key')} >= ? AND {q('time_key')} < ?",
                start_key, end_key,
            ).fetchall()
        }
        written["dim_time"] = self._insert(cursor, d, star.DIM_TIME.name, star.DIM_TIME.column_names, [r for r in hours if r[0] not in have])

        written["dim_coin"], versions_by_coin, repoints = self._apply_scd2(cursor, d, keyed[0][1], keyed[0][2], end_key)
        for fact in (f for f in star.FACTS if f.has_coin):
            for old_key, new_key, from_key in repoints:
                cursor.execute(
                    f"UPDATE {d.table(s, fact.name)} SET {q('coin_key')} = ? WHERE {q('coin_key')} = ? AND {q('time_key')} >= ?",
                    new_key, old_key, from_key,
                )

        for fact, arrow, keys in keyed:
            cursor.execute(
                f"DELETE FROM {d.table(s, fact.name)} WHERE {q('time_key')} >= ? AND {q('time_key')} < ?",
                start_key, end_key,
            )
            columns, rows = self._fact_rows(fact, arrow, keys, versions_by_coin)
            written[fact.name] = self._insert(cursor, d, fact.name, columns, rows)
        return written

    def _apply_scd2(self, cursor, d: Dialect, silver: pa.Table, keys: list[int], end_key: int):
        """Fold the window's (coin, hour, symbol, name) into dim_coin; write the differences.

        Returns (rows changed, versions by coin id, repoints) where a repoint
        (old key, new key, from time_key) moves later facts to a split-off version.
        """
        s, q = self.schema_name, d.ident
        names = ["coin_key", "coin_id", "symbol", "name", "valid_from", "valid_to", "first_seen", "last_seen"]
        by_coin: dict[str, list[CoinVersion]] = {}
        before: dict[int, tuple] = {}
        for r in cursor.execute(f"SELECT {', '.join(map(q, names))} FROM {d.table(s, 'dim_coin')}").fetchall():
            v = CoinVersion(*r[1:], coin_key=r[0])  # timestamps come back naive (UTC)
            by_coin.setdefault(v.coin_id, []).append(v)
            before[v.coin_key] = v.row()
        max_key = max(before, default=0)

        observed: dict[str, list] = {}
        hour_of = {k: star.hour_of_time_key(k) for k in set(keys)}
        for coin_id, symbol, name, key in zip(
            silver.column("coin_id").to_pylist(), silver.column("symbol").to_pylist(), silver.column("name").to_pylist(), keys
        ):
            if coin_id is None:
                raise WarehouseError("silver_market_snapshots has a row without coin_id")
            observed.setdefault(coin_id, []).append((hour_of[key], symbol, name))

        def later_fact_hour(coin_key: int) -> Optional[datetime]:
            firsts = [
                cursor.execute(
                    f"SELECT MIN({q('time_key')}) FROM {d.table(s, f.name)} WHERE {q('coin_key')} = ? AND {q('time_key')} >= ?",
                    coin_key, end_key,
                ).fetchone()[0]
                for f in star.FACTS
                if f.has_coin
            ]
            found = [k for k in firsts if k is not None]
            return star.hour_of_time_key(min(found)) if found else None

        new: list[CoinVersion] = []
        for coin_id in sorted(observed):
            by_coin[coin_id] = star.apply_observations(coin_id, by_coin.get(coin_id, []), observed[coin_id], star.hour_of_time_key(end_key), later_fact_hour)
            new += [v for v in by_coin[coin_id] if v.coin_key is None]
        for v in sorted(new, key=lambda v: (v.coin_id, v.valid_from)):  # deterministic keys
            max_key += 1
            v.coin_key = max_key

        updates = [v for vs in by_coin.values() for v in vs if v.coin_key in before and v.row() != before[v.coin_key]]
        columns = star.DIM_COIN.column_names
        assignments = ", ".join(f"{q(c)} = ?" for c in columns[1:])
        # updates before inserts: a version moved off an hour frees it for the new one
        for v in updates:
            cursor.execute(f"UPDATE {d.table(s, 'dim_coin')} SET {assignments} WHERE {q('coin_key')} = ?", *v.row()[1:], v.coin_key)
        self._insert(cursor, d, "dim_coin", columns, [v.row() for v in new])
        repoints = [(v.takes_over_from, v.coin_key, star.time_key(v.valid_from)) for v in new if v.takes_over_from is not None]
        for v in by_coin.values():
            v.sort(key=lambda version: version.valid_from)
        return len(updates) + len(new), by_coin, repoints

    def _fact_rows(self, fact: StarTable, arrow: pa.Table, keys: list[int], by_coin) -> tuple[list[str], list[tuple]]:
        carried = star.carried_columns(fact, arrow)
        values = [star.column_values(arrow, c) for c in carried]
        if not fact.has_coin:
            return ["time_key", *carried], list(zip(keys, *values))
        hour_of = {k: star.hour_of_time_key(k) for k in set(keys)}
        coin_keys = []
        for coin_id, key in zip(arrow.column("coin_id").to_pylist(), keys):
            version = star.version_at(by_coin.get(coin_id, []), hour_of[key])
            if version is None:
                raise WarehouseError(
                    f"{fact.source.name}: coin {coin_id!r} at {hour_of[key]:%Y-%m-%d %H:00} has no dim_coin version "
                    "(Silver for that hour must be loaded with or before it)"
                )
            coin_keys.append(version.coin_key)
        return ["time_key", "coin_key", *carried], list(zip(keys, coin_keys, *values))

    def _insert(self, cursor, d: Dialect, table: str, columns: list[str], rows: list[tuple]) -> int:
        """Bulk insert: one array parameter per column on PostgreSQL, multi-row parameterised
        INSERTs elsewhere (fast_executemany only with Microsoft's driver)."""
        started = time.perf_counter()
        driver = odbc_attributes(self.odbc_connection_string).get("DRIVER", "")
        kinds = star.column_kinds(table)
        if rows and d.name == "postgresql" and all(c in kinds for c in columns):
            column_kinds = [kinds[c] for c in columns]
            sql = d.insert_arrays(self.schema_name, table, columns, column_kinds)
            for i in range(0, len(rows), ARRAY_ROWS_PER_STATEMENT):
                batch = rows[i : i + ARRAY_ROWS_PER_STATEMENT]
                cursor.execute(sql, [pg_array(values, kind) for values, kind in zip(zip(*batch), column_kinds)])
        elif rows and d.name == "mssql" and _MS_DRIVER.fullmatch(driver):
            cursor.fast_executemany = True
            cursor.executemany(d.insert(self.schema_name, table, columns, 1), rows)
            cursor.fast_executemany = False
        else:
            per = d.rows_per_statement(len(columns))
            full = d.insert(self.schema_name, table, columns, per)
            for i in range(0, len(rows), per):
                batch = rows[i : i + per]
                sql = full if len(batch) == per else d.insert(self.schema_name, table, columns, len(batch))
                cursor.execute(sql, list(itertools.chain.from_iterable(batch)))
        log.info("warehouse %s: %d rows in %.2fs", table, len(rows), time.perf_counter() - started)
        return len(rows)
