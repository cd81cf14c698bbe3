"""One class per SQL engine, owning every choice that differs between them: how it is recognised
from the ODBC driver, connect options, relation names, types, DDL guards, the loaders' lock, the
read-only role, the reporting views' dialect and the bulk-insert strategy.

Adding an engine is one subclass here and an entry in DIALECTS (docs/deployment.md shows MariaDB
as the worked example). The SQL is generated without a connection, so the T-SQL for SQL Server
is produced and checked where no SQL Server runs.
"""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from pathlib import Path

from crypto_assets import star_schema as star
from crypto_assets.star_schema import Column, StarTable

# PostgreSQL array inserts: rows per statement (parameters are one per column, so no limit
# applies; this bounds the statement's size, about 20 bytes a value).
ARRAY_ROWS_PER_STATEMENT = 10_000
_MS_DRIVER = re.compile(r"ODBC Driver \d+ for SQL Server", re.IGNORECASE)


class Dialect:
    """The ANSI-ish defaults (double-quoted identifiers, ``CREATE … IF NOT EXISTS``, multi-row
    parameterised INSERTs); engines override what they do otherwise."""

    name = ""
    param_limit = 999  # parameters a statement may carry
    types: dict[str, str] = {}
    true = "TRUE"  # boolean literal in views
    statement_end = ""
    connect_in_autocommit = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    @classmethod
    def serves(cls, driver: str) -> bool:
        """Whether ``DRIVER={driver}`` is one of this engine's ODBC drivers."""
        return False

    # -- connecting --

    def before_connect(self, attributes: dict[str, str]) -> None:
        """Anything to do before the first connection (e.g. create a file's folder)."""

    def after_connect(self, conn) -> None:
        """Session settings, run before the connection's first transaction."""

    # -- names --

    def ident(self, name: str) -> str:
        return f'"{name}"'

    def table(self, schema: str, name: str) -> str:
        return f"{self.ident(schema)}.{self.ident(name)}"

    def relation_name(self, schema: str, relation: str) -> str:
        """A star table's name as the catalogue lists it (``relations_query``)."""
        return relation

    def relations_query(self, schema: str) -> tuple[str, list]:
        """(table or view name, column name) of every relation of the star schema."""
        return "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = ?", [schema]

    # -- DDL --

    def create_schema(self, schema: str) -> list[str]:
        return [f"CREATE SCHEMA IF NOT EXISTS {self.ident(schema)}"]

    def column_sql(self, column: Column) -> str:
        null = "" if column.nullable else " NOT NULL"
        return f"{self.ident(column.name)} {self.types[column.kind]}{null}"

    def create_table(self, schema: str, table: StarTable) -> str:
        return f"CREATE TABLE IF NOT EXISTS {self.table(schema, table.name)} (\n  {self._table_body(schema, table)}\n)"

    def _table_body(self, schema: str, table: StarTable) -> str:
        parts = [self.column_sql(c) for c in table.columns]
        parts.append(f"PRIMARY KEY ({', '.join(map(self.ident, table.primary_key))})")
        if table.unique:
            parts.append(f"UNIQUE ({', '.join(map(self.ident, table.unique))})")
        for column, ref_table, ref_column in table.foreign_keys:
            parts.append(
                f"FOREIGN KEY ({self.ident(column)}) REFERENCES "
                f"{self.table(schema, ref_table)} ({self.ident(ref_column)})"
            )
        return ",\n  ".join(parts)

    def add_column(self, schema: str, table: str, column: Column) -> str:
        return f"ALTER TABLE {self.table(schema, table)} ADD COLUMN {self.column_sql(column)}{self.statement_end}"

    def create_view(self, schema: str, name: str, select: str) -> str:
        return f"CREATE OR REPLACE VIEW {self.table(schema, name)} AS\n{select}{self.statement_end}"

    def literal(self, text: str) -> str:
        """A string literal of our own text (descriptions): quotes doubled."""
        return "'" + text.replace("'", "''") + "'"

    def comments(self, schema: str, docs: list[tuple[str, str, str]]) -> list[str]:
        """The engine's own comments for ``star.documentation()`` rows, where it has them (the
        ``column_docs`` table holds them on every engine)."""
        return []

    def lock(self, schema: str) -> list[str]:
        """Serialise loaders: dim_coin keys are max+1 inside the transaction."""
        raise NotImplementedError

    def reader_role(self, schema: str, role: str) -> list[str]:
        """Read-only role: SELECT now and on tables created later."""
        return []

    def views(self, schema: str) -> list[tuple[str, str]]:
        """Reporting views; names resolve to the current dim_coin version of each coin."""
        q = self.ident
        fact, coin, tm = (self.table(schema, t.name) for t in (star.FACT_MARKET_SNAPSHOT, star.DIM_COIN, star.DIM_TIME))
        joins = (
            f"FROM {fact} f\n"
            f"JOIN {coin} c ON c.{q('coin_key')} = f.{q('coin_key')}\n"
            f"JOIN {coin} cur ON cur.{q('coin_id')} = c.{q('coin_id')} AND cur.{q('is_current')} = {self.true}\n"
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
            f"AVG(f.{q('total_volume')}) AS {q('avg_total_volume')}\n" + joins + f"GROUP BY {group}"
        )
        return [(star.LATEST_MARKET.name, latest), (star.DAILY_COIN_SUMMARY.name, daily)]

    # -- loading --

    def rows_per_statement(self, columns: int) -> int:
        """min(1000, limit // columns): SQL Server allows 1,000 rows per VALUES list."""
        return max(1, min(1000, self.param_limit // columns))

    def insert(self, schema: str, table: str, columns: list[str], rows: int) -> str:
        row = "(" + ", ".join("?" * len(columns)) + ")"
        values = ", ".join([row] * rows)
        names = ", ".join(map(self.ident, columns))
        return f"INSERT INTO {self.table(schema, table)} ({names}) VALUES {values}{self.statement_end}"

    def insert_rows(
        self, cursor, schema: str, table: StarTable, columns: list[str], rows: list[tuple], driver: str
    ) -> None:
        """Bulk insert: multi-row parameterised INSERTs, as many rows a statement as allowed."""
        per = self.rows_per_statement(len(columns))
        full = self.insert(schema, table.name, columns, per)
        for i in range(0, len(rows), per):
            batch = rows[i : i + per]
            sql = full if len(batch) == per else self.insert(schema, table.name, columns, len(batch))
            cursor.execute(sql, list(itertools.chain.from_iterable(batch)))


class SQLite(Dialect):
    """The embedded default. No schemas: star tables are named ``{schema}_{table}``
    (``crypto_dim_coin``) in the one database file, so the file stays self-contained (no ATTACH
    per connection); foreign keys are switched on for every connection."""

    name = "sqlite"
    # SQLite takes 32,766 parameters a statement, but the SQLite3 ODBC driver keeps memory in
    # proportion to them that closing the connection does not give back: 6 MB more per slice of
    # 48,000 rows at 32,766, half that at 999, and no slower (measured 2026-12-02).
    param_limit = 999
    types = {
        "int": "INTEGER",
        "bigint": "INTEGER",
        "double": "REAL",
        "key": "TEXT",
        "text": "TEXT",
        "bool": "BOOLEAN",
        "timestamp": "TIMESTAMP",
        "date": "DATE",
    }
    true = "1"
    connect_in_autocommit = True  # the pragma is a no-op inside a transaction

    @classmethod
    def serves(cls, driver: str) -> bool:
        return driver.lower().startswith("sqlite3")

    def before_connect(self, attributes: dict[str, str]) -> None:
        if attributes.get("DATABASE"):
            Path(attributes["DATABASE"]).expanduser().parent.mkdir(parents=True, exist_ok=True)

    def after_connect(self, conn) -> None:
        conn.execute("PRAGMA foreign_keys = ON")

    def table(self, schema: str, name: str) -> str:
        return self.ident(f"{schema}_{name}")

    def relation_name(self, schema: str, relation: str) -> str:
        return relation[len(schema) + 1 :]

    def relations_query(self, schema: str) -> tuple[str, list]:
        return (
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p "
            "WHERE m.type IN ('table', 'view') AND substr(m.name, 1, ?) = ?",
            [len(schema) + 1, f"{schema}_"],
        )

    def create_schema(self, schema: str) -> list[str]:
        return []

    def create_view(self, schema: str, name: str, select: str) -> str:
        return f"CREATE VIEW IF NOT EXISTS {self.table(schema, name)} AS\n{select}"

    def lock(self, schema: str) -> list[str]:
        # Any write statement takes the database's write lock, held to the commit.
        coin_key = self.ident("coin_key")
        return [f"UPDATE {self.table(schema, star.DIM_COIN.name)} SET {coin_key} = {coin_key} WHERE 1 = 0"]


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


class PostgreSQL(Dialect):
    """psqlODBC. Bulk loads send every column as one array parameter, expanded by unnest()."""

    name = "postgresql"
    param_limit = 7000  # psqlODBC with server-side prepare loses sync above ~7,497
    types = {
        "int": "integer",
        "bigint": "bigint",
        "double": "double precision",
        "key": "text",
        "text": "text",
        "bool": "boolean",
        "timestamp": "timestamp",
        "date": "date",
    }

    @classmethod
    def serves(cls, driver: str) -> bool:
        return driver.lower().startswith("postgresql")

    def lock(self, schema: str) -> list[str]:
        return [f"LOCK TABLE {self.table(schema, star.DIM_COIN.name)} IN SHARE ROW EXCLUSIVE MODE"]

    def comments(self, schema: str, docs: list[tuple[str, str, str]]) -> list[str]:
        views = {v.name for v in star.VIEWS}
        statements = []
        for relation, column, text in docs:
            name = self.table(schema, relation)
            if column:
                statements.append(f"COMMENT ON COLUMN {name}.{self.ident(column)} IS {self.literal(text)}")
            else:
                kind = "VIEW" if relation in views else "TABLE"
                statements.append(f"COMMENT ON {kind} {name} IS {self.literal(text)}")
        return statements

    def reader_role(self, schema: str, role: str) -> list[str]:
        s, r = self.ident(schema), self.ident(role)
        return [
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
            f"THEN CREATE ROLE {r} NOLOGIN; END IF; END $$",
            f"GRANT USAGE ON SCHEMA {s} TO {r}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT ON TABLES TO {r}",
        ]

    def insert_arrays(self, schema: str, table: str, columns: list[str], kinds: list[str]) -> str:
        arrays = ", ".join(f"?::{self.types[kind]}[]" for kind in kinds)
        names = ", ".join(map(self.ident, columns))
        return f"INSERT INTO {self.table(schema, table)} ({names}) SELECT * FROM unnest({arrays})"

    def insert_rows(
        self, cursor, schema: str, table: StarTable, columns: list[str], rows: list[tuple], driver: str
    ) -> None:
        kinds = {column.name: column.kind for column in table.columns}
        if not all(c in kinds for c in columns):  # a column added since: no declared kind
            return super().insert_rows(cursor, schema, table, columns, rows, driver)
        column_kinds = [kinds[c] for c in columns]
        sql = self.insert_arrays(schema, table.name, columns, column_kinds)
        for i in range(0, len(rows), ARRAY_ROWS_PER_STATEMENT):
            batch = rows[i : i + ARRAY_ROWS_PER_STATEMENT]
            cursor.execute(sql, [pg_array(values, kind) for values, kind in zip(zip(*batch), column_kinds)])


class SQLServer(Dialect):
    """Microsoft's ODBC Driver 18 (fast_executemany) or FreeTDS; T-SQL guards instead of
    ``IF NOT EXISTS``, bracketed identifiers, 2,100 parameters and 1,000 rows a statement."""

    name = "mssql"
    param_limit = 2099  # 2,100 parameters a statement
    types = {
        "int": "int",
        "bigint": "bigint",
        "double": "float",
        "key": "nvarchar(200)",
        "text": "nvarchar(max)",
        "bool": "bit",
        "timestamp": "datetime2(0)",
        "date": "date",
    }
    true = "1"
    statement_end = ";"

    @classmethod
    def serves(cls, driver: str) -> bool:
        return bool(_MS_DRIVER.fullmatch(driver)) or driver.lower() in ("freetds", "sql server")

    def ident(self, name: str) -> str:
        return f"[{name}]"

    def create_schema(self, schema: str) -> list[str]:
        return [f"IF SCHEMA_ID(N'{schema}') IS NULL EXEC(N'CREATE SCHEMA {self.ident(schema)}');"]

    def create_table(self, schema: str, table: StarTable) -> str:
        name = self.table(schema, table.name)
        return f"IF OBJECT_ID(N'{name}', N'U') IS NULL\nCREATE TABLE {name} (\n  {self._table_body(schema, table)}\n);"

    def add_column(self, schema: str, table: str, column: Column) -> str:
        return f"ALTER TABLE {self.table(schema, table)} ADD {self.column_sql(column)};"

    def create_view(self, schema: str, name: str, select: str) -> str:
        return f"CREATE OR ALTER VIEW {self.table(schema, name)} AS\n{select};"

    def lock(self, schema: str) -> list[str]:
        return [f"SELECT COUNT(*) FROM {self.table(schema, star.DIM_COIN.name)} WITH (TABLOCKX, HOLDLOCK);"]

    def literal(self, text: str) -> str:
        return "N" + super().literal(text)

    def comments(self, schema: str, docs: list[tuple[str, str, str]]) -> list[str]:
        """``MS_Description`` extended properties (what SSMS and Power BI show), replaced if present."""
        views = {v.name for v in star.VIEWS}
        statements = []
        for relation, column, text in docs:
            level = (
                f"@level0type = N'SCHEMA', @level0name = N'{schema}', "
                f"@level1type = N'{'VIEW' if relation in views else 'TABLE'}', @level1name = N'{relation}'"
            )
            obj = f"OBJECT_ID(N'{self.table(schema, relation)}')"
            minor = "0"
            if column:
                level += f", @level2type = N'COLUMN', @level2name = N'{column}'"
                minor = f"COLUMNPROPERTY({obj}, N'{column}', 'ColumnId')"
            statements.append(
                "IF EXISTS (SELECT 1 FROM sys.extended_properties WHERE class = 1 AND name = N'MS_Description' "
                f"AND major_id = {obj} AND minor_id = {minor}) "
                f"EXEC sys.sp_dropextendedproperty @name = N'MS_Description', {level};\n"
                f"EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = {self.literal(text)}, {level};"
            )
        return statements

    def reader_role(self, schema: str, role: str) -> list[str]:
        # a schema-level grant covers tables created later
        return [
            f"IF DATABASE_PRINCIPAL_ID(N'{role}') IS NULL CREATE ROLE {self.ident(role)};",
            f"GRANT SELECT ON SCHEMA::{self.ident(schema)} TO {self.ident(role)};",
        ]

    def insert_rows(
        self, cursor, schema: str, table: StarTable, columns: list[str], rows: list[tuple], driver: str
    ) -> None:
        if not _MS_DRIVER.fullmatch(driver):  # fast_executemany crashes other drivers
            return super().insert_rows(cursor, schema, table, columns, rows, driver)
        cursor.fast_executemany = True
        cursor.executemany(self.insert(schema, table.name, columns, 1), rows)
        cursor.fast_executemany = False


class MariaDB(Dialect):
    """MariaDB and MySQL through MariaDB Connector/ODBC (``DRIVER={MariaDB Unicode}``). A schema
    is a database; keys need a bounded VARCHAR (TEXT cannot be indexed whole); the loaders' lock
    is InnoDB's next-key lock on every dim_coin row (``LOCK TABLES`` would end the transaction)."""

    name = "mariadb"
    param_limit = 65535  # the protocol's 16-bit parameter count
    types = {
        "int": "INT",
        "bigint": "BIGINT",
        "double": "DOUBLE",
        "key": "VARCHAR(200)",
        "text": "TEXT",
        "bool": "BOOLEAN",
        "timestamp": "DATETIME",
        "date": "DATE",
    }
    true = "TRUE"

    @classmethod
    def serves(cls, driver: str) -> bool:
        return driver.lower().startswith(("mariadb", "mysql"))

    def after_connect(self, conn) -> None:
        # Parameters as UTF-8: sent as UTF-16 (pyodbc's default), text past the BMP or a few
        # hundred characters long is stored garbled by the driver.
        conn.setencoding(encoding="utf-8")

    def ident(self, name: str) -> str:
        return f"`{name}`"

    def create_schema(self, schema: str) -> list[str]:
        return [f"CREATE DATABASE IF NOT EXISTS {self.ident(schema)} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"]

    def literal(self, text: str) -> str:
        return super().literal(text.replace("\\", "\\\\"))  # a backslash escapes in MariaDB strings

    def column_sql(self, column: Column) -> str:
        # comments live in the definition (a later ALTER … MODIFY would restate every column)
        comment = f" COMMENT {self.literal(column.description)}" if column.description else ""
        return super().column_sql(column) + comment

    def create_table(self, schema: str, table: StarTable) -> str:
        return super().create_table(schema, table) + f" ENGINE=InnoDB COMMENT={self.literal(table.description)}"

    def lock(self, schema: str) -> list[str]:
        return [f"SELECT COUNT(*) FROM {self.table(schema, star.DIM_COIN.name)} FOR UPDATE"]

    def reader_role(self, schema: str, role: str) -> list[str]:
        return [
            f"CREATE ROLE IF NOT EXISTS {self.ident(role)}",
            f"GRANT SELECT ON {self.ident(schema)}.* TO {self.ident(role)}",
        ]


DIALECTS: dict[str, Dialect] = {d.name: d for d in (SQLite(), PostgreSQL(), SQLServer(), MariaDB())}


def dialect_for(driver: str) -> Dialect | None:
    """The engine whose ODBC driver ``driver`` is, or None."""
    return next((d for d in DIALECTS.values() if d.serves(driver)), None)
