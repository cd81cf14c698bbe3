"""ODBC: connection strings, the password never shown, connections and what a failure means.

The driver behaviour the sink relies on (rollback on any error, naive-UTC datetimes, autocommit
off for a load) is exercised against every engine by crypto_assets_tests/test_warehouse.py.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import pyodbc

if TYPE_CHECKING:
    from crypto_assets.resources.warehouse.dialects import Dialect

_PASSWORD = re.compile(r"((?:PWD|PASSWORD)\s*=\s*)(\{(?:[^}]|\}\})*\}|[^;]*)", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"\s*([^=;]+?)\s*=\s*(\{(?:[^}]|\}\})*\}|[^;]*)\s*;?")


class WarehouseError(Exception):
    """A load or query failed; the message says why and never contains the password."""


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


def driver_of(connection_string: str) -> str:
    return odbc_attributes(connection_string).get("DRIVER", "")


def error(what: str, failure: Exception, connection_string: str) -> WarehouseError:
    """``failure`` as a WarehouseError saying what failed and what it likely means, masked."""
    state = failure.args[0] if isinstance(failure, pyodbc.Error) and len(failure.args) > 1 else ""
    detail = failure.args[-1] if isinstance(failure, pyodbc.Error) and failure.args else str(failure)
    hint = ""
    if state.startswith("08"):
        hint = " (server unreachable, refused the connection or rejected the login)"
    elif state.startswith("28"):
        hint = " (authentication failed)"
    elif state == "42501" or "permission denied" in str(detail).lower() or "access denied" in str(detail).lower():
        hint = " (permission denied: the warehouse login lacks a right)"
    elif state == "IM002":
        hint = f"; installed ODBC drivers: {pyodbc.drivers()}"
    target = mask_password(connection_string, connection_string)
    return WarehouseError(mask_password(f"{what}{hint}: {detail} — connection: {target}", connection_string))


@contextmanager
def connection(connection_string: str, dialect: Dialect) -> Iterator[pyodbc.Connection]:
    """A connection with autocommit off, closed (never committed) on exit."""
    driver = odbc_attributes(connection_string).get("DRIVER")
    if driver and driver not in pyodbc.drivers():
        raise WarehouseError(
            f"ODBC driver {driver!r} is not installed (unixODBC); installed drivers: {pyodbc.drivers()}"
        )
    dialect.before_connect(odbc_attributes(connection_string))
    try:
        conn = pyodbc.connect(connection_string, autocommit=dialect.connect_in_autocommit, timeout=15)
    except pyodbc.Error as failure:
        raise error("cannot connect to the warehouse", failure, connection_string) from None
    try:
        dialect.after_connect(conn)
        conn.autocommit = False
        yield conn
    finally:
        conn.close()
