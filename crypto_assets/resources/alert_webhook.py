"""Where alerts go: a Slack-compatible incoming webhook, the UI's address for links, and how
often a failing warning check is worth a message."""

from __future__ import annotations

from typing import Literal, Optional
from urllib.parse import quote

import requests
from dagster import AssetKey, ConfigurableResource
from pydantic import Field

from crypto_assets.redaction import scrub


class AlertDeliveryError(Exception):
    """The webhook refused or did not answer; the message says how, never where."""


class AlertWebhookResource(ConfigurableResource):
    """The alert sensors' way out; with no URL an alert is only logged."""

    url: Optional[str] = Field(
        default=None, description="CRYPTO_ALERT_WEBHOOK_URL: a Slack-compatible incoming webhook (a secret)."
    )
    ui_url: Optional[str] = Field(
        default=None, description="CRYPTO_DAGSTER_UI_URL: the UI's address, so an alert links to its run."
    )
    warnings: Literal["off", "daily", "every"] = Field(
        default="daily",
        description="CRYPTO_ALERT_WARNINGS: failing warning checks are posted never (off), on the first failure "
        "of each check per UTC day (daily) or on every failure (every).",
    )
    timeout_seconds: float = Field(default=10.0, gt=0)

    def _page(self, path: str) -> Optional[str]:
        return f"{self.ui_url.rstrip('/')}/{path}" if self.ui_url else None

    def run_url(self, run_id: str) -> Optional[str]:
        return self._page(f"runs/{run_id}")

    def asset_url(self, key: AssetKey, view: Optional[str] = None) -> Optional[str]:
        path = "/".join(quote(part, safe="") for part in key.path)
        return self._page(f"assets/{path}" + (f"?view={view}" if view else ""))

    def schedule_url(self, location: str, schedule: str) -> Optional[str]:
        # The UI names the repository of a Definitions object by its code location alone.
        return self._page(f"locations/{quote(location, safe='')}/schedules/{quote(schedule, safe='')}")

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
