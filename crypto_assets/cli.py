"""The command line every caller runs the graph with — CI, `make demo`, the tests and the
benchmarks: `dagster asset materialize` of a selection, in a fresh Python process."""

from __future__ import annotations

import sys

DEFINITIONS_MODULE = "crypto_assets.definitions"


def materialize_command(*args: str, select: str = "*", module: str = DEFINITIONS_MODULE) -> list[str]:
    """``dagster asset materialize -m module --select select *args`` with this Python."""
    return [sys.executable, "-m", "dagster", "asset", "materialize", "-m", module, "--select", select, *args]
