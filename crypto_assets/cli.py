"""The command lines every caller runs the graph with, in a fresh Python process: `dagster asset
materialize` of a selection (the CI, the tests and the benchmarks) and `dg launch` (`make demo`:
today's CLI, configured by ``[tool.dg]`` in pyproject.toml, without the old one's warning)."""

from __future__ import annotations

import sys
from pathlib import Path

DEFINITIONS_MODULE = "crypto_assets.definitions"
PROJECT_ROOT = Path(__file__).resolve().parents[1]  # where pyproject.toml's [tool.dg] is, in a checkout


def materialize_command(*args: str, select: str = "*", module: str = DEFINITIONS_MODULE) -> list[str]:
    """``dagster asset materialize -m module --select select *args`` with this Python."""
    return [sys.executable, "-m", "dagster", "asset", "materialize", "-m", module, "--select", select, *args]


def launch_command(*args: str, assets: str = "*") -> list[str]:
    """``dg launch --assets assets *args`` of this checkout's project, with this Python's dg."""
    dg = str(Path(sys.executable).parent / "dg")
    return [dg, "launch", "--target-path", str(PROJECT_ROOT), "--assets", assets, *args]
