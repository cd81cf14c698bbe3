"""Waiting for a process group to be gone: a JVM outlives the Python that started it (the class
archive is written as it exits), and a killed run's JVM dies after its parent."""

from __future__ import annotations

import os
import time


def wait_until_gone(group: int, timeout: float, poll: float = 0.1) -> bool:
    """True once no process of group ``group`` is left; False if some still are after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(poll)
    return False
