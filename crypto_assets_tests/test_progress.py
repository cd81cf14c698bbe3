"""Progress lines of long work: rare enough to read, with a rate and the time left."""

from __future__ import annotations

import logging

from crypto_assets.progress import Progress, duration


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_line_comes_every_few_percent_or_30_seconds_whichever_is_rarer(caplog):
    clock = Clock()
    progress = Progress(logging.getLogger("test.progress"), "history", 1000, "coins", clock=clock)
    with caplog.at_level(logging.INFO, "test.progress"):
        for _ in range(1000):
            clock.now += 0.5  # 2 coins a second: 5 % (50 coins) every 25 s, so every 30 s decides
            progress.advance()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "history: 60/1000 coins (6%), 2.0 coins/s, about 8 min left"
    assert lines[-1] == "history: 1000/1000 coins in 8 min (2.0 coins/s)"
    assert 15 <= len(lines) <= 18  # 500 s / 30 s, not one a coin


def test_fast_work_logs_every_few_percent_not_every_item(caplog):
    clock = Clock()
    progress = Progress(logging.getLogger("test.progress"), "history", 10_000, "coins", every_seconds=0, clock=clock)
    with caplog.at_level(logging.INFO, "test.progress"):
        for _ in range(10_000):
            clock.now += 0.001
            progress.advance()
    assert len(caplog.records) == 20  # every 5 %, the last one being the summary


def test_durations_read_as_an_estimate():
    assert [duration(s) for s in (12, 600, 9000)] == ["12 s", "10 min", "2.5 h"]
