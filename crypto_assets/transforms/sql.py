"""SQL text shared by the transforms, which Spark is given as text (one parse per query, not one
call into the JVM per column expression)."""

from __future__ import annotations


def double(value: float) -> str:
    """SQL: exactly this double (``1000000000.0`` alone would be a decimal literal, compared as one)."""
    return f"CAST('{float(value)!r}' AS DOUBLE)"


# SQL: the Delta partition column, the UTC date of ``ingest_hour``. Derived where a query outputs
# it: a column read from the source travels with every lookback row through the shuffle and sort of
# a window (trends with a week of history: 168 rows a coin, one kept).
INGEST_DATE = "date_format(ingest_hour, 'yyyy-MM-dd')"
