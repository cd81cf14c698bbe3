"""Freshness failures: a Gold or warehouse table whose ``FreshnessPolicy`` fails (no update for
longer than its fail window: a whole hour missing).

Dagster's freshness daemon evaluates every policy and records each change of an asset's state
(``FRESHNESS_STATE_CHANGE`` events; ``instance.get_freshness_state_records`` reads the latest).
This sensor posts the assets that turned FAIL since it last looked in one message (a missed hour
fails every downstream table at once), each with its newest hour and the hours missing after it.
Its cursor keeps, per failing asset, the state change it posted: one failure is posted once; a
new one (after the asset passed again) is posted again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from dagster import (
    AssetKey,
    DagsterInstance,
    DefaultSensorStatus,
    FreshnessPolicy,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateRecord

from crypto_assets.alerts.delivery import deliver
from crypto_assets.alerts.messages import (
    Alert,
    Link,
    duration_text,
    hours_text,
    mrkdwn_link,
    mrkdwn_section,
    slack_escape,
)
from crypto_assets.partitions import HOUR, floor_hour, hour_label, hour_of_key
from crypto_assets.resources.alert_webhook import AlertWebhookResource


@dataclass(frozen=True)
class StaleAsset:
    key: AssetKey
    failed_at: datetime  # when its policy failed
    last_update: datetime | None
    newest_hour: datetime | None  # the newest hour materialised

    def missing_hours(self) -> list[str]:
        """The first and last hour after the newest one, up to the hour it failed in."""
        if self.newest_hour is None or self.newest_hour + HOUR > floor_hour(self.failed_at):
            return []
        return [hour_label(self.newest_hour + HOUR), hour_label(floor_hour(self.failed_at))]

    def state(self) -> str:
        newest = f"newest hour {hour_label(self.newest_hour)}" if self.newest_hour else "no hour materialised"
        if self.last_update is None:
            return f"{newest}, never updated"
        late = duration_text((self.failed_at - self.last_update).total_seconds())
        return f"{newest}, last updated {self.last_update:%Y-%m-%dT%H:%MZ} ({late} before it failed)"


def stale_asset(instance: DagsterInstance, key: AssetKey, record: FreshnessStateRecord) -> StaleAsset:
    latest = instance.get_latest_materialization_event(key)
    partitions = instance.get_materialized_partitions(key)
    return StaleAsset(
        key,
        record.updated_at,
        datetime.fromtimestamp(latest.timestamp, timezone.utc) if latest else None,
        hour_of_key(max(partitions)) if partitions else None,
    )


def policy_text(policy: FreshnessPolicy) -> str:
    """``fails after 2 h 00 min without an update (warns after 1 h 15 min)`` for a time-window policy."""
    fail, warn = getattr(policy, "fail_window", None), getattr(policy, "warn_window", None)
    if fail is None:
        return type(policy).__name__
    text = f"fails after {duration_text(fail.to_timedelta().total_seconds())} without an update"
    return text + (f" (warns after {duration_text(warn.to_timedelta().total_seconds())})" if warn else "")


def describe_stale(
    stale: list[StaleAsset], policies: dict[AssetKey, FreshnessPolicy], webhook: AlertWebhookResource
) -> Alert:
    names = [asset.key.to_user_string() for asset in stale]
    missing = hours_text([hour for asset in stale for hour in asset.missing_hours()])
    named = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    policy = "; ".join(sorted({policy_text(policies[asset.key]) for asset in stale}))
    lines = [
        f"• {mrkdwn_link(webhook.asset_url(asset.key), name)}: {slack_escape(asset.state())}"
        for asset, name in zip(stale, names)
    ]
    return Alert(
        icon=":hourglass:",
        title=f"{names[0]} is stale" if len(names) == 1 else f"{len(names)} assets are stale",
        headline=f"Freshness failed for {named} (hours {missing} missing)",
        summary=f"{names[0]}: {stale[0].state()}; the policy {policy}",
        link=Link("Asset", names[0], webhook.asset_url(stale[0].key)),
        fields=[
            ("Missing hours", missing),
            ("Failed at", f"{min(asset.failed_at for asset in stale):%Y-%m-%dT%H:%MZ}"),
            ("Policy", policy),
        ],
        sections=[mrkdwn_section("Stale assets", "\n".join(lines))],
    )


@sensor(
    name="crypto_freshness_alert",
    description="Posts the assets whose freshness policy fails (a whole hour missing), as Dagster's freshness "
    "daemon records it.",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
def freshness_alert(context: SensorEvaluationContext, alert_webhook: AlertWebhookResource) -> SensorResult:
    assert context.repository_def, "the freshness alert is evaluated within a code location"
    graph = context.repository_def.asset_graph
    policies = {
        key: policy for key in graph.get_all_asset_keys() if (policy := graph.get(key).freshness_policy) is not None
    }
    records = context.instance.get_freshness_state_records(list(policies))
    failing = {key: record for key, record in records.items() if record.freshness_state == FreshnessState.FAIL}
    posted = json.loads(context.cursor or "{}")
    new = sorted(
        (key for key, record in failing.items() if posted.get(key.to_user_string()) != record.updated_at.timestamp()),
        key=lambda key: key.to_user_string(),
    )
    if new:
        alert = describe_stale(
            [stale_asset(context.instance, key, failing[key]) for key in new], policies, alert_webhook
        )
        deliver(context, alert_webhook, [(tuple(new), alert)])  # a failure raises: the cursor stays as it was
    cursor = {key.to_user_string(): record.updated_at.timestamp() for key, record in failing.items()}
    return SensorResult(
        cursor=json.dumps(cursor, sort_keys=True), skip_reason=None if new else "no new freshness failure"
    )
