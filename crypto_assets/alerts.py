"""Alerts: a failed run posts a Slack-compatible message to ``CRYPTO_ALERT_WEBHOOK_URL``.

A blocking asset check that fails (ERROR severity) fails its step and so the run: the same
sensor reports it, naming each failed check with its metadata (the hours it found wrong).
The message names the run, the job, the assets, the hours and the error; every text in it is
scrubbed of secrets (the CoinGecko key, ODBC passwords, the webhook URL itself) first.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import requests
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
from crypto_assets.resources.warehouse import mask_password
from crypto_assets.settings import env

WEBHOOK_ENV = "CRYPTO_ALERT_WEBHOOK_URL"
# Environment variables whose values are secrets wherever they appear (the object stores' too).
SECRET_ENVS = (
    "COINGECKO_API_KEY",
    WEBHOOK_ENV,
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_SECRET",
)
MAX_ERROR_CHARS = 1500
MAX_METADATA_CHARS = 400

_QUALIFIED_CLASS = re.compile(r"^(?:\w+\.)+(\w+: )")
_KEY_PARAM = re.compile(r"(?i)(x[-_]cg[-_](?:demo|pro)[-_]api[-_]key[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}]+")


class AlertDeliveryError(Exception):
    """The webhook refused or did not answer; the message says how, never where."""


def scrub(text: str) -> str:
    """``text`` without anything that looks like a secret of this platform."""
    for name in SECRET_ENVS:
        value = env(name, "")
        if len(value) >= 4:
            text = text.replace(value, "***")
    text = mask_password(text, env("CRYPTO_WAREHOUSE_ODBC", ""))
    return _KEY_PARAM.sub(r"\1***", text)


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
    keys = set()
    for step in snapshot.steps if snapshot else []:
        if step.key in step_keys:
            keys.update(out.properties.asset_key for out in step.outputs if out.properties and out.properties.asset_key)
    return sorted(keys, key=lambda key: key.to_user_string())


def _compact(metadata) -> str:
    values = {name: getattr(value, "value", value) for name, value in metadata.items()}
    text = json.dumps(values, default=str, separators=(",", ":"))
    return text if len(text) <= MAX_METADATA_CHARS else text[: MAX_METADATA_CHARS - 3] + "..."


def describe_failed_run(instance: DagsterInstance, run: DagsterRun, run_failure_message: str = "") -> RunAlert:
    """What went wrong in ``run``, from its event log: failed steps, their errors, failed checks."""
    records = instance.all_logs(
        run.run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.ASSET_CHECK_EVALUATION}
    )
    errors, failed_steps, checks = [], set(), []
    for record in records:
        event = record.dagster_event
        if event.event_type == DagsterEventType.STEP_FAILURE:
            failed_steps.add(event.step_key)
            errors.append(f"{event.step_key}: {_error_text(event.step_failure_data.error)}")
        else:
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
        _run_url(run.run_id),
    )


def _run_url(run_id: str) -> str | None:
    """A link to the run in the UI, when ``CRYPTO_DAGSTER_UI_URL`` says where the UI is."""
    base = env("CRYPTO_DAGSTER_UI_URL", "").rstrip("/")
    return f"{base}/runs/{run_id}" if base else None


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


def post_alert(url: str, payload: dict, timeout: float = 10.0) -> None:
    try:
        response = requests.post(url, json=payload, timeout=timeout)
    except requests.RequestException as error:
        raise AlertDeliveryError(f"alert webhook unreachable: {type(error).__name__}") from None
    if response.status_code >= 300:
        raise AlertDeliveryError(f"alert webhook answered HTTP {response.status_code}: {scrub(response.text[:200])}")


@run_failure_sensor(
    name="crypto_run_failure_alert",
    description=f"Posts every failed run (failed blocking checks included) to {WEBHOOK_ENV}.",
    default_status=DefaultSensorStatus.RUNNING,
    # Every run of the instance, including `dagster asset materialize` runs, which carry no
    # code-location origin and would otherwise not match.
    monitor_all_code_locations=True,
)
def run_failure_alert(context: RunFailureSensorContext):
    url = env(WEBHOOK_ENV)
    if not url:
        context.log.info("%s is not set: run %s failed, no alert sent", WEBHOOK_ENV, context.dagster_run.run_id)
        return
    alert = describe_failed_run(context.instance, context.dagster_run, context.failure_event.message or "")
    post_alert(url, slack_message(alert))
    context.log.info("alert sent for run %s (%s)", alert.run_id, ", ".join(alert.assets))
