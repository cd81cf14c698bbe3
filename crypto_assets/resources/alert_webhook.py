"""Where alerts go: a Slack-compatible incoming webhook, and the UI's address for links."""

from __future__ import annotations

from typing import Optional

import requests
from dagster import ConfigurableResource
from pydantic import Field

from crypto_assets.redaction import scrub


class AlertDeliveryError(Exception):
    """The webhook refused or did not answer; the message says how, never where."""


class AlertWebhookResource(ConfigurableResource):
    """The alert sensor's way out; with no URL an alert is only logged."""

    url: Optional[str] = Field(
        default=None, description="CRYPTO_ALERT_WEBHOOK_URL: a Slack-compatible incoming webhook (a secret)."
    )
    ui_url: Optional[str] = Field(
        default=None, description="CRYPTO_DAGSTER_UI_URL: the UI's address, so an alert links to its run."
    )
    timeout_seconds: float = Field(default=10.0, gt=0)

    def run_url(self, run_id: str) -> Optional[str]:
        return f"{self.ui_url.rstrip('/')}/runs/{run_id}" if self.ui_url else None

    def post(self, payload: dict) -> None:
        if not self.url:
            raise AlertDeliveryError("no alert webhook configured (CRYPTO_ALERT_WEBHOOK_URL)")
        try:
            response = requests.post(self.url, json=payload, timeout=self.timeout_seconds)
        except requests.RequestException as error:
            raise AlertDeliveryError(f"alert webhook unreachable: {type(error).__name__}") from None
        if response.status_code >= 300:
            raise AlertDeliveryError(
                f"alert webhook answered HTTP {response.status_code}: {scrub(response.text[:200])}"
            )
