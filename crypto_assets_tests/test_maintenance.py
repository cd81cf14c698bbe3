"""The daily upkeep job on real Delta tables: closed days compacted, today left alone, old files
vacuumed only past the retention, a reader's older snapshot still readable, data unchanged."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest
from dagster import DagsterInstance

from crypto_assets import settings
from crypto_assets.maintenance import maintenance_job, maintenance_schedule
from crypto_assets.partitions import HOUR, current_hour
from crypto_assets.resources import lake_files
from crypto_assets.resources.lakehouse import LakehouseResource, replanned
from crypto_assets.tables import QUARANTINE, SILVER

PAST_DAY = datetime(2026, 1, 1, tzinfo=timezone.utc)


def quarantine_rows(hour: datetime, n: int = 3) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "coin_id": f"coin-{i}",
                "reason": "missing_price",
                "record_json": "{}",
                "source": "snapshot",
                "capture_id": f"c-{hour:%H}",
                "page": 1,
                "position": i,
                "ingested_at": hour,
                "ingest_hour": hour,
            }
            for i in range(n)
        ]
    )


@pytest.fixture(params=["folder", "s3"])
def lake(request, tmp_path) -> LakehouseResource:
    """QUARANTINE with six hourly writes on a past day and one this hour; the other tables absent.
    On a local folder and on S3 (moto's server)."""
    if request.param == "s3":
        request.getfixturevalue("s3")
    lake = LakehouseResource(root=f"s3://lake/{tmp_path.name}" if request.param == "s3" else str(tmp_path / "lake"))
    for i in range(6):
        hour = PAST_DAY + i * HOUR
        lake.write_window(QUARANTINE, quarantine_rows(hour), hour, hour + HOUR, "run-test")
    now = current_hour()
    lake.write_window(QUARANTINE, quarantine_rows(now), now, now + HOUR, "run-test")
    return lake


def all_rows(lake: LakehouseResource) -> pa.Table:
    return lake.read_window_arrow(QUARANTINE, PAST_DAY, current_hour() + HOUR).sort_by(
        [("ingest_hour", "ascending"), ("position", "ascending")]
    )


def day_files(lake: LakehouseResource, day: str) -> list[str]:
    return [uri for uri in lake.delta_table(QUARANTINE).file_uris() if f"ingest_date={day}" in uri]


def run_job(lake: LakehouseResource, **config):
    result = maintenance_job.execute_in_process(
        resources={"lakehouse": lake},
        instance=DagsterInstance.ephemeral(),
        run_config={"ops": {"compact_and_vacuum_tables": {"config": config}}},
    )
    assert result.success
    observations = {
        event.asset_key.to_user_string(): {
            k: v.value for k, v in event.event_specific_data.asset_observation.metadata.items()
        }
        for event in result.all_events
        if event.event_type_value == "ASSET_OBSERVATION"
    }
    return observations


def test_closed_days_are_compacted_and_old_files_vacuumed(lake):
    today = f"{current_hour():%Y-%m-%d}"
    before_rows = all_rows(lake)
    today_files = day_files(lake, today)
    assert len(day_files(lake, "2026-01-01")) == 6

    observed = run_job(lake, vacuum_retention_hours=0)

    stats = observed[QUARANTINE.asset_key.to_user_string()]
    assert (stats["files_before"], stats["files_after"]) == (7, 2)
    assert stats["files_compacted"] == 6 and stats["files_vacuumed"] == 6
    assert stats["files_on_disk_after"] == 2
    assert len(day_files(lake, "2026-01-01")) == 1
    assert day_files(lake, today) == today_files, "today's partition is the hourly run's: left alone"
    assert all_rows(lake).equals(before_rows)
    assert SILVER.asset_key.to_user_string() not in observed, "absent tables are skipped"


def test_default_retention_keeps_files_an_older_snapshot_reads(lake):
    reader_snapshot = lake.delta_table(QUARANTINE).file_uris()

    stats = run_job(lake)[QUARANTINE.asset_key.to_user_string()]

    assert stats["retention_hours"] == 168
    assert stats["files_compacted"] == 6 and stats["files_vacuumed"] == 0
    physical = pa.schema([f for f in QUARANTINE.arrow_schema if f.name != "ingest_date"])
    assert sum(len(lake_files.read_parquet(uri, physical)) for uri in reader_snapshot) == 21
    assert lake.delta_table(QUARANTINE).version() == stats["delta_version"]


def test_compaction_and_an_hourly_write_planned_at_the_same_time_both_commit(lake):
    now = current_hour()
    writer = lake.pin(QUARANTINE)  # the hourly run planned its write before the upkeep ran
    run_job(lake)
    lake.write_window(QUARANTINE, quarantine_rows(now, 5), now, now + HOUR, "hourly", base=writer)
    compactor = lake.delta_table(QUARANTINE)  # and the other way round
    lake.write_window(QUARANTINE, quarantine_rows(now, 6), now, now + HOUR, "hourly", base=lake.pin(QUARANTINE))
    compactor.optimize.compact(partition_filters=[("ingest_date", "<", f"{now:%Y-%m-%d}")])
    assert len(lake.read_window_arrow(QUARANTINE, now, now + HOUR)) == 6
    assert len(lake.read_window_arrow(QUARANTINE, PAST_DAY, PAST_DAY + 6 * HOUR)) == 18


def test_a_late_hour_written_into_a_day_being_compacted_is_replanned(lake):
    late = PAST_DAY + 2 * HOUR
    plans = []

    def plan_and_commit():
        plans.append(lake.pin(QUARANTINE))
        if len(plans) == 1:
            run_job(lake)  # the upkeep compacts the day between this run's read and its commit
        return lake.write_window(QUARANTINE, quarantine_rows(late, 5), late, late + HOUR, "late", base=plans[-1])

    replanned("late hour", plan_and_commit)
    assert len(plans) == 2 and len(lake.read_window_arrow(QUARANTINE, late, late + HOUR)) == 5
    assert len(lake.read_window_arrow(QUARANTINE, PAST_DAY, PAST_DAY + 6 * HOUR)) == 20


@pytest.mark.parametrize("value", ["a week", "-1", "1.5"])
def test_a_bad_retention_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("CRYPTO_VACUUM_RETENTION_HOURS", value)
    with pytest.raises(ValueError, match="CRYPTO_VACUUM_RETENTION_HOURS must be a whole number of at least 0"):
        settings.value("CRYPTO_VACUUM_RETENTION_HOURS")


def test_a_negative_retention_in_run_config_is_refused(lake):
    with pytest.raises(ValueError, match=r"vacuum_retention_hours\n  Input should be greater than or equal to 0"):
        run_job(lake, vacuum_retention_hours=-1)


def test_the_schedule_runs_the_job_daily_in_utc():
    assert maintenance_schedule.job_name == maintenance_job.name
    assert maintenance_schedule.cron_schedule == "30 3 * * *"
    assert maintenance_schedule.execution_timezone == "UTC"
