"""The one Definitions object: assets, resources from the environment (DESIGN §5), job and schedule."""

from __future__ import annotations

from dagster import (
    AssetSelection,
    Definitions,
    EnvVar,
    build_schedule_from_partitioned_job,
    define_asset_job,
    in_process_executor,
    load_assets_from_modules,
)

from crypto_assets.alerts import run_failure_alert
from crypto_assets.assets import bronze, gold, silver, warehouse
from crypto_assets.maintenance import maintenance_job, maintenance_schedule
from crypto_assets.partitions import hourly_partitions
from crypto_assets.resources.coingecko import CoinGeckoResource
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.resources.spark import SparkResource
from crypto_assets.resources.warehouse import DEFAULT_ODBC, WarehouseResource
from crypto_assets.settings import env, number_env


def _secret(name: str, default: str | None = None):
    """An EnvVar when set, so Dagster reads the value at run time and never shows it."""
    return EnvVar(name) if env(name) else default


assets = load_assets_from_modules([bronze, silver, gold, warehouse])
# The assets computed with Spark (their kind says so): a run selecting one starts Spark early.
SPARK_ASSET_KEYS = [spec.key for definition in assets for spec in definition.specs if "spark" in spec.kinds]

# Every asset of the graph, for one hour or a range of hours, in one process: one Spark
# session (one JVM) per run instead of one per step.
hourly_job = define_asset_job(
    "crypto_hourly",
    selection=AssetSelection.all(),
    partitions_def=hourly_partitions,
    executor_def=in_process_executor,
    description="Capture the market for the hour and carry it through Silver, Gold and the warehouse.",
    # deploy/dagster.yaml caps how many Spark runs the queued run coordinator starts at once.
    tags={"crypto_assets/spark": "true"},
)

hourly_schedule = build_schedule_from_partitioned_job(hourly_job, minute_of_hour=5)

resources = {
    "coingecko": CoinGeckoResource(
        api_key=_secret("COINGECKO_API_KEY"),
        plan=env("COINGECKO_PLAN", "demo"),
        base_url=env("COINGECKO_BASE_URL"),
        coins_limit=number_env("CRYPTO_COINS_LIMIT", 250, words={"all": None}),  # None: every coin listed
        calls_per_minute=number_env("COINGECKO_CALLS_PER_MINUTE", None, float),
    ),
    "spark": SparkResource(
        master=env("SPARK_MASTER", "local[*]"),
        remote=env("SPARK_REMOTE"),
        driver_memory=env("SPARK_DRIVER_MEMORY", "2g"),
        prewarm_for=[key.to_user_string() for key in SPARK_ASSET_KEYS],
    ),
    "lakehouse": LakehouseResource(
        root=env("CRYPTO_LAKE_ROOT", "./data/lake"),
        slice_hours=number_env("CRYPTO_SLICE_HOURS", 168, what="number of hours"),
    ),
    "warehouse": WarehouseResource(odbc_connection_string=_secret("CRYPTO_WAREHOUSE_ODBC", DEFAULT_ODBC)),
}

defs = Definitions(
    assets=assets,
    jobs=[hourly_job, maintenance_job],
    schedules=[hourly_schedule, maintenance_schedule],
    sensors=[run_failure_alert],
    resources=resources,
    executor=in_process_executor,
)
