"""Named points between a run's commits, where the crash tests stop a real run to kill it.

Setting ``CRYPTO_PAUSE_AT`` to a point's name makes a run that reaches it write the marker file
``CRYPTO_PAUSE_MARKER`` and wait there until killed; unset (always, outside those tests), a
point costs one dictionary lookup. The points are the moments where a crash leaves the most
half-done state: after a capture is landed but before it is appended, and after each commit.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from crypto_assets.settings import value

POINTS = (
    "bronze.landed", "bronze.committed", "silver.committed", "quarantine.committed",
    "gold.committed", "warehouse.before_commit",
)  # fmt: skip


def reached(point: str) -> None:
    if point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}")
    if value("CRYPTO_PAUSE_AT") != point:
        return
    Path(value("CRYPTO_PAUSE_MARKER")).write_text(f"{point} {os.getpid()}\n")
    while True:  # until the test kills the process tree
        time.sleep(1)
