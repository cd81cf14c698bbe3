"""The CoinGecko resource: every client setting, declared and checked once, and the run's client."""

from __future__ import annotations

import threading
from typing import Literal, Optional

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from crypto_assets.resources.coingecko.client import CoinGeckoClient


class CoinGeckoResource(ConfigurableResource):
    """CoinGecko access for assets: one client (one session, one rate limiter) per run."""

    api_key: Optional[str] = Field(default=None, description="COINGECKO_API_KEY: sent only in the plan's header.")
    plan: Literal["demo", "pro"] = Field(default="demo", description="COINGECKO_PLAN: host, key header, rate.")
    base_url: Optional[str] = Field(default=None, description="COINGECKO_BASE_URL; default: the plan's host.")
    vs_currency: str = "usd"
    coins_limit: Optional[int] = Field(
        default=250, ge=1, le=10000, description="CRYPTO_COINS_LIMIT: coins per hour; None: every coin listed."
    )
    price_change_timeframes: str = "1h,24h,7d"
    timeout_seconds: float = Field(default=30.0, gt=0)
    calls_per_minute: Optional[float] = Field(
        default=None, gt=0, description="COINGECKO_CALLS_PER_MINUTE; default: the plan's limit."
    )
    max_attempts: int = Field(default=6, ge=1)
    max_retry_seconds: float = Field(default=300.0, ge=0)
    backoff_seconds: float = Field(default=1.0, ge=0, description="First retry delay; doubles, with jitter.")

    _client: Optional[CoinGeckoClient] = PrivateAttr(default=None)
    _client_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def get_client(self) -> CoinGeckoClient:
        """The run's client; built once so every asset shares its rate limiter."""
        with self._client_lock:
            if self._client is None:
                self._client = CoinGeckoClient(self)
            return self._client
