"""SQL text shared by the transforms, which Spark is given as text (one parse per query, not one
call into the JVM per column expression)."""

from __future__ import annotations


def double(value: float) -> str:
    """SQL: exactly this double (``1000000000.0`` alone would be a decimal literal, compared as one)."""
    return f"CAST('{float(value)!r}' AS DOUBLE)"
