"""Every column explained: in the lakehouse contract, on the asset pages and in the warehouse's
own documentation (the warehouse tests read it back from each engine's catalogue)."""

from __future__ import annotations

from crypto_assets import star_schema as star
from crypto_assets.definitions import defs
from crypto_assets.tables import ALL_TABLES, GOLD_TRENDS


def test_every_lakehouse_column_has_a_description():
    for table in ALL_TABLES:
        assert list(table.column_docs) == table.arrow_schema.names
        for name, doc in table.column_docs.items():
            assert len(doc) >= 10 and doc.endswith("."), (table.name, name, doc)


def test_every_star_relation_and_column_has_a_description():
    docs = star.documentation()
    assert len({(relation, column) for relation, column, _ in docs}) == len(docs)
    for relation, column, doc in docs:
        assert len(doc) >= 10 and doc.endswith("."), (relation, column, doc)
    # a fact's measures say what its lakehouse table says of them
    trends = {c.name: c.description for c in star.FACT_MARKET_TRENDS.columns}
    assert trends["rank_change_24h"] == GOLD_TRENDS.column_docs["rank_change_24h"]


def test_every_table_asset_shows_its_columns_described_in_the_ui():
    graph = defs.resolve_asset_graph()
    tables = 0
    for key in graph.get_all_asset_keys():
        schema = graph.get(key).metadata.get("dagster/column_schema")
        if schema is None:
            continue
        tables += 1
        assert schema.columns and all(column.description for column in schema.columns), key
    assert tables == len(ALL_TABLES) + len(star.STAR_TABLES)
