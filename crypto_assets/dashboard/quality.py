"""A data-quality status per hour from what the warehouse itself holds (it has no quarantine:
that stays in the lakehouse's silver_quarantine).

An hour is ``fail`` when its facts disagree (the overview counted other coins than the snapshot
or the tiers hold, or the overview row is missing), ``missing`` when it is absent between loaded
hours, ``warn`` when it loaded but looks thin (many stale coins, far fewer coins than the hour
before, per-coin Gold facts short of the snapshot), else ``ok``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from crypto_assets.star_schema import hour_of_time_key, time_key

STALE_WARN_SHARE = 0.05  # as Silver's quarantine_ratio check: above 5 % of an hour's coins
DROP_WARN_SHARE = 0.10  # coins tracked fell by more than 10 % from the previous loaded hour
STATUS_ORDER = ("fail", "missing", "warn", "ok")


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


def problems(row: dict[str, Any], previous_coins: int | None) -> tuple[str, list[str]]:
    """(status, reasons) of one loaded hour's ``queries.quality`` row."""
    coins, snapshot = _count(row["coins_tracked"]), _count(row["snapshot_rows"]) or 0
    if coins is None:
        return "fail", [f"no overview row ({snapshot} snapshot rows)"]
    failed, warned = [], []
    if snapshot != coins:
        failed.append(f"snapshot holds {snapshot} coins, overview counted {coins}")
    tiers = _count(row["tier_coins"]) or 0
    if tiers != coins:
        failed.append(f"tiers hold {tiers} coins, overview counted {coins}")
    stale = _count(row["stale_coins"]) or 0
    if coins and stale / coins > STALE_WARN_SHARE:
        warned.append(f"{stale} stale coins ({stale / coins:.0%})")
    if previous_coins and coins < previous_coins * (1 - DROP_WARN_SHARE):
        warned.append(f"coins fell from {previous_coins} to {coins}")
    for name, label in (("trend_rows", "trend"), ("volatility_rows", "volatility")):
        if (_count(row[name]) or 0) != snapshot:
            warned.append(f"{_count(row[name]) or 0} {label} rows for {snapshot} coins")
    return ("fail" if failed else "warn" if warned else "ok"), failed + warned


def statuses(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One status per hour from the first to the last loaded one (gaps as ``missing``), newest first."""
    by_key = {int(row["time_key"]): row for row in rows}
    if not by_key:
        return []
    hour, last = hour_of_time_key(min(by_key)), hour_of_time_key(max(by_key))
    out: list[dict[str, Any]] = []
    previous: int | None = None
    while hour <= last:
        row = by_key.get(time_key(hour))
        if row is None:
            status, reasons, coins = "missing", ["hour not loaded (no dim_time row)"], None
        else:
            status, reasons = problems(row, previous)
            coins = _count(row["coins_tracked"])
            previous = coins if coins is not None else previous
        out.append(
            {"hour (UTC)": f"{hour:%Y-%m-%d %H:00}", "status": status, "coins": coins, "details": "; ".join(reasons)}
        )
        hour += timedelta(hours=1)
    return out[::-1]


def summary(hours: list[dict[str, Any]]) -> dict[str, int]:
    """Hours per status, worst first."""
    return {status: sum(1 for h in hours if h["status"] == status) for status in STATUS_ORDER}
