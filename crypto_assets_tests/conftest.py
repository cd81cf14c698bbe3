"""Shared pytest fixtures."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession


@pytest.fixture(scope="session")
def spark():
    """One small local Spark session for the whole test run (UTC, ANSI on as by default)."""
    session = (
        SparkSession.builder.master("local[2]")
        .appName("crypto_assets_tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
