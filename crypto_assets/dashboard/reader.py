"""A read-only connection to the warehouse for the dashboard, whatever the engine.

PostgreSQL and MariaDB switch to the read-only role (``SET ROLE crypto_reader``) and make every
transaction read-only; SQLite has no roles, so its file is opened read-only (a ``mode=ro`` URI:
nothing is created, a write fails). Connections run in autocommit, so a page refresh never holds
a read lock that would make a loader wait. Errors never show the password.
"""

from __future__ import annotations

import urllib.parse
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterator, Optional

import pyodbc

from crypto_assets.resources.warehouse import odbc
from crypto_assets.resources.warehouse.dialects import Dialect, dialect_for
from crypto_assets.resources.warehouse.odbc import WarehouseError
from crypto_assets.settings import BY_NAME, value

SCHEMA = "crypto"  # WarehouseResource's schema_name (SQLite: the table prefix)
READER_ROLE = "crypto_reader"  # WarehouseResource's reader_role

Rows = list[dict[str, Any]]


def warehouse_odbc() -> str:
    """CRYPTO_WAREHOUSE_ODBC, or else the warehouse `make demo` writes (under CRYPTO_DEMO_DATA)."""
    if BY_NAME["CRYPTO_WAREHOUSE_ODBC"].raw() is not None:
        return str(value("CRYPTO_WAREHOUSE_ODBC"))
    return f"DRIVER={{SQLite3}};Database={Path(value('CRYPTO_DEMO_DATA')) / 'warehouse.sqlite'};BigInt=1"


def dialect_of(connection_string: str) -> Dialect:
    driver = odbc.driver_of(connection_string)
    found = dialect_for(driver)
    if found is None:
        raise WarehouseError(f"the dashboard cannot tell the SQL engine from DRIVER={{{driver}}}")
    return found


def read_only_sqlite(connection_string: str) -> str:
    """The connection string with its database file as a read-only URI (absolute, percent-encoded)."""
    attributes = odbc.odbc_attributes(connection_string)
    database = attributes.get("DATABASE", "")
    if not database or database.startswith("file:"):
        return connection_string
    path = urllib.parse.quote(str(Path(database).expanduser().absolute()))
    attributes["DATABASE"] = f"file:{path}?mode=ro"
    return ";".join(f"{key}={{{val}}}" if ";" in val else f"{key}={val}" for key, val in attributes.items())


def session_statements(dialect: Dialect, role: Optional[str]) -> list[str]:
    """What makes a session read-only on each engine: the reader role and read-only transactions.
    SQL Server has no SET ROLE (its roles are for logins to be members of): none there."""
    if dialect.name == "postgresql":
        return ([f"SET ROLE {dialect.ident(role)}"] if role else []) + ["SET default_transaction_read_only = on"]
    if dialect.name == "mariadb":
        return ([f"SET ROLE {dialect.ident(role)}"] if role else []) + ["SET SESSION TRANSACTION READ ONLY"]
    return []


def reading_as(dialect: Dialect, role: Optional[str]) -> str:
    """How the page says it reads, e.g. "read-only as crypto_reader"."""
    if dialect.name == "sqlite":
        return "SQLite file opened read-only"
    if session_statements(dialect, role) and role:
        return f"read-only as {role}"
    return "with the login's own rights (no SET ROLE on this engine)"


@contextmanager
def connect(connection_string: str, role: Optional[str] = READER_ROLE) -> Iterator[pyodbc.Connection]:
    """A read-only connection in autocommit, closed on exit."""
    dialect = dialect_of(connection_string)
    driver = odbc.driver_of(connection_string)
    if driver and driver not in pyodbc.drivers():
        raise WarehouseError(f"ODBC driver {driver!r} is not installed; installed drivers: {pyodbc.drivers()}")
    target = read_only_sqlite(connection_string) if dialect.name == "sqlite" else connection_string
    try:
        conn = pyodbc.connect(target, autocommit=True, timeout=15)
    except pyodbc.Error as failure:
        what = "cannot open the warehouse (has `make demo` or a run loaded it?)"
        raise odbc.error(what, failure, connection_string) from None
    try:
        dialect.after_connect(conn)
        for statement in session_statements(dialect, role):
            try:
                conn.execute(statement)
            except pyodbc.Error as failure:
                raise odbc.error(f"cannot read as {role} ({statement})", failure, connection_string) from None
        yield conn
    finally:
        conn.close()


def fetch(conn: pyodbc.Connection, sql: str, params: list | tuple = ()) -> Rows:
    """Rows as dicts of plain Python values (Decimal sums as float, dates kept)."""
    cursor = conn.execute(sql, *params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, map(_plain, row))) for row in cursor.fetchall()]


def _plain(cell: Any) -> Any:
    if cell is None or isinstance(cell, (bool, int, float, str, datetime, date)):
        return cell
    return float(cell)  # Decimal: PostgreSQL's SUM of bigint, MariaDB's AVG
