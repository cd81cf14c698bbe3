"""What the client returns: responses as received, byte for byte, and the records parsed from them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Optional
from urllib.parse import quote


def safe_segment(text: str) -> str:
    """``text`` as one URL path or file name segment: percent-encoded (``/`` included), and
    never ``.`` or ``..``, so an id from the API cannot change a URL's or a path's structure."""
    encoded = quote(text, safe="")
    return encoded.replace(".", "%2E") if set(encoded) <= {"."} else encoded


@dataclass(frozen=True)
class ApiPage:
    """One HTTP response as received: the unit Bronze lands byte for byte."""

    endpoint: str
    request: str  # path + query as sent, relative to the API root; never holds the key
    page: int
    status: int
    body: bytes
    fetched_at: datetime

    @property
    def payload_sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


@dataclass(frozen=True)
class MarketsCapture:
    pages: list[ApiPage]
    records: list[tuple[int, int, object]]  # (page, position in page, record as sent), duplicates included
    requested: Optional[int]  # None: every coin listed
    unique_ids: int
    duplicate_ids: list[str]


@dataclass(frozen=True)
class HistoryCapture:
    coin_id: str
    pages: list[ApiPage]
    prices: list[tuple[int, float]]
    market_caps: list[tuple[int, float]]
    total_volumes: list[tuple[int, float]]
