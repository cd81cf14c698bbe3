"""The SQL sink's resource: the star schema (``crypto_assets.star_schema``) loaded per hour window
in one transaction through pyodbc, on whichever engine the connection string names.

It wires the parts: ``odbc`` (connecting, masking, errors), ``dialects`` (every engine-specific
choice) and ``load`` (one window load). Concurrent loads are serialised by each engine's lock on
dim_coin; a loser waits, or fails cleanly and rolls back.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import replace
from datetime import datetime
from typing import Callable, Optional

import pyarrow as pa
import pyodbc
from dagster import ConfigurableResource
from pydantic import Field

from crypto_assets import crashpoints
from crypto_assets import star_schema as star
from crypto_assets.partitions import as_utc
from crypto_assets.resources.warehouse import odbc
from crypto_assets.resources.warehouse.dialects import DIALECTS, Dialect, dialect_for
from crypto_assets.resources.warehouse.load import WindowLoad, WindowLoader, identifier, inputs_of, log
from crypto_assets.resources.warehouse.odbc import WarehouseError
from crypto_assets.settings import DEFAULT_ODBC


class WarehouseResource(ConfigurableResource):
    """The SQL star schema, loaded per hour window in one transaction."""

    odbc_connection_string: str = Field(
        default=DEFAULT_ODBC,
        description="ODBC connection string (CRYPTO_WAREHOUSE_ODBC); default: SQLite file ./data/warehouse.sqlite",
    )
    schema_name: str = Field(default="crypto", description="schema of the star tables (SQLite: table prefix)")
    dialect: Optional[str] = Field(
        default=None, description=f"one of {sorted(DIALECTS)}; default: inferred from DRIVER={{...}}"
    )
    reader_role: Optional[str] = Field(
        default="crypto_reader",
        description="read-only role granted SELECT (PostgreSQL, SQL Server, MariaDB); null: none",
    )

    # -- SQL generation (no connection needed) --

    def sql_dialect(self) -> Dialect:
        identifier(self.schema_name, "schema_name")
        if self.dialect:
            if self.dialect not in DIALECTS:
                raise WarehouseError(f"unknown dialect {self.dialect!r}; expected one of {sorted(DIALECTS)}")
            return DIALECTS[self.dialect]
        driver = odbc.driver_of(self.odbc_connection_string)
        found = dialect_for(driver)
        if found is None:
            raise WarehouseError(
                f"cannot tell the SQL dialect from DRIVER={{{driver}}}; supported drivers: SQLite3, PostgreSQL "
                f"Unicode/ANSI, ODBC Driver 18 for SQL Server, FreeTDS, MariaDB Unicode — or set dialect to one of "
                f"{sorted(DIALECTS)}"
            )
        return found

    def loader(self) -> WindowLoader:
        return WindowLoader(self.sql_dialect(), self.schema_name, odbc.driver_of(self.odbc_connection_string))

    def ddl_statements(self) -> list[str]:
        """The full DDL for an empty database, e.g. to review or hand to a DBA (T-SQL on mssql)."""
        d, s = self.sql_dialect(), self.schema_name
        statements = d.create_schema(s)
        statements += [d.create_table(s, t) for t in star.CREATED_TABLES]
        statements += [d.create_view(s, name, sql) for name, sql in d.views(s)]
        statements += d.comments(s, star.documentation())
        if self.reader_role:
            statements += d.reader_role(s, identifier(self.reader_role, "reader_role"))
        return statements

    # -- loading --

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
        self,
        start: datetime,
        end: datetime,
        read: Callable[[], tuple[pa.Table, dict[str, pa.Table]]],
        accept: Callable[[WindowLoad], bool] | None = None,
    ) -> WindowLoad:
        """Load hours [start, end) in one transaction: lock, ``read()`` the inputs, load, audit.

        The inputs are read under the loaders' lock, so of two runs loading the same hours the
        later one loads what the lakehouse holds after the earlier one: a stale read never
        overwrites a fresh one. ``accept`` sees the loaded, uncommitted window (its counts and
        orphans); if it returns False everything is rolled back (write, audit, publish).
        """
        loader = self.loader()
        start, end = as_utc(start), as_utc(end)
        if start >= end:
            raise WarehouseError(f"empty window [{start}, {end})")
        with odbc.connection(self.odbc_connection_string, loader.d) as conn:
            self._ensure_schema(conn, loader)
            try:
                with closing(conn.cursor()) as cursor:
                    for statement in loader.d.lock(self.schema_name):
                        cursor.execute(statement)
                    inputs = inputs_of(*read())
                    loader.add_new_columns(cursor, inputs)
                    written = loader.load(cursor, inputs, start, end)
                load = WindowLoad(
                    written,
                    loader.run_counts(conn, *loader.window_count_queries(start, end)),
                    loader.run_counts(conn, *loader.orphan_queries(start, end)),
                    False,
                )
                if accept is not None and not accept(load):
                    conn.rollback()
                    return load
                crashpoints.reached("warehouse.before_commit")
                conn.commit()
                return replace(load, committed=True)
            except WarehouseError:
                conn.rollback()
                raise
            except (pyodbc.Error, ValueError) as failure:
                conn.rollback()
                raise odbc.error(
                    f"loading [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M}) failed; rolled back",
                    failure,
                    self.odbc_connection_string,
                ) from None

    def _ensure_schema(self, conn, loader: WindowLoader) -> None:
        """Missing tables and views, committed on their own so the load transaction holds no DDL
        locks (unless it must add a new column); the reader role after a creation."""
        try:
            created = loader.create_missing(conn)
            conn.commit()
        except (pyodbc.Error, ValueError) as failure:
            conn.rollback()
            raise odbc.error(
                f"creating schema {self.schema_name!r} failed", failure, self.odbc_connection_string
            ) from None
        if created and self.reader_role:
            self._grant_reader(conn, loader.d, self.reader_role)

    def _grant_reader(self, conn, d: Dialect, reader_role: str) -> None:
        """Create and grant the read-only role where the login may; otherwise log and go on."""
        role = identifier(reader_role, "reader_role")
        try:
            for statement in d.reader_role(self.schema_name, role):
                conn.execute(statement)
            conn.commit()
        except pyodbc.Error as failure:
            conn.rollback()
            denied = failure.args[0] == "42501" or any(
                word in str(failure).lower() for word in ("permission", "access denied")
            )
            if not denied:
                raise odbc.error(f"granting {role} failed", failure, self.odbc_connection_string) from None
            log.info("read-only role %s not set up: the warehouse login lacks the right (%s)", role, failure.args[-1])

    # -- counting --

    def window_counts(self, start: datetime, end: datetime) -> dict[str, int]:
        """Rows per fact table with time_key in [start, end)."""
        return self._counts(*self.loader().window_count_queries(start, end))

    def orphan_counts(self, start: datetime, end: datetime) -> dict[str, int]:
        """Fact rows in [start, end) whose time_key or coin_key has no dimension row."""
        return self._counts(*self.loader().orphan_queries(start, end))

    def table_counts(self) -> dict[str, int]:
        """Rows of every star table."""
        loader = self.loader()
        return self._counts({t.name: f"SELECT COUNT(*) FROM {loader.table(t)}" for t in star.STAR_TABLES}, [])

    def _counts(self, queries: dict[str, str], params: list) -> dict[str, int]:
        with odbc.connection(self.odbc_connection_string, self.sql_dialect()) as conn:
            try:
                return WindowLoader.run_counts(conn, queries, params)
            except pyodbc.Error as failure:
                raise odbc.error("counting warehouse rows failed", failure, self.odbc_connection_string) from None
            finally:
                conn.rollback()  # release read locks
