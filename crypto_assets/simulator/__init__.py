"""A CoinGecko-compatible simulator: deterministic synthetic market, fault injection, request log."""

from crypto_assets.simulator.market import Market
from crypto_assets.simulator.server import FAULTS, Simulator

__all__ = ["FAULTS", "Market", "Simulator"]
