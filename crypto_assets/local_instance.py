"""The Dagster instance of one machine (``make demo``, ``make run``, ``make ui``): runs kept in
DAGSTER_HOME, no telemetry, and the concurrency pools on, so one CoinGecko capture at a time
calls the API across every run (``pool="coingecko"`` on Bronze) as in production's
``deploy/dagster.yaml``. An existing ``dagster.yaml`` is the user's and is left alone.

``python -m crypto_assets.local_instance DAGSTER_HOME`` writes it where it is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

LOCAL_INSTANCE = "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"


def ensure_local_instance(home: Path) -> Path:
    """``home/dagster.yaml``, written with LOCAL_INSTANCE if there is none."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(LOCAL_INSTANCE)
    return config


if __name__ == "__main__":
    ensure_local_instance(Path(sys.argv[1]))
