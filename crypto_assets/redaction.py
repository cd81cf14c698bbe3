"""Secrets out of every text a user sees outside the run (alerts): keys, passwords, tokens."""

from __future__ import annotations

import re

from crypto_assets.resources.warehouse.odbc import mask_password
from crypto_assets.settings import secret_values

_KEY_PARAM = re.compile(r"(?i)(x[-_]cg[-_](?:demo|pro)[-_]api[-_]key[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}]+")


def scrub(text: str) -> str:
    """``text`` without the value of any secret setting (the CoinGecko key, ODBC passwords, the
    webhook URL, the object stores' keys) and without anything shaped like an API key or password."""
    for secret in secret_values():
        text = mask_password(text.replace(secret, "***"), secret)
    return _KEY_PARAM.sub(r"\1***", mask_password(text))
