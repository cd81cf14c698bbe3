"""Alerts for every way an hour goes wrong, each a sensor posting to the alert webhook:

- ``runs``: a failed run (a failed blocking check fails its run), with its failed checks;
- ``checks``: failed checks no run alert names (warnings, as ``CRYPTO_ALERT_WARNINGS`` says);
- ``freshness``: Gold and warehouse tables whose freshness policy fails (an hour missing);
- ``schedules``: a tick of the hourly schedule that produced no run.

``messages`` builds the one message format they share; ``delivery`` posts a tick's alerts once.
"""

from crypto_assets.alerts.checks import check_failure_alert
from crypto_assets.alerts.freshness import freshness_alert
from crypto_assets.alerts.runs import run_failure_alert
from crypto_assets.alerts.schedules import missed_schedule_alert

__all__ = ["check_failure_alert", "freshness_alert", "missed_schedule_alert", "run_failure_alert"]
