"""The SQL behind each panel, built from the star-schema definitions and the engine's dialect.

One function per panel returns ``(sql, params)``. Relation names come from ``Dialect.table()``
(SQLite: ``crypto_fact_market_overview``; elsewhere ``crypto.fact_market_overview``) and every
column is checked against its ``StarTable``, so a renamed column fails here, not on the page.
The SQL is the subset every supported engine runs (CTEs, ROW_NUMBER(), no LIMIT/TOP).
"""

from __future__ import annotations

from crypto_assets import star_schema as star
from crypto_assets.resources.warehouse.dialects import Dialect
from crypto_assets.star_schema import StarTable

Query = tuple[str, list]


class Names:
    """Qualified relations and checked, quoted columns for one dialect and schema."""

    def __init__(self, dialect: Dialect, schema: str):
        self.d, self.schema = dialect, schema

    def rel(self, table: StarTable) -> str:
        return self.d.table(self.schema, table.name)

    def col(self, alias: str, table: StarTable, column: str) -> str:
        if column not in table.column_names:
            raise KeyError(f"{table.name} has no column {column!r}")
        return f"{alias}.{self.d.ident(column)}"

    def cols(self, alias: str, table: StarTable, *columns: str) -> str:
        return ", ".join(self.col(alias, table, c) for c in columns)

    def q(self, name: str) -> str:
        return self.d.ident(name)


OVERVIEW_COLUMNS = (
    "coins_tracked", "total_market_cap", "total_volume", "btc_dominance_pct", "eth_dominance_pct",
    "advancers", "decliners", "high_volume_coins", "stale_coins",
)  # fmt: skip
DISTRIBUTION_COLUMNS = (
    "market_cap_tier", "tier_order", "coin_count", "total_market_cap", "total_volume", "market_cap_share",
    "volume_share",
)  # fmt: skip


def latest_hour(d: Dialect, schema: str) -> Query:
    """The newest hour the overview holds: every panel shows that hour or a window ending there."""
    n = Names(d, schema)
    o = star.FACT_MARKET_OVERVIEW
    return f"SELECT MAX({n.col('o', o, 'time_key')}) AS {n.q('time_key')} FROM {n.rel(o)} o", []


def overview(d: Dialect, schema: str, since_key: int) -> Query:
    """The whole market per hour from ``since_key`` on, oldest first."""
    n = Names(d, schema)
    o, t = star.FACT_MARKET_OVERVIEW, star.DIM_TIME
    sql = (
        f"SELECT {n.cols('o', o, 'time_key')}, {n.cols('t', t, 'hour_start')}, {n.cols('o', o, *OVERVIEW_COLUMNS)}\n"
        f"FROM {n.rel(o)} o JOIN {n.rel(t)} t ON {n.col('t', t, 'time_key')} = {n.col('o', o, 'time_key')}\n"
        f"WHERE {n.col('o', o, 'time_key')} >= ?\nORDER BY {n.col('o', o, 'time_key')}"
    )
    return sql, [since_key]


def distribution(d: Dialect, schema: str, hour_key: int) -> Query:
    """Coins, market cap and volume per market-cap tier in one hour, mega first."""
    n = Names(d, schema)
    f = star.FACT_MARKET_DISTRIBUTION
    sql = (
        f"SELECT {n.cols('f', f, *DISTRIBUTION_COLUMNS)}\nFROM {n.rel(f)} f\n"
        f"WHERE {n.col('f', f, 'time_key')} = ?\nORDER BY {n.col('f', f, 'tier_order')}"
    )
    return sql, [hour_key]


def movers(d: Dialect, schema: str, hour_key: int, top: int) -> Query:
    """The ``top`` largest 24 h changes each way in one hour, with the rank each way.

    The change is the warehouse's own ``return_24h_pct`` (fact_market_trends) where it has the
    coin 24 h earlier, else CoinGecko's reported ``price_change_percentage_24h`` (a live
    snapshot's): a lake with less than a day of history still shows its movers; ``basis`` says
    which one a row has. Coins with neither are left out.
    """
    n = Names(d, schema)
    q = n.q
    s, c, tr = star.FACT_MARKET_SNAPSHOT, star.DIM_COIN, star.FACT_MARKET_TRENDS
    own, reported = n.col("tr", tr, "return_24h_pct"), n.col("s", s, "price_change_percentage_24h")
    change = q("change_24h_pct")
    sql = (
        f"WITH {q('changes')} AS (\n"
        f"  SELECT {n.cols('c', c, 'coin_id', 'symbol', 'name')},\n"
        f"    {n.cols('s', s, 'market_cap_rank', 'current_price')},\n"
        f"    COALESCE({own}, {reported}) AS {change},\n"
        f"    CASE WHEN {own} IS NOT NULL THEN 'warehouse 24h return' ELSE 'CoinGecko 24h change' END AS {q('basis')}\n"
        f"  FROM {n.rel(s)} s\n"
        f"  JOIN {n.rel(c)} c ON {n.col('c', c, 'coin_key')} = {n.col('s', s, 'coin_key')}\n"
        f"  LEFT JOIN {n.rel(tr)} tr ON {n.col('tr', tr, 'time_key')} = {n.col('s', s, 'time_key')}"
        f" AND {n.col('tr', tr, 'coin_key')} = {n.col('s', s, 'coin_key')}\n"
        f"  WHERE {n.col('s', s, 'time_key')} = ?\n"
        f"), {q('ranked')} AS (\n"
        f"  SELECT x.*, ROW_NUMBER() OVER (ORDER BY x.{change} DESC, x.{q('coin_id')}) AS {q('up_rank')},\n"
        f"    ROW_NUMBER() OVER (ORDER BY x.{change} ASC, x.{q('coin_id')}) AS {q('down_rank')}\n"
        f"  FROM {q('changes')} x WHERE x.{change} IS NOT NULL\n"
        f")\n"
        f"SELECT * FROM {q('ranked')} r WHERE r.{q('up_rank')} <= ? OR r.{q('down_rank')} <= ?\n"
        f"ORDER BY r.{q('up_rank')}"
    )
    return sql, [hour_key, top, top]


def split_movers(rows: list[dict], top: int) -> tuple[list[dict], list[dict]]:
    """(gainers, losers) of ``movers`` rows: the ``top`` largest rises and falls, a coin that did
    not move either way in neither."""
    up = sorted((r for r in rows if r["up_rank"] <= top and r["change_24h_pct"] > 0), key=lambda r: r["up_rank"])
    down = sorted((r for r in rows if r["down_rank"] <= top and r["change_24h_pct"] < 0), key=lambda r: r["down_rank"])
    return up, down


def quality(d: Dialect, schema: str, since_key: int) -> Query:
    """Per loaded hour (dim_time) from ``since_key`` on: what the overview says it counted and
    what the other facts hold for that hour, for ``quality.statuses`` to compare."""
    n = Names(d, schema)
    q = n.q
    t, o = star.DIM_TIME, star.FACT_MARKET_OVERVIEW
    counted = (
        ("snapshot_rows", star.FACT_MARKET_SNAPSHOT, "COUNT(*)"),
        (
            "tier_coins",
            star.FACT_MARKET_DISTRIBUTION,
            f"SUM({n.col('x', star.FACT_MARKET_DISTRIBUTION, 'coin_count')})",
        ),
        ("trend_rows", star.FACT_MARKET_TRENDS, "COUNT(*)"),
        ("volatility_rows", star.FACT_PRICE_VOLATILITY, "COUNT(*)"),
    )
    time_key = q("time_key")
    joins = "".join(
        f"LEFT JOIN (SELECT {n.col('x', fact, 'time_key')} AS {time_key}, {aggregate} AS {q('n')} FROM {n.rel(fact)} x"
        f" WHERE {n.col('x', fact, 'time_key')} >= ? GROUP BY {n.col('x', fact, 'time_key')}) {alias}"
        f" ON {alias}.{time_key} = {n.col('t', t, 'time_key')}\n"
        for (alias, fact, aggregate) in ((f"a{i}", fact, agg) for i, (_, fact, agg) in enumerate(counted))
    )
    measures = ", ".join(f"a{i}.{q('n')} AS {q(name)}" for i, (name, _, _) in enumerate(counted))
    sql = (
        f"SELECT {n.cols('t', t, 'time_key', 'hour_start')}, {n.cols('o', o, 'coins_tracked', 'stale_coins')}, "
        f"{measures}\nFROM {n.rel(t)} t\n"
        f"LEFT JOIN {n.rel(o)} o ON {n.col('o', o, 'time_key')} = {n.col('t', t, 'time_key')}\n"
        f"{joins}WHERE {n.col('t', t, 'time_key')} >= ?\nORDER BY {n.col('t', t, 'time_key')}"
    )
    return sql, [since_key] * (len(counted) + 1)
