"""Alerts: a failed run posts a Slack-compatible message to the alert webhook.

A blocking asset check that fails (ERROR severity) fails its step and so the run: the same
sensor reports it, naming each failed check with its metadata (the hours it found wrong).
The message names the run, the job, the assets, the hours and the error; every text in it is
scrubbed of secrets (the CoinGecko key, ODBC passwords, the webhook URL itself) first.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DefaultSensorStatus,
    RunFailureSensorContext,
    run_failure_sensor,
)

from crypto_assets.partitions import hour_label, hour_of_key
from crypto_assets.redaction import scrub
from crypto_assets.resources.alert_webhook import AlertWebhookResource

MAX_ERROR_CHARS = 1500
MAX_METADATA_CHARS = 400

_QUALIFIED_CLASS = re.compile(r"^(?:\w+\.)+(\w+: )")


@dataclass
class FailedCheck:
    asset: str
    check: str
    blocking: bool
    metadata: str  # compact JSON of the check's metadata: which hours, which rows


@dataclass
class RunAlert:
    run_id: str
    job: str
    hours: list[str]  # labels, or the first and last of a range
    assets: list[str]  # the assets of the failed steps (or of the run, if no step failed)
    error: str
    failed_checks: list[FailedCheck] = field(default_factory=list)
    run_url: str | None = None


def run_hours(run: DagsterRun) -> list[str]:
    """The run's partition as hour labels: one hour, or the first and last hour of a range."""
    keys = (
        [run.tags.get("dagster/partition")]
        if run.tags.get("dagster/partition")
        else [run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")]
    )
    labels = []
    for key in filter(None, keys):
        try:
            labels.append(hour_label(hour_of_key(key)))
        except ValueError:
            labels.append(key)
    return sorted(set(labels))


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


def _compact(metadata) -> str:
    values = {name: getattr(value, "value", value) for name, value in metadata.items()}
    text = json.dumps(values, default=str, separators=(",", ":"))
    return text if len(text) <= MAX_METADATA_CHARS else text[: MAX_METADATA_CHARS - 3] + "..."


def describe_failed_run(
    instance: DagsterInstance, run: DagsterRun, run_failure_message: str = "", run_url: str | None = None
) -> RunAlert:
    """What went wrong in ``run``, from its event log: failed steps, their errors, failed checks."""
    records = instance.all_logs(
        run.run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.ASSET_CHECK_EVALUATION}
    )
    errors: list[str] = []
    failed_steps: set[str] = set()
    checks: list[FailedCheck] = []
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
                    FailedCheck(
                        evaluation.asset_key.to_user_string(),
                        evaluation.check_name,
                        bool(evaluation.blocking),
                        _compact(evaluation.metadata),
                    )
                )
    assets = (
        _step_assets(instance, run, failed_steps)
        if failed_steps
        else sorted(run.asset_selection or (), key=lambda key: key.to_user_string())
    )
    error = "\n".join(errors) or run_failure_message or "the run failed without a step failure"
    if len(error) > MAX_ERROR_CHARS:
        error = error[: MAX_ERROR_CHARS - 3] + "..."
    return RunAlert(
        run.run_id,
        run.job_name,
        run_hours(run),
        [key.to_user_string() for key in assets],
        error,
        checks,
        run_url,
    )


def _scrubbed(value):
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [_scrubbed(item) for item in value]
    if isinstance(value, dict):
        return {key: _scrubbed(item) for key, item in value.items()}
    return value


def slack_escape(text: str) -> str:
    """Text from data (errors, check metadata, names) as Slack shows it literally: ``<!channel>``
    or ``<http://x|click>`` in an API-controlled field must not become a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(alert: RunAlert) -> dict:
    """Slack incoming-webhook JSON: a plain ``text`` (what notifications show) and blocks."""
    hours = slack_escape(" … ".join(alert.hours) if alert.hours else "no partition")
    assets = slack_escape(", ".join(alert.assets) or "none")
    run = f"<{alert.run_url}|{alert.run_id}>" if alert.run_url else alert.run_id
    job = slack_escape("asset materialization" if alert.job.startswith("__") else alert.job)
    error = slack_escape(alert.error)
    headline = f"Run {alert.run_id} of {job} failed (hours {hours}; assets {assets})"
    fields = [f"*Run:* {run}", f"*Job:* {job}", f"*Hours:* {hours}", f"*Assets:* {assets}"]
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f":rotating_light: {job} failed"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": text} for text in fields]},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Error*\n```{error}```"}},
    ]
    if alert.failed_checks:
        lines = [
            f"• {'blocking' if check.blocking else 'warning'} `{slack_escape(check.check)}` on "
            f"`{slack_escape(check.asset)}`: {slack_escape(check.metadata)}"
            for check in alert.failed_checks
        ]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "*Failed checks*\n" + "\n".join(lines)}})
    summary = " ".join(error.split())
    summary = summary if len(summary) <= 300 else summary[:297] + "..."
    return _scrubbed({"text": f"{headline}: {summary}", "blocks": blocks})


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
    if not alert_webhook.url:
        context.log.info("CRYPTO_ALERT_WEBHOOK_URL is not set: run %s failed, no alert sent", run.run_id)
        return
    message = context.failure_event.message or ""
    alert = describe_failed_run(context.instance, run, message, alert_webhook.run_url(run.run_id))
    alert_webhook.post(slack_message(alert))
    context.log.info("alert sent for run %s (%s)", alert.run_id, ", ".join(alert.assets))
