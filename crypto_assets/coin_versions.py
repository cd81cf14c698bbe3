"""dim_coin as SCD type 2: the rule that folds a window's (hour, symbol, name) observations of a
coin into its versions, on plain Python objects so it can be reasoned about apart from SQL
(``resources/warehouse/load.py`` reads the versions and applies the result in one transaction).
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Optional


@dataclass
class CoinVersion:
    """One row of dim_coin: the coin's (symbol, name) over [valid_from, valid_to)."""

    coin_id: str
    symbol: Optional[str]
    name: Optional[str]
    valid_from: datetime
    valid_to: Optional[datetime]
    first_seen: datetime
    last_seen: datetime
    coin_key: Optional[int] = None  # None until the loader numbers new versions
    # a split-off tail: the key whose later facts the loader re-points to it (apply_observations)
    takes_over_from: Optional[int] = field(default=None, compare=False)

    @property
    def attributes(self) -> tuple[Optional[str], Optional[str]]:
        return (self.symbol, self.name)

    @property
    def is_current(self) -> bool:
        return self.valid_to is None

    def row(self) -> tuple:
        return (
            self.coin_key,
            self.coin_id,
            self.symbol,
            self.name,
            self.valid_from,
            self.valid_to,
            self.is_current,
            self.first_seen,
            self.last_seen,
        )


def apply_observations(
    coin_id: str,
    versions: list[CoinVersion],
    observations: list[tuple[datetime, Optional[str], Optional[str]]],
    window_end: datetime,
    later_fact_hour: Callable[[int], Optional[datetime]],
) -> list[CoinVersion]:
    """Fold one coin's (hour, symbol, name) observations of a window into its versions.

    ``versions`` are the coin's dim_coin rows (any order, mutated in place); the result is
    the new list in valid_from order, new versions with ``coin_key=None``. Invariant kept:
    versions do not overlap and cover every observed hour with that hour's attributes, so
    reloading a window finds nothing to change (idempotent).

    In-order loads only ever close the current version at the hour of a change and open a
    new one. Out of order: an older window before the first version extends it backwards
    (same attributes) or adds a version ending where it starts; a change in the middle of
    an already loaded version splits it, and when that version has facts after the window
    (``later_fact_hour(coin_key)`` gives the first one at or after ``window_end``) the part
    from there on becomes a new version with the old attributes that ``takes_over_from``
    the old key, so the loader re-points those facts.
    """
    versions.sort(key=lambda v: v.valid_from)
    last: Optional[CoinVersion] = None  # the version the previous observation matched
    for hour, symbol, name in sorted(observations, key=lambda o: o[0]):
        attrs = (symbol, name)
        if last is not None and last.attributes == attrs and _covers(last, hour):
            continue  # the common case, decided without a search
        last = None
        i = bisect.bisect_right([v.valid_from for v in versions], hour) - 1
        if i < 0:
            first = versions[0] if versions else None
            if first is not None and first.attributes == attrs:
                first.valid_from = hour
            else:
                versions.insert(0, _new_version(coin_id, hour, attrs, first.valid_from if first else None))
            continue
        current = versions[i]
        if current.attributes == attrs:
            last = current
            continue
        later = later_fact_hour(current.coin_key) if current.coin_key is not None else None
        if current.valid_from == hour:  # the version starts in this window: nothing before it
            if later is None:
                current.symbol, current.name = attrs
            else:
                current.valid_from = later
                versions.insert(i, _new_version(coin_id, hour, attrs, later))
            continue
        end = current.valid_to
        if later is not None:
            tail = dataclasses.replace(current, valid_from=later, coin_key=None, takes_over_from=current.coin_key)
            versions.insert(i + 1, tail)
            end = later
        elif i + 1 < len(versions) and versions[i + 1].attributes == attrs:
            versions[i + 1].valid_from = hour  # the next version already has these attributes
            current.valid_to = hour
            continue
        current.valid_to = hour
        versions.insert(i + 1, _new_version(coin_id, hour, attrs, end))
    seen = [o[0] for o in observations]
    if seen:
        first_seen = min([min(seen), *(v.first_seen for v in versions if v.coin_key is not None)])
        last_seen = max([max(seen), *(v.last_seen for v in versions if v.coin_key is not None)])
        for v in versions:
            v.first_seen, v.last_seen = first_seen, last_seen
    return versions


def _new_version(coin_id, hour, attrs, valid_to) -> CoinVersion:
    return CoinVersion(coin_id, attrs[0], attrs[1], hour, valid_to, hour, hour)


def _covers(version: CoinVersion, hour: datetime) -> bool:
    return version.valid_from <= hour and (version.valid_to is None or hour < version.valid_to)


def version_at(versions: list[CoinVersion], hour: datetime) -> Optional[CoinVersion]:
    """The version valid at ``hour`` (versions in valid_from order), or None."""
    if len(versions) == 1:
        return versions[0] if _covers(versions[0], hour) else None
    i = bisect.bisect_right([v.valid_from for v in versions], hour) - 1
    return versions[i] if i >= 0 and _covers(versions[i], hour) else None
