"""A schedule that did not produce its run: each tick of the hourly schedule should create a run
of its job for one hour (the partition the schedule picks at that tick). Once ``GRACE`` has
passed after a tick with no run of that hour, the hour is posted with what Dagster recorded of the
tick: failed (the error), skipped (the reason) or absent (the daemon was not evaluating schedules).

Only a running schedule is watched, from the moment it was started. The cursor is the time of the
last tick checked, so each missed tick is posted once; consecutive ones share one message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import takewhile

from dagster import (
    DagsterInstance,
    DefaultSensorStatus,
    RunsFilter,
    ScheduleDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    TimeWindowPartitionsDefinition,
    partition_loading_context,
    sensor,
)
from dagster._core.scheduler.instigation import InstigatorState, InstigatorTick, InstigatorType, TickStatus
from dagster._utils.schedules import schedule_execution_time_iterator

from crypto_assets.alerts.delivery import deliver
from crypto_assets.alerts.messages import Alert, Link, hours_text, mrkdwn_section, partition_hours, slack_escape
from crypto_assets.resources.alert_webhook import AlertWebhookResource

GRACE = timedelta(minutes=15)  # a run created this long after its tick (a busy daemon) is still on time
LOOKBACK = timedelta(days=1)  # how far back a first (or long-paused) sensor looks


def running_state(instance: DagsterInstance, name: str) -> InstigatorState | None:
    """The schedule's state if it runs (started in the UI or declared running in code), else None."""
    states = instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)
    return next((state for state in states if state.instigator_name == name and state.is_running), None)


def tick_text(tick: InstigatorTick | None) -> str:
    if tick is None:
        return "no tick: the schedule was not evaluated (was the daemon running?)"
    if tick.status == TickStatus.FAILURE:
        message = tick.error.message.strip().splitlines()[0] if tick.error and tick.error.message else "no error"
        return f"the tick failed: {message}"
    if tick.status == TickStatus.SKIPPED:
        return f"the tick was skipped: {tick.skip_reason or 'no reason given'}"
    if tick.status == TickStatus.STARTED:
        return "the tick is still in progress"
    return f"the tick created run(s) {', '.join(tick.run_ids) or 'none'}, none of them in the instance any more"


def _due_ticks(
    schedule: ScheduleDefinition, partitions_def: TimeWindowPartitionsDefinition, after: float, until: float
) -> Iterator[tuple[datetime, str]]:
    """The schedule's tick times in (after, until] with the partition each one runs, as the scheduler computes them."""
    times = schedule_execution_time_iterator(after, schedule.cron_schedule, schedule.execution_timezone)
    for tick in takewhile(lambda tick: tick.timestamp() <= until, times):
        if tick.timestamp() > after:
            with partition_loading_context(effective_dt=tick):
                key = partitions_def.get_last_partition_key()
            if key is not None:
                yield tick, key


def _consecutive(due: list[tuple[datetime, str]], missing: set[str]) -> list[list[tuple[datetime, str]]]:
    """The missing ticks, in runs of consecutive ticks."""
    groups: list[list[tuple[datetime, str]]] = []
    previous_missing = False
    for tick, key in due:
        if key in missing:
            if not previous_missing:
                groups.append([])
            groups[-1].append((tick, key))
        previous_missing = key in missing
    return groups


def describe_missed(
    schedule: ScheduleDefinition,
    state: InstigatorState,
    group: list[tuple[datetime, str]],
    ticks: dict[int, InstigatorTick],
    assets: int,
    webhook: AlertWebhookResource,
) -> Alert:
    hours = hours_text(partition_hours(key for _, key in group))
    why = [tick_text(ticks.get(round(tick.timestamp()))) for tick, _ in group]
    lines = [
        f"• {tick:%Y-%m-%dT%H:%MZ} (hour {hours_text(partition_hours([key]))}): {slack_escape(text)}"
        for (tick, key), text in zip(group, why)
    ]
    location = state.origin.repository_origin.code_location_origin.location_name
    return Alert(
        icon=":rotating_light:",
        title=f"{schedule.name} produced no run",
        headline=f"{schedule.name} produced no {schedule.job_name} run for hours {hours}",
        summary=why[0],
        link=Link("Schedule", schedule.name, webhook.schedule_url(location, schedule.name)),
        fields=[
            ("Job", schedule.job_name),
            ("Hours", hours),
            ("Assets", f"all {assets} assets of {schedule.job_name}"),
            ("Missed ticks", str(len(group))),
        ],
        sections=[mrkdwn_section("Ticks", "\n".join(lines))],
    )


def missed_schedule_alert(schedule_name: str) -> SensorDefinition:
    """A sensor posting the ticks of the named schedule (of a time-partitioned job) that made no run."""

    @sensor(
        name=f"{schedule_name}_missed_alert",
        description=f"Posts the hours {schedule_name} produced no run for ({GRACE} after the tick).",
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=300,
    )
    def missed_schedule(
        context: SensorEvaluationContext, alert_webhook: AlertWebhookResource
    ) -> SensorResult | SkipReason:
        assert context.repository_def, "the missed-schedule alert is evaluated within a code location"
        state = running_state(context.instance, schedule_name)
        if state is None:
            return SkipReason(f"{schedule_name} is not running: no run is expected")
        schedule = context.repository_def.get_schedule_def(schedule_name)
        job = context.repository_def.get_job(schedule.job_name)
        assert isinstance(job.partitions_def, TimeWindowPartitionsDefinition), f"{job.name} is not time-partitioned"
        now = time.time()
        started = getattr(state.instigator_data, "start_timestamp", None) or now
        checked = max(float(context.cursor or 0), started, now - LOOKBACK.total_seconds())
        due = list(_due_ticks(schedule, job.partitions_def, checked, now - GRACE.total_seconds()))
        missing = {
            key
            for _, key in due
            if not context.instance.get_runs(RunsFilter(job_name=job.name, tags={"dagster/partition": key}), limit=1)
        }
        ticks = {
            round(tick.timestamp): tick
            for tick in context.instance.get_ticks(state.instigator_origin_id, state.selector_id, after=checked - 1)
        }
        assets = len(job.asset_layer.selected_asset_keys)
        alerts = [
            (group[-1][0].timestamp(), describe_missed(schedule, state, group, ticks, assets, alert_webhook))
            for group in _consecutive(due, missing)
        ]
        delivered = deliver(context, alert_webhook, alerts)
        if len(delivered) < len(alerts):  # the rest is posted next tick
            checked = delivered[-1]
        elif due:
            checked = due[-1][0].timestamp()
        return SensorResult(cursor=str(checked), skip_reason=None if alerts else "every tick produced its run")

    return missed_schedule
