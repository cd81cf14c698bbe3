"""A deterministic synthetic CoinGecko market.

Every value is a pure function of (seed, coin, hour), so a snapshot served now, a snapshot
recomputed by a test later and a history point for the same hour all agree. Prices follow a
smooth walk (a sum of hash-phased sine waves plus a little per-hour noise), which needs no
state and costs O(1) per (coin, hour), so any hour of any year can be asked for.

The universe carries the oddities of real responses (see shared/coingecko/samples/SOURCES.md):
nulls, stale coins, zero supply with a market cap, zero volume, exponent-printed tiny prices,
integer-valued prices, rank inversions and a stablecoin.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Optional

from crypto_assets.partitions import as_utc

HOUR_SECONDS = 3600
DAY_SECONDS = 86400
HOURLY_HISTORY_DAYS = 90

TIMEFRAME_HOURS = {"1h": 1, "24h": 24, "7d": 168, "14d": 336, "30d": 720, "200d": 4800, "1y": 8760}
DEFAULT_TIMEFRAMES = ("1h", "24h", "7d")

# vs_currency -> units per USD; enough for currency checks downstream.
CURRENCY_RATES = {"usd": 1.0, "eur": 0.92, "gbp": 0.79, "jpy": 150.0, "chf": 0.88}

# Special coins by universe index (1-based); they exist whenever the universe is that large.
STALE_LAG_HOURS = {17: 5, 183: 30}
ZERO_CIRCULATING = 29
ZERO_VOLUME = 41
YOUNG_COIN = 53  # listed days ago: no 7d (or longer) change
STABLECOIN = 3
# Rank inversions: positions (in market-cap order) whose ranks are swapped with the next one.
RANK_SWAPS = (23, 71)

# (period in hours, relative amplitude) of the components of the price walk.
_WAVES = ((7.0, 0.08), (31.0, 0.18), (173.0, 0.35), (911.0, 0.6), (4397.0, 1.0))
_NOISE = 0.05
_AMPLITUDE_BOUND = sum(a for _, a in _WAVES) + _NOISE


def _unit(*parts: object) -> float:
    """A hash-derived number in [0, 1): deterministic across processes (unlike hash())."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def iso_ms(moment: datetime) -> str:
    """CoinGecko's timestamp format: ISO-8601 UTC with milliseconds and a Z."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _round_price(value: float) -> float | int:
    """Prices as CoinGecko prints them: big ones as ints, small ones to 6 significant digits."""
    if value >= 10000:
        return int(round(value))
    if value >= 1:
        return round(value, 2 if value >= 100 else 4)
    return float(f"{value:.6g}")


def _intish(value: float) -> int:
    return int(round(value))


@dataclass(frozen=True)
class Coin:
    """Static, hash-derived traits of one coin."""

    index: int
    id: str
    symbol: str
    name: str
    base_price: float
    supply: float  # the real circulating supply behind market_cap
    total_supply: Optional[float]
    max_supply: Optional[float]
    volatility: float
    volume_ratio: float
    phases: tuple[float, ...]
    ico_price: Optional[float]
    roi_currency: str
    ath_factor: float
    atl_factor: float
    ath_days_ago: int
    atl_days_ago: int
    lag_seconds: float
    image_version: int

    @property
    def stale_hours(self) -> int:
        return STALE_LAG_HOURS.get(self.index, 0)

    def log_walk(self, hour: int) -> float:
        """The walk in log-price units at an hour index (hours since the epoch)."""
        total = sum(a * math.sin(2 * math.pi * hour / p + ph) for (p, a), ph in zip(_WAVES, self.phases))
        total += _NOISE * (2 * _unit("noise", self.id, hour) - 1)
        return self.volatility * total

    def price(self, hour: int) -> float:
        return self.base_price * math.exp(self.log_walk(hour))

    def market_cap(self, hour: int) -> float:
        return self.price(hour) * self.supply

    def point(self, hour: int) -> tuple[float, float, float]:
        """(price, market cap, volume) at an hour, the walk computed once for the three."""
        price = self.price(hour)
        volume = 0.0
        if self.index != ZERO_VOLUME:
            swing = 0.6 + 0.8 * _unit("volume", self.id, hour // 24)
            volume = price * self.supply * self.volume_ratio * swing
        return price, price * self.supply, volume


def _make_coin(seed: int, index: int) -> Coin:
    rng = random.Random(f"{seed}/{index}")
    if index == 1:
        cid, symbol, name, price, supply, max_supply, vol = (
            "bitcoin",
            "btc",
            "Bitcoin",
            96000.0,
            19826375.0,
            21000000.0,
            0.05,
        )
    elif index == 2:
        cid, symbol, name, price, supply, max_supply, vol = (
            "ethereum",
            "eth",
            "Ethereum",
            2700.0,
            120567000.0,
            None,
            0.07,
        )
    else:
        cid = f"coin-{index:04d}"
        symbol = f"c{index:04d}"
        name = f"Sim Coin {index}"
        cap = 1.2e12 * index**-1.5 * rng.uniform(0.9, 1.1)
        if index == STABLECOIN:
            cid, symbol, name, price, vol = "coin-0003", "simd", "Sim Dollar", 1.0, 0.0004
        else:
            price, vol = 10 ** rng.uniform(-7, 4), rng.uniform(0.03, 0.12)
        supply = cap / price
        max_supply = None if rng.random() < 0.45 else supply * rng.uniform(1.0, 3.0)
    total_supply = None if rng.random() < 0.05 else (max_supply or supply * rng.uniform(1.0, 1.5))
    return Coin(
        index=index,
        id=cid,
        symbol=symbol,
        name=name,
        base_price=price,
        supply=float(round(supply)),
        total_supply=float(round(total_supply)) if total_supply else None,
        max_supply=float(round(max_supply)) if max_supply else None,
        volatility=vol,
        volume_ratio=rng.uniform(0.005, 0.25),
        phases=tuple(rng.uniform(0, 2 * math.pi) for _ in _WAVES),
        ico_price=price * rng.uniform(0.02, 1.5) if rng.random() < 0.25 else None,
        roi_currency=rng.choice(("usd", "usd", "usd", "btc", "eth")),
        ath_factor=rng.uniform(1.01, 1.2) if index == STABLECOIN else rng.uniform(1.05, 3.0),
        atl_factor=rng.uniform(0.02, 0.9),
        ath_days_ago=rng.randint(10, 1500),
        atl_days_ago=rng.randint(1500, 4000),
        lag_seconds=rng.uniform(1.0, 240.0),
        image_version=1696500000 + rng.randint(0, 99999),
    )


class Market:
    """The universe of ``coins`` coins for one ``seed``; snapshots and history on demand."""

    def __init__(self, coins: int = 300, seed: int = 7, rename: Optional[dict[str, str]] = None):
        if coins < 1:
            raise ValueError("coins must be >= 1")
        self.seed = seed
        self.coins = [_make_coin(seed, i) for i in range(1, coins + 1)]
        if rename:  # the same coins served under other ids (what a compromised proxy could send)
            self.coins = [replace(c, id=rename.get(c.id, c.id)) for c in self.coins]
        self.by_id = {c.id: c for c in self.coins}
        self._snapshot = lru_cache(maxsize=8)(self._compute_snapshot)

    def snapshot(
        self,
        moment: datetime,
        timeframes: tuple[str, ...] = DEFAULT_TIMEFRAMES,
        vs_currency: str = "usd",
    ) -> list[dict]:
        """Every coin's record as served at ``moment``, in market-cap order (rank-swapped).

        Values are those of the UTC hour containing ``moment``; only ``last_updated`` depends
        on the moment itself (moment minus a per-coin lag).
        """
        return self.stamped(self.unstamped_snapshot(moment, timeframes, vs_currency), moment)

    def unstamped_snapshot(
        self, moment: datetime, timeframes: tuple[str, ...] = DEFAULT_TIMEFRAMES, vs_currency: str = "usd"
    ) -> list[dict]:
        """The hour's records (cached, shared: do not change them) without ``last_updated``, so a
        server paging through 18,000 coins stamps only the page it serves."""
        hour = int(as_utc(moment).timestamp()) // HOUR_SECONDS
        timeframes = tuple(tf for tf in timeframes if tf in TIMEFRAME_HOURS)
        return self._snapshot(hour, timeframes, vs_currency)

    def stamped(self, records: list[dict], moment: datetime) -> list[dict]:
        """Copies of ``records`` with ``last_updated`` as of ``moment`` (minus each coin's lag)."""
        moment = as_utc(moment)
        stamped = []
        for record in records:
            coin = self.by_id[record["id"]]
            lag = coin.lag_seconds + coin.stale_hours * HOUR_SECONDS
            stamped.append({**record, "last_updated": iso_ms(moment - timedelta(seconds=lag))})
        return stamped

    def _compute_snapshot(self, hour: int, timeframes: tuple[str, ...], vs_currency: str) -> list[dict]:
        rate = CURRENCY_RATES[vs_currency]
        ordered = sorted(self.coins, key=lambda c: c.market_cap(hour), reverse=True)
        ranks = list(range(1, len(ordered) + 1))
        for pos in RANK_SWAPS:
            if pos < len(ranks):
                ranks[pos - 1], ranks[pos] = ranks[pos], ranks[pos - 1]
        return [self._record(c, hour, rank, timeframes, rate) for c, rank in zip(ordered, ranks)]

    def _record(self, coin: Coin, hour: int, rank: int, timeframes: tuple[str, ...], rate: float) -> dict:
        price, cap, volume = (value * rate for value in coin.point(hour))
        day = [coin.price(h) * rate for h in range(hour - 24, hour + 1)]
        cap_24h_ago = coin.market_cap(hour - 24) * rate
        stale = coin.stale_hours > 0
        bound = math.exp(coin.volatility * _AMPLITUDE_BOUND)
        ath = coin.base_price * rate * bound * coin.ath_factor
        atl = coin.base_price * rate / bound * coin.atl_factor
        now_day = datetime.fromtimestamp(hour * HOUR_SECONDS, timezone.utc)
        ath_date = now_day - timedelta(days=coin.ath_days_ago, seconds=coin.ath_days_ago * 37)
        if coin.ath_days_ago > 1000:
            ath_date = ath_date.replace(hour=0, minute=0, second=0)
        atl_date = (now_day - timedelta(days=coin.atl_days_ago)).replace(hour=0, minute=0, second=0)
        circulating = 0.0 if coin.index == ZERO_CIRCULATING else coin.supply
        fdv = (
            None
            if coin.index == ZERO_CIRCULATING
            else _intish(price * (coin.max_supply or coin.total_supply or coin.supply))
        )
        roi = None
        if coin.ico_price:
            times = coin.price(hour) / coin.ico_price - 1
            roi = {"times": times, "currency": coin.roi_currency, "percentage": times * 100}

        def change(hours: int) -> Optional[float]:
            if stale and hours <= 24 or coin.index == YOUNG_COIN and hours > 24:
                return None
            return (coin.price(hour) / coin.price(hour - hours) - 1) * 100

        record = {
            "id": coin.id,
            "symbol": coin.symbol,
            "name": coin.name,
            "image": f"https://coin-images.coingecko.com/coins/images/{coin.index}/large/{coin.id}.png?{coin.image_version}",
            "current_price": _round_price(price),
            "market_cap": _intish(cap),
            "market_cap_rank": rank,
            "fully_diluted_valuation": fdv,
            "total_volume": 0.0 if coin.index == ZERO_VOLUME else _intish(volume),
            "high_24h": None if stale else _round_price(max(day)),
            "low_24h": None if stale else _round_price(min(day)),
            "price_change_24h": None if stale else float(f"{price - day[0]:.6g}"),
            "price_change_percentage_24h": None if stale else round((price / day[0] - 1) * 100, 5),
            "market_cap_change_24h": None if stale else round(cap - cap_24h_ago, 2),
            "market_cap_change_percentage_24h": None if stale else round((cap / cap_24h_ago - 1) * 100, 5),
            "circulating_supply": circulating,
            "total_supply": coin.total_supply,
            "max_supply": coin.max_supply,
            "ath": _round_price(ath),
            "ath_change_percentage": round((price - ath) / ath * 100, 5),
            "ath_date": iso_ms(ath_date),
            "atl": _round_price(atl),
            "atl_change_percentage": round((price - atl) / atl * 100, 5),
            "atl_date": iso_ms(atl_date),
            "roi": roi,
            "last_updated": None,  # set per request by snapshot(), keeping the key order
        }
        for tf in timeframes:
            record[f"price_change_percentage_{tf}_in_currency"] = change(TIMEFRAME_HOURS[tf])
        return record

    def history(self, coin_id: str, start: int, end: int, now: datetime, vs_currency: str = "usd") -> dict:
        """``/market_chart/range`` for unix seconds [start, end], with CoinGecko's granularity.

        Ranges up to 90 days give hourly points (at a coin-dependent minute of each hour);
        longer ranges give daily points at 00:00 UTC; points older than 90 days before
        ``now`` are daily whatever the range. Nothing after ``now`` exists.
        """
        coin = self.by_id[coin_id]
        rate = CURRENCY_RATES[vs_currency]
        now_s = int(as_utc(now).timestamp())
        end = min(end, now_s)
        hourly_from = (
            now_s - HOURLY_HISTORY_DAYS * DAY_SECONDS if end - start <= HOURLY_HISTORY_DAYS * DAY_SECONDS else end + 1
        )
        offset = int(_unit("minute", coin.id) * HOUR_SECONDS)
        stamps = [d for d in range(-(-start // DAY_SECONDS) * DAY_SECONDS, end + 1, DAY_SECONDS) if d < hourly_from]
        first_hour = max(start, hourly_from) // HOUR_SECONDS * HOUR_SECONDS
        stamps += [
            h + offset for h in range(first_hour, end + 1, HOUR_SECONDS) if max(start, hourly_from) <= h + offset <= end
        ]
        prices, caps, volumes = [], [], []
        for ts in stamps:
            price, cap, volume = coin.point(ts // HOUR_SECONDS)
            ms = ts * 1000
            prices.append([ms, price * rate])
            caps.append([ms, cap * rate])
            volumes.append([ms, volume * rate])
        return {"prices": prices, "market_caps": caps, "total_volumes": volumes}
