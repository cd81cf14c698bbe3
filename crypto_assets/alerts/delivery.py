"""Posting a tick's alerts: each once, and none lost or repeated when the webhook fails halfway."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from crypto_assets.alerts.messages import Alert, slack_message
from crypto_assets.redaction import scrub
from crypto_assets.resources.alert_webhook import AlertDeliveryError, AlertWebhookResource

Key = TypeVar("Key")


def deliver(context, webhook: AlertWebhookResource, alerts: Sequence[tuple[Key, Alert]]) -> list[Key]:
    """Post ``alerts`` (each with the key its sensor de-duplicates by) in order; returns the keys
    delivered, for the sensor to record in its cursor.

    With no webhook configured an alert is only logged, and counts as delivered: configuring one
    later does not replay old alerts. The webhook failing on the first alert fails the tick (red
    in the UI; the next tick tries again); failing on a later one is logged and ends the tick with
    the delivered ones recorded, so the next tick posts only the rest.
    """
    delivered: list[Key] = []
    for key, alert in alerts:
        if not webhook.url:
            context.log.info("CRYPTO_ALERT_WEBHOOK_URL is not set, alert only logged: %s", scrub(alert.headline))
        else:
            try:
                webhook.post(slack_message(alert))
            except AlertDeliveryError as error:
                if not delivered:
                    raise
                context.log.error("%s; %d alert(s) left for the next tick", error, len(alerts) - len(delivered))
                break
            context.log.info("alert sent: %s", scrub(alert.headline))
        delivered.append(key)
    return delivered
