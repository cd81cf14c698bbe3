"""The one Definitions object: assets, resources from the settings table, jobs, schedules, alert sensors."""

from __future__ import annotations

import os

from dagster import (
    AssetsDefinition,
    AssetSelection,
    Definitions,
    build_schedule_from_partitioned_job,
    define_asset_job,
    in_process_executor,
    load_assets_from_modules,
)

from crypto_assets.alerts import check_failure_alert, freshness_alert, missed_schedule_alert, run_failure_alert
from crypto_assets.assets import bronze, gold, silver, warehouse
from crypto_assets.maintenance import maintenance_job, maintenance_schedule
from crypto_assets.partitions import hourly_partitions
from crypto_assets.resources.alert_webhook import AlertWebhookResource
from crypto_assets.resources.coingecko import CoinGeckoResource
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.resources.spark import SparkResource
from crypto_assets.resources.warehouse import WarehouseResource
from crypto_assets.settings import resource_config

# A run over a range of hours records one "planned" event per asset, naming the range, instead
# of one per asset and hour: otherwise creating a 744-hour run writes 10,000 events before it
# starts (209 s measured on SQLite) and a year 123,000. The price: a failed range run leaves its
# hours "missing" rather than "failed" in the partition bar (the run and the alert still say
# it failed). Processes that create runs without importing this module — the deployed
# webserver and daemon — get it from docker-compose.yml.
os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")

assets = load_assets_from_modules([bronze, silver, gold, warehouse])
# The assets computed with Spark (their kind says so): a run selecting one starts Spark early,
# and stops it once the last of them is done.
SPARK_ASSET_KEYS = [
    spec.key
    for definition in assets
    if isinstance(definition, AssetsDefinition)
    for spec in definition.specs
    if "spark" in spec.kinds
]

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

# Each resource's settable fields come from the settings table (crypto_assets/settings.py).
resources = {
    "coingecko": CoinGeckoResource(**resource_config("coingecko")),
    "spark": SparkResource(**resource_config("spark"), spark_assets=[key.to_user_string() for key in SPARK_ASSET_KEYS]),
    "lakehouse": LakehouseResource(**resource_config("lakehouse")),
    "warehouse": WarehouseResource(**resource_config("warehouse")),
    "alert_webhook": AlertWebhookResource(**resource_config("alert_webhook")),
}

defs = Definitions(
    assets=assets,
    jobs=[hourly_job, maintenance_job],
    schedules=[hourly_schedule, maintenance_schedule],
    sensors=[
        run_failure_alert,
        check_failure_alert,
        freshness_alert,
        missed_schedule_alert(hourly_schedule.name),
    ],
    resources=resources,
    executor=in_process_executor,
)
