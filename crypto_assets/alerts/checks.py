"""Failed asset checks that no run alert reports: warning checks (as often as
``CRYPTO_ALERT_WARNINGS`` says) and blocking checks evaluated outside a failed run (an evaluation
reported without a run, through ``report_runless_asset_event`` or the REST API).

The sensor reads the check executions Dagster records (one table, on SQLite and PostgreSQL alike)
for every check of the code location, once the run that evaluated a check has ended: the checks
of a failed run are named by that run's alert, so they are not posted twice. Its cursor keeps for
a day what it posted, keyed by (check, hours) — or by (check, UTC day) for warnings in ``daily``
mode — so the same hour failing the same check again (a re-execution) posts nothing new.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
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
)
from crypto_assets.alerts.runs import job_text, run_hours
from crypto_assets.resources.alert_webhook import AlertWebhookResource

LOOKBACK_SECONDS = 24 * 3600  # evaluations older than this are not (or no longer) posted
HISTORY = 50  # failed evaluations read per check and tick: more than the LOOKBACK of hourly runs


@dataclass(frozen=True)
class FailedCheck:
    evaluation: AssetCheckEvaluation
    kind: str  # warning, blocking or error
    description: str | None  # what the check verifies
    run: DagsterRun | None  # None: reported without a run
    hours: str
    timestamp: float

    def repeat_key(self, warnings: str) -> str | None:
        """What a repeat of this failure shares with the one first posted; None: not posted at all."""
        check = f"{self.evaluation.asset_key.to_user_string()}:{self.evaluation.check_name}"
        if self.kind != "warning":
            return f"{check}|{self.hours}"
        if warnings == "off":
            return None
        if warnings == "daily":
            return f"{check}|{datetime.fromtimestamp(self.timestamp, timezone.utc).date().isoformat()}"
        return f"{check}|{self.hours}"


def _failed_records(
    instance: DagsterInstance, check_keys: Iterable[AssetCheckKey], since: float
) -> list[AssetCheckExecutionRecord]:
    """Every failed evaluation of ``check_keys`` since ``since``, oldest first."""
    storage = instance.event_log_storage
    records = [
        record
        for key in check_keys
        for record in storage.get_asset_check_execution_history(
            key, limit=HISTORY, status={AssetCheckExecutionRecordStatus.FAILED}
        )
        if record.event is not None and record.event.timestamp >= since
    ]
    return sorted(records, key=lambda record: record.event.timestamp if record.event else 0)


def _hours(evaluation: AssetCheckEvaluation, run: DagsterRun | None) -> str:
    if run is not None:
        return hours_text(run_hours(run))
    return hours_text(partition_hours([evaluation.partition] if evaluation.partition else []))


def describe_failed_check(failed: FailedCheck, webhook: AlertWebhookResource) -> Alert:
    evaluation, kind, run = failed.evaluation, failed.kind, failed.run
    asset = evaluation.asset_key.to_user_string()
    found = compact_metadata(evaluation.metadata) if evaluation.metadata else "no metadata"
    link = (
        Link("Run", run.run_id, webhook.run_url(run.run_id))
        if run is not None
        else Link("Asset", asset, webhook.asset_url(evaluation.asset_key, view="checks"))
    )
    sections = [mrkdwn_section("What it found", found, code=True)]
    if failed.description:
        sections.append(mrkdwn_section("What it checks", failed.description, code=True))
    if kind == "warning" and webhook.warnings == "daily":
        sections.append("_Later failures of this check today (UTC) are not posted (CRYPTO_ALERT_WARNINGS=daily)._")
    return Alert(
        icon=":warning:" if kind == "warning" else ":rotating_light:",
        title=f"{kind.capitalize()} check {evaluation.check_name} failed",
        headline=f"Check {evaluation.check_name} ({kind}) on {asset} failed (hours {failed.hours})",
        summary=found,
        link=link,
        fields=[
            *([("Asset", asset)] if run is not None else []),  # else the link names it
            ("Check", f"{evaluation.check_name} ({kind})"),
            ("Hours", failed.hours),
            ("Job", job_text(run) if run is not None else "reported without a run"),
        ],
        sections=sections,
    )


@sensor(
    name="crypto_check_failure_alert",
    description="Posts failed checks no run alert names: warning checks (CRYPTO_ALERT_WARNINGS) and blocking "
    "checks evaluated outside a failed run.",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
def check_failure_alert(context: SensorEvaluationContext, alert_webhook: AlertWebhookResource) -> SensorResult:
    assert context.repository_def, "the check alert is evaluated within a code location"
    graph = context.repository_def.asset_graph
    since = time.time() - LOOKBACK_SECONDS
    posted = {key: at for key, at in json.loads(context.cursor or "{}").items() if at >= since}
    newest: dict[str, float] = {}  # every key failing this tick -> its newest evaluation
    alerts: dict[str, Alert] = {}  # the keys not posted before -> their alert
    runs: dict[str, DagsterRun | None] = {}
    for record in _failed_records(context.instance, graph.asset_check_keys, since):
        assert record.event and record.event.dagster_event
        if record.run_id not in runs:
            runs[record.run_id] = context.instance.get_run_by_id(record.run_id) if record.run_id else None
        run = runs[record.run_id]
        if record.run_id and (run is None or not run.is_finished or run.status == DagsterRunStatus.FAILURE):
            continue  # deleted; still running (seen again next tick); or named by the run's alert
        evaluation = record.event.dagster_event.asset_check_evaluation_data
        spec = graph.get_check_spec(record.key)
        failed = FailedCheck(
            evaluation,
            check_kind(evaluation, spec.blocking),
            evaluation.description or spec.description,
            run,
            _hours(evaluation, run),
            record.event.timestamp,
        )
        key = failed.repeat_key(alert_webhook.warnings)
        if key is None:
            continue
        newest[key] = max(newest.get(key, 0.0), failed.timestamp)
        if key not in posted and key not in alerts:
            alerts[key] = describe_failed_check(failed, alert_webhook)
    delivered = set(deliver(context, alert_webhook, list(alerts.items())))
    for key, at in newest.items():
        if key in posted or key in delivered:  # a repeat keeps its key until the last repeat is a day old
            posted[key] = max(posted.get(key, 0.0), at)
    return SensorResult(
        cursor=json.dumps(posted, sort_keys=True), skip_reason=None if alerts else "no new failed checks"
    )
