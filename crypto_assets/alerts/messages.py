"""What every alert looks like: one Slack-compatible message, whichever sensor sends it.

A message is a header, a line of fields (the first one the link to the run, asset or schedule
page), sections for what failed, and a plain ``text`` that notifications show on their own.
Text from data (errors, check metadata, names) is scrubbed of secrets (the CoinGecko key, ODBC
passwords, the webhook URL) and escaped so Slack shows it literally; the whole message is
scrubbed once more last, our own texts and links included.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Optional

from dagster import AssetCheckEvaluation, AssetCheckSeverity

from crypto_assets.partitions import hour_label, hour_of_key
from crypto_assets.redaction import scrub

MAX_METADATA_CHARS = 400
MAX_SECTION_CHARS = 2000  # before escaping: Slack refuses a section text over 3,000 characters
MAX_SUMMARY_CHARS = 300


@dataclass(frozen=True)
class Link:
    label: str  # the field it fills: Run, Asset, Schedule
    text: str  # what it shows: the run id, the asset key, the schedule name
    url: Optional[str]  # None without CRYPTO_DAGSTER_UI_URL: the text alone


@dataclass
class Alert:
    """One message, as plain text (``sections`` excepted: mrkdwn built with the helpers below)."""

    icon: str  # the header's emoji: :rotating_light: for failures, :warning: for warnings
    title: str
    headline: str  # the notification's first sentence: what, which asset(s), which hours
    summary: str  # what failed, after the headline
    link: Link
    fields: list[tuple[str, str]]
    sections: list[str] = field(default_factory=list)


def slack_escape(text: str) -> str:
    """Text from data as Slack shows it literally: ``<!channel>`` or ``<http://x|click>`` in an
    API-controlled field must not become a mention or a link. Secrets go first: once escaped, one
    holding ``&`` or ``<`` would no longer be found."""
    return scrub(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn_link(url: Optional[str], text: str) -> str:
    return f"<{url}|{slack_escape(text)}>" if url else slack_escape(text)


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def mrkdwn_section(heading: str, body: str, code: bool = False) -> str:
    """A bold heading over ``body``: mrkdwn built with these helpers, or plain text as a code block."""
    body = shorten(body, MAX_SECTION_CHARS)
    return f"*{heading}*\n" + (f"```{slack_escape(body)}```" if code else body)


def hours_text(labels: list[str]) -> str:
    """Hour labels as messages name them: one hour, or the first and last of a range."""
    hours = sorted(set(labels))
    if not hours:
        return "no partition"
    return hours[0] if len(hours) == 1 else f"{hours[0]} to {hours[-1]}"


def partition_hours(keys: Iterable[str]) -> list[str]:
    """Partition keys as hour labels, in order (a key that is not an hour as itself)."""
    labels = set()
    for key in keys:
        try:
            labels.add(hour_label(hour_of_key(key)))
        except ValueError:
            labels.add(key)
    return sorted(labels)


def duration_text(seconds: float) -> str:
    """``2 h 05 min``, ``45 min``: how long something has been late."""
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def compact_metadata(metadata) -> str:
    """A check's metadata as short JSON: which hours, which rows, which thresholds."""
    values = {name: getattr(value, "value", value) for name, value in metadata.items()}
    return shorten(json.dumps(values, default=str, separators=(",", ":")), MAX_METADATA_CHARS)


def check_kind(evaluation: AssetCheckEvaluation, declared_blocking: bool = False) -> str:
    """``warning`` (WARN severity: reported, never blocks), ``blocking`` or ``error``; an evaluation
    reported without a run does not say whether its check blocks: its declaration does."""
    if evaluation.severity == AssetCheckSeverity.WARN:
        return "warning"
    blocking = evaluation.blocking if evaluation.blocking is not None else declared_blocking
    return "blocking" if blocking else "error"


def _scrubbed(value):
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [_scrubbed(item) for item in value]
    if isinstance(value, dict):
        return {key: _scrubbed(item) for key, item in value.items()}
    return value


def slack_message(alert: Alert) -> dict:
    """Slack incoming-webhook JSON: a plain ``text`` (what notifications show) and blocks."""
    link = mrkdwn_link(alert.link.url, alert.link.text)
    fields = [f"*{alert.link.label}:* {link}"] + [f"*{label}:* {slack_escape(value)}" for label, value in alert.fields]
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{alert.icon} {alert.title}"[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": text} for text in fields[:10]]},
        *({"type": "section", "text": {"type": "mrkdwn", "text": section}} for section in alert.sections),
    ]
    summary = shorten(" ".join(alert.summary.split()), MAX_SUMMARY_CHARS)
    text = f"{slack_escape(alert.headline)}: {slack_escape(summary)}" + (f" {link}" if alert.link.url else "")
    return _scrubbed({"text": text, "blocks": blocks})
