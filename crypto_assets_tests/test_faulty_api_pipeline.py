"""A run against a misbehaving API, end to end through the CLI: drifted fields, numbers sent as
strings, coins repeated across pages, impossible values and a 429 in the middle of paging.
The run completes, nothing is lost (Bronze = Silver + quarantine), and every problem shows as
a failed check with readable metadata on the asset it concerns."""

from __future__ import annotations

import os

import pytest
from dagster import DagsterInstance

from crypto_assets.partitions import HOUR, current_hour, partition_key
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.simulator import Simulator
from crypto_assets.tables import BRONZE, QUARANTINE, SILVER
from support import materialize, settle_hour

LIMIT = 1000  # four pages of 250: one fault per page


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster_home")
    lake_root = tmp_path_factory.mktemp("lake")
    with Simulator(coins=LIMIT) as sim:
        sim.inject("drift", page=1)
        sim.inject("duplicates", page=2)  # repeats the last 3 coins of page 1
        sim.inject("429", page=3, retry_after=1)
        sim.inject("string_numbers", page=3)  # served on the retry
        sim.inject("bad_values", page=4)
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "COINGECKO_BASE_URL": sim.base_url,
            "COINGECKO_CALLS_PER_MINUTE": "60000",
            "CRYPTO_COINS_LIMIT": str(LIMIT),
            "CRYPTO_LAKE_ROOT": str(lake_root),
        }
        settle_hour()
        hour = current_hour()
        materialize(env, "--partition", partition_key(hour), select="key:raw_data/* or key:cleaned_data/*")
        statuses = [r["status"] for r in sim.requests]
    with DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs(limit=1)
        entries = [record.event_log_entry for record in instance.get_records_for_run(run.run_id, limit=10000).records]
        evaluations = [entry.asset_check_evaluation for entry in entries if entry.asset_check_evaluation]
        checks = {evaluation.check_name: evaluation for evaluation in evaluations}
    return {"lake": LakehouseResource(root=str(lake_root)), "hour": hour, "checks": checks, "statuses": statuses}


def test_the_429_was_retried_and_the_run_completed(faulty_run):
    assert 429 in faulty_run["statuses"] and faulty_run["statuses"].count(200) == 4


def test_nothing_is_lost_and_bad_records_are_quarantined_with_reasons(faulty_run):
    lake, hour = faulty_run["lake"], faulty_run["hour"]
    bronze, silver, quarantine = (
        lake.read_window_arrow(table, hour, hour + HOUR) for table in (BRONZE, SILVER, QUARANTINE)
    )
    assert len(bronze) == LIMIT == len(silver) + len(quarantine)
    reasons = sorted(quarantine.column("reason").to_pylist())
    assert "non_positive_price" in reasons and "negative_volume" in reasons
    assert "not_numeric:total_volume" in reasons
    assert reasons.count("duplicate_in_hour") == 3
    # numbers sent as strings that do parse are kept, typed
    assert len(silver) == LIMIT - len(reasons)


def test_each_problem_is_a_failed_check_with_readable_metadata(faulty_run):
    checks = faulty_run["checks"]
    drift = checks["no_schema_drift"]
    assert not drift.passed and drift.metadata["unknown_fields"].value == {"new_field_x": 250}
    duplicates = checks["no_duplicate_ids"]
    assert not duplicates.passed and duplicates.metadata["count"].value == 3
    # what was rejected is accounted for: the blocking checks hold
    assert checks["accounts_for_bronze"].passed and checks["unique_coin_hour"].passed
    assert checks["keys_and_price_valid"].passed
    assert checks["quarantine_ratio"].metadata["top_reasons"].value
