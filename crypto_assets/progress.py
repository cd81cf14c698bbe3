"""Progress of long work in the run log: a line every few percent or every 30 seconds, whichever
is rarer, with the rate and an estimate of the time left — so a long backfill's run page says
where it is in a few dozen lines, not thousands (per-item detail is at DEBUG)."""

from __future__ import annotations

import time
from typing import Callable


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2.5 h``: as precise as an estimate deserves."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Counts items done out of ``total`` and logs at INFO when both another ``every_percent`` of
    the work is done and ``every_seconds`` have passed since the last line, and at the end."""

    def __init__(
        self,
        log,
        what: str,
        total: int,
        unit: str,
        every_percent: float = 5.0,
        every_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.log, self.what, self.total, self.unit = log, what, total, unit
        self.every_percent, self.every_seconds, self.clock = every_percent, every_seconds, clock
        self.done = 0
        self.started = self.last_logged = clock()
        self.last_percent = 0.0

    def advance(self, items: int = 1) -> None:
        self.done += items
        now = self.clock()
        percent = 100.0 * self.done / self.total if self.total else 100.0
        finished = self.done >= self.total
        due = percent - self.last_percent >= self.every_percent and now - self.last_logged >= self.every_seconds
        if not (finished or due):
            return
        self.last_logged, self.last_percent = now, percent
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if finished:
            self.log.info(
                "%s: %d/%d %s in %s (%.1f %s/s)",
                self.what, self.done, self.total, self.unit, duration(elapsed), rate, self.unit,
            )  # fmt: skip
            return
        left = (self.total - self.done) / rate if rate else float("inf")
        self.log.info(
            "%s: %d/%d %s (%.0f%%), %.1f %s/s, about %s left",
            self.what, self.done, self.total, self.unit, percent, rate, self.unit, duration(left),
        )  # fmt: skip
