"""CoinGecko: the client (``client``), what it returns (``responses``), what its failures mean
(``errors``) and the Dagster resource (``resource``)."""

from crypto_assets.resources.coingecko.client import CoinGeckoClient
from crypto_assets.resources.coingecko.errors import CoinGeckoError
from crypto_assets.resources.coingecko.resource import CoinGeckoResource
from crypto_assets.resources.coingecko.responses import ApiPage, HistoryCapture, MarketsCapture, safe_segment

__all__ = [
    "ApiPage", "CoinGeckoClient", "CoinGeckoError", "CoinGeckoResource", "HistoryCapture", "MarketsCapture",
    "safe_segment",
]  # fmt: skip
