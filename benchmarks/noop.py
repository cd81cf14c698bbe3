"""The CLI floor for benchmarks/scale.py: one partitioned asset that does nothing, so
`dagster asset materialize` of it measures Dagster's own cost of a run (imports, instance, run)."""

from dagster import Definitions, asset

from crypto_assets.partitions import hourly_partitions


@asset(partitions_def=hourly_partitions)
def noop() -> None:
    """Nothing: the cost measured is the run around it."""


defs = Definitions(assets=[noop])
