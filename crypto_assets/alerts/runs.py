"""Failed runs: a run-failure sensor names the run, the job, the assets, the hours and the error.

A blocking asset check that fails (ERROR severity) fails its step and so the run: this alert
reports it, naming each failed check of the run (warnings too) with its metadata (the hours and
rows it found wrong), and the check sensor leaves the checks of failed runs to it.
"""

from __future__ import annotations

import re

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DefaultSensorStatus,
    RunFailureSensorContext,
    run_failure_sensor,
)

from crypto_assets.alerts.delivery import deliver
from crypto_assets.alerts.messages import (
    Alert,
    Link,
    check_kind,
    compact_metadata,
    hours_text,
    mrkdwn_section,
    partition_hours,
    shorten,
    slack_escape,
)
from crypto_assets.resources.alert_webhook import AlertWebhookResource

MAX_ERROR_CHARS = 1500

_QUALIFIED_CLASS = re.compile(r"^(?:\w+\.)+(\w+: )")


def run_hours(run: DagsterRun) -> list[str]:
    """The run's partition as hour labels: one hour, or the first and last hour of a range."""
    keys = (
        [run.tags.get("dagster/partition")]
        if run.tags.get("dagster/partition")
        else [run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")]
    )
    return partition_hours(filter(None, keys))


def job_text(run: DagsterRun) -> str:
    """The job as users know it: ad-hoc materialisations run in Dagster's hidden ``__…`` jobs."""
    return "asset materialization" if run.job_name.startswith("__") else run.job_name


def _error_text(error) -> str:
    """The messages of an error and its causes, without stack traces or Dagster's wrapper.

    ``pkg.module.CoinGeckoError: …`` is shortened to ``CoinGeckoError: …``.
    """
    messages, seen = [], set()
    while error is not None:
        wrapper = error.cls_name == "DagsterExecutionStepExecutionError" and (error.cause or error.context)
        message = _QUALIFIED_CLASS.sub(r"\1", (error.message or "").strip())
        if message and not wrapper and message not in seen:
            seen.add(message)
            messages.append(message)
        error = error.cause or error.context
    return "\n".join(messages)


def _step_assets(instance: DagsterInstance, run: DagsterRun, step_keys: set[str]) -> list[AssetKey]:
    """The assets the given steps materialise, from the run's execution plan."""
    snapshot = (
        instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id) if run.execution_plan_snapshot_id else None
    )
    keys: set[AssetKey] = set()
    for step in snapshot.steps if snapshot else []:
        if step.key in step_keys:
            keys.update(out.properties.asset_key for out in step.outputs if out.properties and out.properties.asset_key)
    return sorted(keys, key=lambda key: key.to_user_string())


def describe_failed_run(
    instance: DagsterInstance, run: DagsterRun, run_failure_message: str = "", run_url: str | None = None
) -> Alert:
    """What went wrong in ``run``, from its event log: failed steps, their errors, failed checks."""
    records = instance.all_logs(
        run.run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.ASSET_CHECK_EVALUATION}
    )
    errors: list[str] = []
    failed_steps: set[str] = set()
    checks: list[str] = []
    for record in records:
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.STEP_FAILURE and event.step_key:
            failed_steps.add(event.step_key)
            errors.append(f"{event.step_key}: {_error_text(event.step_failure_data.error)}")
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.asset_check_evaluation_data
            if not evaluation.passed:
                checks.append(
                    f"• {check_kind(evaluation)} `{slack_escape(evaluation.check_name)}` on "
                    f"`{slack_escape(evaluation.asset_key.to_user_string())}`: "
                    f"{slack_escape(compact_metadata(evaluation.metadata))}"
                )
    assets = (
        _step_assets(instance, run, failed_steps)
        if failed_steps
        else sorted(run.asset_selection or (), key=lambda key: key.to_user_string())
    )
    error = shorten(
        "\n".join(errors) or run_failure_message or "the run failed without a step failure", MAX_ERROR_CHARS
    )
    hours = hours_text(run_hours(run))
    asset_names = ", ".join(key.to_user_string() for key in assets) or "none"
    job = job_text(run)
    sections = [mrkdwn_section("Error", error, code=True)]
    if checks:
        sections.append(mrkdwn_section("Failed checks", "\n".join(checks)))
    return Alert(
        icon=":rotating_light:",
        title=f"{job} failed",
        headline=f"Run {run.run_id} of {job} failed (hours {hours}; assets {asset_names})",
        summary=error,
        link=Link("Run", run.run_id, run_url),
        fields=[("Job", job), ("Hours", hours), ("Assets", asset_names)],
        sections=sections,
    )


@run_failure_sensor(
    name="crypto_run_failure_alert",
    description="Posts every failed run (failed blocking checks included) to the alert webhook.",
    default_status=DefaultSensorStatus.RUNNING,
    # Every run of the instance, including `dagster asset materialize` runs, which carry no
    # code-location origin and would otherwise not match.
    monitor_all_code_locations=True,
)
def run_failure_alert(context: RunFailureSensorContext, alert_webhook: AlertWebhookResource):
    run = context.dagster_run
    message = context.failure_event.message or ""
    alert = describe_failed_run(context.instance, run, message, alert_webhook.run_url(run.run_id))
    deliver(context, alert_webhook, [(run.run_id, alert)])
