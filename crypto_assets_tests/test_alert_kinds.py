"""Every alert kind beyond the failed run, end to end: real events in a real instance (SQLite, as
`make demo` keeps it), the project's sensor evaluated against it, and the messages as a local
HTTP receiver got them — once, however often the sensor looks again.

The events come from Dagster itself: stand-in assets with checks materialised, evaluations
reported without a run, the freshness daemon and the scheduler run for one iteration over the
project's own definitions (with Dagster's clock moved, where time has to pass)."""

import logging
from contextlib import contextmanager
from datetime import timedelta

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetMaterialization,
    Config,
    DagsterInstance,
    Definitions,
    MaterializeResult,
    SensorResult,
    asset,
    build_sensor_context,
    materialize,
)
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.freshness import FreshnessDaemon
from dagster._scheduler.scheduler import launch_scheduled_runs
from webhook_receiver import Receiver, evaluate_run_failure_alert, posted_text

from crypto_assets.alerts import check_failure_alert, freshness_alert, missed_schedule_alert
from crypto_assets.definitions import defs, hourly_schedule
from crypto_assets.partitions import HOUR, current_hour, floor_hour, hour_label, hourly_partitions, partition_key
from crypto_assets.resources.alert_webhook import AlertWebhookResource
from support import settle_hour

API_KEY = "CG-s3cr3t-test-key-0042"
UI = "http://dagster.example:3000"
PROBE = AssetKey(["cleaned_data", "probe"])
LOCATION = "crypto_assets"


class Outcome(Config):
    warning_fails: bool = True
    blocking_fails: bool = False


@asset(
    key=PROBE,
    partitions_def=hourly_partitions,
    check_specs=[
        AssetCheckSpec("no_schema_drift", asset=PROBE, description="the API's fields are the ones expected"),
        AssetCheckSpec("prices_positive", asset=PROBE, blocking=True),
    ],
)
def probe(config: Outcome):
    """A stand-in for a Silver table: one warning check and one blocking check, failing on demand."""
    return MaterializeResult(
        check_results=[
            AssetCheckResult(
                check_name="no_schema_drift",
                passed=not config.warning_fails,
                severity=AssetCheckSeverity.WARN,
                metadata={"unknown_fields": ["total_supply_usd"]},
            ),
            AssetCheckResult(
                check_name="prices_positive",
                passed=not config.blocking_fails,
                metadata={"bad_rows": 3},
            ),
        ]
    )


@pytest.fixture
def receiver(monkeypatch):
    server = Receiver()
    monkeypatch.setenv("COINGECKO_API_KEY", API_KEY)  # a secret of the deployment, to be scrubbed
    yield server
    server.close()


@pytest.fixture
def instance(tmp_path):
    """A persistent instance in a temporary DAGSTER_HOME; runs are queued, as deploy/dagster.yaml does."""
    (tmp_path / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: QueuedRunCoordinator\n"
        "telemetry:\n  enabled: false\n"
    )
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


@contextmanager
def project_workspace(instance: DagsterInstance):
    """The project's definitions loaded as the daemon loads a code location."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="crypto_assets.definitions", attribute="defs"), location_name=LOCATION
    )
    with create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(origin), instance) as workspace:
        yield workspace


def evaluate(sensor, instance, webhook, cursor=None, definitions=defs):
    """One tick of ``sensor``; returns the cursor it leaves."""
    context = build_sensor_context(
        instance=instance, cursor=cursor, definitions=definitions, resources={"alert_webhook": webhook}
    )
    result = sensor(context)
    return result.cursor if isinstance(result, SensorResult) else cursor


def materialize_probe(instance, hour, **outcome):
    return materialize(
        [probe],
        instance=instance,
        partition_key=partition_key(hour),
        run_config={"ops": {"cleaned_data__probe": {"config": outcome}}},
        raise_on_error=False,
    )


PROBE_DEFS = Definitions(assets=[probe])


def evaluate_checks(instance, webhook, cursor=None):
    return evaluate(check_failure_alert, instance, webhook, cursor, PROBE_DEFS)


# --- failed checks ----------------------------------------------------------------------------


def test_a_failing_warning_check_is_posted_with_asset_hour_findings_and_run_link(receiver, instance):
    settle_hour()
    hour = current_hour() - HOUR
    run = materialize_probe(instance, hour)
    assert run.success  # a warning does not fail its run: no run alert names it
    webhook = AlertWebhookResource(url=receiver.url, ui_url=UI)
    cursor = evaluate_checks(instance, webhook)

    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    text = posted_text(body)
    assert body["text"].startswith(
        f"Check no_schema_drift (warning) on cleaned_data/probe failed (hours {hour_label(hour)})"
    )
    assert "total_supply_usd" in body["text"]  # what it found
    assert f"<{UI}/runs/{run.run_id}|{run.run_id}>" in text
    assert "the API's fields are the ones expected" in text  # what the check verifies
    assert "prices_positive" not in text  # it passed
    assert body["blocks"][0]["text"]["text"].startswith(":warning: Warning check no_schema_drift failed")

    evaluate_checks(instance, webhook, cursor)  # the sensor looks again: nothing new
    assert len(receiver.bodies) == 1


def test_daily_mode_posts_the_first_failure_of_a_check_per_utc_day(receiver, instance):
    settle_hour()
    webhook = AlertWebhookResource(url=receiver.url, warnings="daily")
    first, second = current_hour() - 2 * HOUR, current_hour() - HOUR
    if first.date() != second.date():  # the two hours on either side of midnight: two days
        first, second = second, second
    materialize_probe(instance, first)
    cursor = evaluate_checks(instance, webhook)
    materialize_probe(instance, second)
    evaluate_checks(instance, webhook, cursor)

    assert len(receiver.bodies) == 1
    assert "Later failures of this check today (UTC) are not posted" in posted_text(receiver.bodies[0])


def test_every_mode_posts_each_failing_hour_once(receiver, instance):
    settle_hour()
    webhook = AlertWebhookResource(url=receiver.url, warnings="every")
    first, second = current_hour() - 2 * HOUR, current_hour() - HOUR
    materialize_probe(instance, first)
    cursor = evaluate_checks(instance, webhook)
    materialize_probe(instance, first)  # the same hour re-executed, failing the same check again
    cursor = evaluate_checks(instance, webhook, cursor)
    materialize_probe(instance, second)
    evaluate_checks(instance, webhook, cursor)

    texts = receiver.texts()
    assert len(texts) == 2, texts
    assert f"(hours {hour_label(first)})" in texts[0] and f"(hours {hour_label(second)})" in texts[1]


def test_off_mode_posts_no_warning_but_still_a_blocking_check(receiver, instance):
    webhook = AlertWebhookResource(url=receiver.url, warnings="off")
    materialize_probe(instance, current_hour() - HOUR)
    cursor = evaluate_checks(instance, webhook)
    assert receiver.bodies == []

    instance.report_runless_asset_event(
        AssetCheckEvaluation(
            asset_key=PROBE, check_name="prices_positive", passed=False, severity=AssetCheckSeverity.ERROR
        )
    )
    evaluate_checks(instance, webhook, cursor)
    assert len(receiver.bodies) == 1 and "prices_positive (blocking)" in receiver.texts()[0]


def test_a_blocking_check_failing_outside_a_run_is_posted_scrubbed_and_escaped(receiver, instance):
    """An evaluation reported without a run (the REST API, an external tool) fails no run: the
    check sensor posts it, linking the asset's checks."""
    hour = current_hour() - 3 * HOUR
    failure = AssetCheckEvaluation(
        asset_key=PROBE,
        check_name="prices_positive",
        passed=False,
        severity=AssetCheckSeverity.ERROR,
        partition=partition_key(hour),
        metadata={"note": "<!channel> seen with key " + API_KEY},
    )
    webhook = AlertWebhookResource(url=receiver.url, ui_url=UI)
    instance.report_runless_asset_event(failure)
    cursor = evaluate_checks(instance, webhook)
    evaluate_checks(instance, webhook, cursor)  # the sensor looks again: nothing new

    assert len(receiver.bodies) == 1
    text = posted_text(receiver.bodies[0])
    assert receiver.texts()[0].startswith(
        f"Check prices_positive (blocking) on cleaned_data/probe failed (hours {hour_label(hour)})"
    )
    assert f"<{UI}/assets/cleaned_data/probe?view=checks|cleaned_data/probe>" in text
    assert "reported without a run" in text
    assert API_KEY not in text and "<!channel>" not in text and "&lt;!channel&gt;" in text


def test_a_secret_holding_markup_characters_is_scrubbed_before_escaping(receiver, instance, monkeypatch):
    secret = "CG-a&b<c>-0042"
    monkeypatch.setenv("COINGECKO_API_KEY", secret)
    instance.report_runless_asset_event(
        AssetCheckEvaluation(
            asset_key=PROBE, check_name="prices_positive", passed=False, metadata={"request": f"key={secret}"}
        )
    )
    evaluate_checks(instance, AlertWebhookResource(url=receiver.url))
    text = posted_text(receiver.bodies[0])
    assert "a&b<c>" not in text and "a&amp;b&lt;c&gt;" not in text and "key=***" in text


def test_the_checks_of_a_failed_run_are_posted_once_by_the_run_alert(receiver, instance):
    """A failed blocking check fails its run: one message names the run and both failed checks;
    the check sensor, looking at the same evaluations, adds nothing."""
    hour = current_hour() - HOUR
    result = materialize_probe(instance, hour, blocking_fails=True)
    webhook = AlertWebhookResource(url=receiver.url)
    evaluate_checks(instance, webhook)
    assert receiver.bodies == []  # the checks of a failed run are the run alert's

    # Dagster fails a step whose blocking check failed; the run-failure sensor reports the run.
    assert not result.success
    evaluate_run_failure_alert(instance, result, webhook)
    assert len(receiver.bodies) == 1
    text = posted_text(receiver.bodies[0])
    assert "blocking `prices_positive` on `cleaned_data/probe`" in text
    assert "warning `no_schema_drift` on `cleaned_data/probe`" in text
    assert hour_label(hour) in receiver.texts()[0]


def test_a_webhook_failing_halfway_posts_the_rest_next_tick_and_nothing_twice(instance):
    receiver = Receiver(200, 500, 200)
    webhook = AlertWebhookResource(url=receiver.url, warnings="every")
    hours = [current_hour() - 3 * HOUR, current_hour() - 2 * HOUR]
    for hour in hours:
        materialize_probe(instance, hour)
    try:
        cursor = evaluate_checks(instance, webhook)  # the first is delivered, the second refused
        assert len(receiver.bodies) == 1 and receiver.refused == 1
        evaluate_checks(instance, webhook, cursor)
    finally:
        receiver.close()
    texts = receiver.texts()
    assert len(texts) == 2 and f"(hours {hour_label(hours[1])})" in texts[1], texts


# --- freshness ------------------------------------------------------------------------------


def test_a_freshness_failure_is_posted_once_naming_the_stale_tables_and_missing_hours(receiver, instance):
    """Two Gold tables materialised for one hour, then two hours pass with nothing: Dagster's
    freshness daemon fails their policy (FreshnessPolicy.time_window, 2 h) and one message names both."""
    settle_hour()
    hour = current_hour() - HOUR
    tables = [
        AssetKey(["aggregated_data", "gold_market_overview"]),
        AssetKey(["aggregated_data", "gold_market_trends"]),
    ]
    for key in tables:
        instance.report_runless_asset_event(AssetMaterialization(key, partition=partition_key(hour)))
    webhook = AlertWebhookResource(url=receiver.url, ui_url=UI)
    later = current_hour() + timedelta(hours=3, minutes=10)  # over two hours after the update
    with project_workspace(instance) as workspace:
        daemon = FreshnessDaemon()
        list(daemon.run_iteration(workspace))  # fresh: PASS
        cursor = evaluate(freshness_alert, instance, webhook)
        assert receiver.bodies == []
        with freeze_time(later):
            list(daemon.run_iteration(workspace))  # no update for over two hours: FAIL
        cursor = evaluate(freshness_alert, instance, webhook, cursor)
        evaluate(freshness_alert, instance, webhook, cursor)  # still failing: not posted again

    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    text = posted_text(body)
    missing = f"{hour_label(hour + HOUR)} to {hour_label(floor_hour(later))}"
    assert body["text"].startswith(
        f"Freshness failed for aggregated_data/gold_market_overview, aggregated_data/gold_market_trends "
        f"(hours {missing} missing)"
    ), body["text"]
    assert f"<{UI}/assets/aggregated_data/gold_market_overview|aggregated_data/gold_market_overview>" in text
    assert f"newest hour {hour_label(hour)}" in text
    assert "fails after 2 h 00 min without an update (warns after 1 h 15 min)" in text


def test_a_table_failing_freshness_again_after_passing_is_posted_again(receiver, instance):
    key = AssetKey(["warehouse", "fact_market_overview"])
    webhook = AlertWebhookResource(url=receiver.url)
    cursor = None
    with project_workspace(instance) as workspace:
        daemon = FreshnessDaemon()
        for back in (2, 1):
            hour = current_hour() - back * HOUR
            instance.report_runless_asset_event(AssetMaterialization(key, partition=partition_key(hour)))
            list(daemon.run_iteration(workspace))  # PASS
            cursor = evaluate(freshness_alert, instance, webhook, cursor)
            with freeze_time(current_hour() + (5 - back) * HOUR):  # over two hours after this update
                list(daemon.run_iteration(workspace))  # FAIL
            cursor = evaluate(freshness_alert, instance, webhook, cursor)
    assert len(receiver.bodies) == 2, receiver.texts()


# --- the schedule -----------------------------------------------------------------------------


def test_hours_the_schedule_made_no_run_for_are_posted_once(receiver, instance):
    """The hourly schedule is started three hours ago and its tick at minute 5 of that hour makes
    its run; then the daemon stops evaluating it: the next hours have no run, and no tick."""
    settle_hour()
    started = current_hour() - 3 * HOUR
    webhook = AlertWebhookResource(url=receiver.url, ui_url=UI)
    sensor = missed_schedule_alert(hourly_schedule.name)
    with project_workspace(instance) as workspace:
        location = next(iter(workspace.create_request_context().get_code_location_entries().values()))
        remote = location.code_location.get_repository("__repository__").get_schedule(hourly_schedule.name)
        assert evaluate(sensor, instance, webhook) is None  # not started: nothing is expected
        with freeze_time(started):
            instance.start_schedule(remote)
        tick_time = started + timedelta(minutes=6)
        with freeze_time(tick_time):
            list(launch_scheduled_runs(workspace, logging.getLogger("scheduler"), tick_time, {}))
    [run] = instance.get_runs()
    assert run.tags["dagster/partition"] == partition_key(started)  # the one run the schedule made

    cursor = evaluate(sensor, instance, webhook)
    evaluate(sensor, instance, webhook, cursor)  # the same hours again: not posted twice

    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    text = posted_text(body)
    assert body["text"].startswith(
        f"crypto_hourly_schedule produced no crypto_hourly run for hours {hour_label(started + HOUR)} to "
    ), body["text"]
    assert hour_label(started) not in text  # that hour has its run
    assert f"(hour {hour_label(started + 2 * HOUR)}): no tick" in text
    assert "no tick: the schedule was not evaluated (was the daemon running?)" in text
    assert f"<{UI}/locations/{LOCATION}/schedules/crypto_hourly_schedule|crypto_hourly_schedule>" in text
