"""One window load, inside the caller's transaction: schema creation and additive evolution, the
time dimension, dim_coin as SCD-2, and the facts of hours [start, end) replaced.

Everything here takes star-schema table objects (``star_schema``), never names spelled out, and a
``Dialect`` for every engine-specific word.
"""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

import pyarrow as pa
from dagster import get_dagster_logger

from crypto_assets import star_schema as star
from crypto_assets.coin_versions import CoinVersion, apply_observations, version_at
from crypto_assets.partitions import hours_in, naive_utc
from crypto_assets.resources.warehouse.dialects import Dialect
from crypto_assets.resources.warehouse.odbc import WarehouseError
from crypto_assets.star_schema import Column, StarTable

# A Dagster logger: inside a run its lines go to the run log (and the UI), outside to stderr.
log = get_dagster_logger("crypto_assets.warehouse")


@dataclass(frozen=True)
class WindowLoad:
    """One window load as seen inside its transaction: what it wrote, what the window then holds."""

    written: dict[str, int]  # rows written per table
    counts: dict[str, int]  # fact rows in the window
    orphans: dict[str, int]  # fact rows in the window without their dimension rows
    committed: bool


def identifier(name: str, what: str) -> str:
    if not star.IDENTIFIER.match(name):
        raise WarehouseError(f"{what} {name!r} is not a lower_snake_case SQL identifier")
    return name


def inputs_of(silver: pa.Table, gold: dict[str, pa.Table]) -> list[tuple[StarTable, pa.Table]]:
    """(fact table, its rows) for Silver and each Gold table given by name."""
    inputs = [(star.FACT_MARKET_SNAPSHOT, silver)]
    for name, table in gold.items():
        fact = star.FACT_BY_SOURCE.get(name)
        if fact is None or fact is star.FACT_MARKET_SNAPSHOT:
            raise WarehouseError(f"unknown Gold table {name!r}; expected one of {sorted(star.FACT_BY_SOURCE)[:-1]}")
        inputs.append((fact, table))
    return inputs


class WindowLoader:
    """The statements of a load for one engine, schema and driver."""

    def __init__(self, dialect: Dialect, schema: str, driver: str):
        self.d, self.schema, self.driver = dialect, schema, driver

    def table(self, table: StarTable | str) -> str:
        return self.d.table(self.schema, table if isinstance(table, str) else table.name)

    # -- counts --

    def window_count_queries(self, start: datetime, end: datetime) -> tuple[dict[str, str], list]:
        q = self.d.ident
        queries = {
            f.name: f"SELECT COUNT(*) FROM {self.table(f)} WHERE {q('time_key')} >= ? AND {q('time_key')} < ?"
            for f in star.FACTS
        }
        return queries, [star.time_key(start), star.time_key(end)]

    def orphan_queries(self, start: datetime, end: datetime) -> tuple[dict[str, str], list]:
        q = self.d.ident
        queries = {}
        for fact in star.FACTS:
            joins = f"LEFT JOIN {self.table(star.DIM_TIME)} t ON t.{q('time_key')} = f.{q('time_key')}"
            missing = f"t.{q('time_key')} IS NULL"
            if fact.has_coin:
                joins += f" LEFT JOIN {self.table(star.DIM_COIN)} c ON c.{q('coin_key')} = f.{q('coin_key')}"
                missing += f" OR c.{q('coin_key')} IS NULL"
            queries[fact.name] = (
                f"SELECT COUNT(*) FROM {self.table(fact)} f {joins} "
                f"WHERE f.{q('time_key')} >= ? AND f.{q('time_key')} < ? AND ({missing})"
            )
        return queries, [star.time_key(start), star.time_key(end)]

    @staticmethod
    def run_counts(conn, queries: dict[str, str], params: list) -> dict[str, int]:
        """One cursor per query, closed after it: the SQLite3 ODBC driver keeps every statement
        run on a cursor until that cursor closes (a year of slices grew by a gigabyte)."""
        counts = {}
        for name, sql in queries.items():
            with closing(conn.cursor()) as cursor:
                counts[name] = cursor.execute(sql, params).fetchone()[0]
        return counts

    # -- schema --

    def existing_columns(self, cursor) -> dict[str, set[str]]:
        """Relation name -> its column names (lower case), for the star schema's relations."""
        sql, params = self.d.relations_query(self.schema)
        existing: dict[str, set[str]] = {}
        for relation, column in cursor.execute(sql, params).fetchall():
            existing.setdefault(self.d.relation_name(self.schema, relation).lower(), set()).add(column.lower())
        return existing

    def record_schema_change(self, cursor, notes: list[str]) -> None:
        versions = star.SCHEMA_VERSION_TABLE
        current = (
            cursor.execute(f"SELECT MAX({self.d.ident('version')}) FROM {self.table(versions)}").fetchone()[0] or 0
        )
        cursor.execute(
            self.d.insert(self.schema, versions.name, versions.column_names, 1),
            current + 1,
            naive_utc(datetime.now(timezone.utc)).replace(microsecond=0),
            f"star schema v{star.SCHEMA_VERSION}: " + "; ".join(notes),
        )
        log.info("warehouse schema %s: %s", self.schema, "; ".join(notes))

    def create_missing(self, conn) -> list[str]:
        """Create the tables and views that are missing (never drop); what was created."""
        existing = self.existing_columns(conn)
        notes = []
        if not existing:
            for statement in self.d.create_schema(self.schema):
                conn.execute(statement)
        for table in star.CREATED_TABLES:
            if table.name not in existing:
                conn.execute(self.d.create_table(self.schema, table))
                notes.append(f"created {table.name}")
        for name, select in self.d.views(self.schema):
            if name not in existing:
                conn.execute(self.d.create_view(self.schema, name, select))
        if notes:
            self.record_schema_change(conn, notes)
        self.document(conn)
        return notes

    def document(self, conn) -> bool:
        """Bring ``column_docs`` and the engine's comments up to ``star.documentation()`` when they
        differ (a new schema, changed descriptions); whether they did. One read when they agree."""
        docs = star.documentation()
        table, names = star.COLUMN_DOCS, star.COLUMN_DOCS.column_names
        stored = conn.execute(f"SELECT {', '.join(map(self.d.ident, names))} FROM {self.table(table)}").fetchall()
        if sorted(tuple(row) for row in stored) == sorted(docs):
            return False
        conn.execute(f"DELETE FROM {self.table(table)}")
        self.insert(conn.cursor(), table, names, docs)
        for statement in self.d.comments(self.schema, docs):
            conn.execute(statement)
        return True

    def add_new_columns(self, cursor, inputs: list[tuple[StarTable, pa.Table]]) -> None:
        """Add the input columns a fact table lacks (new Silver/Gold columns), inside the load."""
        existing = self.existing_columns(cursor)
        notes = []
        for fact, arrow in inputs:
            types = {f.name: f.type for f in arrow.schema}
            have = existing.setdefault(fact.name, {c.lower() for c in fact.column_names})
            for column in star.carried_columns(fact, arrow):
                if column.lower() not in have:
                    identifier(column, f"new column of {fact.name}")
                    kind = star.arrow_kind(types[column])
                    cursor.execute(self.d.add_column(self.schema, fact.name, Column(column, kind)))
                    have.add(column.lower())
                    notes.append(f"added {fact.name}.{column} {kind}")
        if notes:
            self.record_schema_change(cursor, notes)

    # -- the load --

    def load(self, cursor, inputs: list[tuple[StarTable, pa.Table]], start: datetime, end: datetime) -> dict[str, int]:
        q = self.d.ident
        start_key, end_key = star.time_key(start), star.time_key(end)
        keyed = []
        for fact, arrow in inputs:
            keys = star.hour_keys(arrow)
            outside = [k for k in set(keys) if not start_key <= k < end_key]
            if outside:
                raise WarehouseError(
                    f"{fact.source_table.name} has rows outside the window [{start_key}, {end_key}): "
                    f"hours {sorted(outside)[:5]}"
                )
            keyed.append((fact, arrow, keys))
        written: dict[str, int] = {}

        hours = [star.dim_time_row(h) for h in hours_in(start, end)]
        have = {
            row[0]
            for row in cursor.execute(
                f"SELECT {q('time_key')} FROM {self.table(star.DIM_TIME)} WHERE {q('time_key')} >= ? AND {q('time_key')} < ?",
                start_key,
                end_key,
            ).fetchall()
        }
        written[star.DIM_TIME.name] = self.insert(
            cursor, star.DIM_TIME, star.DIM_TIME.column_names, [r for r in hours if r[0] not in have]
        )

        written[star.DIM_COIN.name], versions_by_coin, repoints = self.apply_scd2(
            cursor, keyed[0][1], keyed[0][2], end_key
        )
        for fact in (f for f in star.FACTS if f.has_coin):
            for old_key, new_key, from_key in repoints:
                cursor.execute(
                    f"UPDATE {self.table(fact)} SET {q('coin_key')} = ? WHERE {q('coin_key')} = ? "
                    f"AND {q('time_key')} >= ?",
                    new_key,
                    old_key,
                    from_key,
                )

        for fact, arrow, keys in keyed:
            cursor.execute(
                f"DELETE FROM {self.table(fact)} WHERE {q('time_key')} >= ? AND {q('time_key')} < ?", start_key, end_key
            )
            columns, rows = self.fact_rows(fact, arrow, keys, versions_by_coin)
            written[fact.name] = self.insert(cursor, fact, columns, rows)
        return written

    def apply_scd2(self, cursor, silver: pa.Table, keys: list[int], end_key: int):
        """Fold the window's (coin, hour, symbol, name) into dim_coin; write the differences.

        Returns (rows changed, versions by coin id, repoints) where a repoint
        (old key, new key, from time_key) moves later facts to a split-off version.
        """
        q, dim_coin = self.d.ident, star.DIM_COIN
        names = ["coin_key", "coin_id", "symbol", "name", "valid_from", "valid_to", "first_seen", "last_seen"]
        by_coin: dict[str, list[CoinVersion]] = {}
        before: dict[int, tuple] = {}
        for r in cursor.execute(f"SELECT {', '.join(map(q, names))} FROM {self.table(dim_coin)}").fetchall():
            key, coin_id, symbol, name, valid_from, valid_to, first_seen, last_seen = r  # naive UTC times
            v = CoinVersion(coin_id, symbol, name, valid_from, valid_to, first_seen, last_seen, coin_key=key)
            by_coin.setdefault(coin_id, []).append(v)
            before[key] = v.row()
        max_key = max(before, default=0)

        observed: dict[str, list] = {}
        hour_of = {k: star.hour_of_time_key(k) for k in set(keys)}
        for coin_id, symbol, name, key in zip(
            silver.column("coin_id").to_pylist(),
            silver.column("symbol").to_pylist(),
            silver.column("name").to_pylist(),
            keys,
        ):
            if coin_id is None:
                raise WarehouseError("silver_market_snapshots has a row without coin_id")
            observed.setdefault(coin_id, []).append((hour_of[key], symbol, name))

        def later_fact_hour(coin_key: int) -> Optional[datetime]:
            firsts = [
                cursor.execute(
                    f"SELECT MIN({q('time_key')}) FROM {self.table(f)} WHERE {q('coin_key')} = ? "
                    f"AND {q('time_key')} >= ?",
                    coin_key,
                    end_key,
                ).fetchone()[0]
                for f in star.FACTS
                if f.has_coin
            ]
            found = [k for k in firsts if k is not None]
            return star.hour_of_time_key(min(found)) if found else None

        new: list[CoinVersion] = []
        for coin_id in sorted(observed):
            by_coin[coin_id] = apply_observations(
                coin_id, by_coin.get(coin_id, []), observed[coin_id], star.hour_of_time_key(end_key), later_fact_hour
            )
            new += [v for v in by_coin[coin_id] if v.coin_key is None]
        for v in sorted(new, key=lambda v: (v.coin_id, v.valid_from)):  # deterministic keys
            max_key += 1
            v.coin_key = max_key

        updates = [v for vs in by_coin.values() for v in vs if v.coin_key in before and v.row() != before[v.coin_key]]
        columns = dim_coin.column_names
        assignments = ", ".join(f"{q(c)} = ?" for c in columns[1:])
        # updates before inserts: a version moved off an hour frees it for the new one
        for v in updates:
            cursor.execute(
                f"UPDATE {self.table(dim_coin)} SET {assignments} WHERE {q('coin_key')} = ?", *v.row()[1:], v.coin_key
            )
        self.insert(cursor, dim_coin, columns, [v.row() for v in new])
        repoints = [
            (v.takes_over_from, v.coin_key, star.time_key(v.valid_from)) for v in new if v.takes_over_from is not None
        ]
        for versions in by_coin.values():
            versions.sort(key=lambda version: version.valid_from)
        return len(updates) + len(new), by_coin, repoints

    @staticmethod
    def fact_rows(fact: StarTable, arrow: pa.Table, keys: list[int], by_coin) -> tuple[list[str], list[tuple]]:
        carried = star.carried_columns(fact, arrow)
        values = [star.column_values(arrow, c) for c in carried]
        if not fact.has_coin:
            return ["time_key", *carried], list(zip(keys, *values))
        hour_of = {k: star.hour_of_time_key(k) for k in set(keys)}
        coin_keys = []
        for coin_id, key in zip(arrow.column("coin_id").to_pylist(), keys):
            version = version_at(by_coin.get(coin_id, []), hour_of[key])
            if version is None:
                raise WarehouseError(
                    f"{fact.source_table.name}: coin {coin_id!r} at {hour_of[key]:%Y-%m-%d %H:00} has no dim_coin version "
                    "(Silver for that hour must be loaded with or before it)"
                )
            coin_keys.append(version.coin_key)
        return ["time_key", "coin_key", *carried], list(zip(keys, coin_keys, *values))

    def insert(self, cursor, table: StarTable, columns: list[str], rows: list[tuple]) -> int:
        started = time.perf_counter()
        if rows:
            self.d.insert_rows(cursor, self.schema, table, columns, rows, self.driver)
        log.info("warehouse %s: %d rows in %.2fs", table.name, len(rows), time.perf_counter() - started)
        return len(rows)
