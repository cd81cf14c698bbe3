"""What a failed CoinGecko call means: the error users see, CoinGecko's own error shapes, hints."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Optional

BODY_PREVIEW = 200
KEY_ERROR_CODES = {10002, 10005, 10010, 10011}
PLAN_HEADERS = {"demo": "x-cg-demo-api-key", "pro": "x-cg-pro-api-key"}


class CoinGeckoError(Exception):
    """A failed or refused CoinGecko call, with everything needed to act on it (never the key)."""

    def __init__(
        self,
        reason: str,
        *,
        endpoint: str,
        page: Optional[int] = None,
        status: Optional[int] = None,
        api_message: Optional[str] = None,
        api_code: Optional[int] = None,
        body: bytes = b"",
        hint: Optional[str] = None,
        retryable: bool = False,
        secret: Optional[str] = None,
    ):
        self.endpoint, self.page, self.status = endpoint, page, status
        self.api_message, self.api_code, self.retryable = api_message, api_code, retryable
        self.body, self.hint = body[:BODY_PREVIEW], hint
        parts = [f"CoinGecko {endpoint}" + (f" page {page}" if page is not None else "") + f": {reason}"]
        parts.append(f"HTTP {status}" if status is not None else "no HTTP response")
        if api_message or api_code:
            parts.append(f"CoinGecko says: {api_message or ''}" + (f" (error_code {api_code})" if api_code else ""))
        if body:
            parts.append(f"body starts: {body[:BODY_PREVIEW].decode('utf-8', 'replace')!r}")
        if hint:
            parts.append(f"hint: {hint}")
        message = "; ".join(parts)
        super().__init__(message.replace(secret, "***") if secret else message)


def api_error(body: bytes) -> tuple[Optional[str], Optional[int]]:
    """CoinGecko's own (message, code) from any of its error shapes, or (None, None)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(payload, dict):
        return None, None
    for candidate in (payload, payload.get("error") if isinstance(payload.get("error"), dict) else None):
        if candidate is None:
            continue
        status = candidate.get("status")
        if isinstance(status, dict) and ("error_code" in status or "error_message" in status):
            return status.get("error_message"), status.get("error_code")
        if isinstance(candidate.get("error"), str):
            return candidate["error"], status if isinstance(status, int) else None
        if "error_message" in candidate:
            return candidate.get("error_message"), candidate.get("error_code")
    return None, None


def retry_after(value: Optional[str]) -> Optional[float]:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


def hint(status: Optional[int], api_code: Optional[int], plan: str, has_key: bool) -> Optional[str]:
    """What a user should do about a refusal, from the HTTP status and CoinGecko's error code."""
    if api_code == 10010:
        return "a Pro key sent to the public host: set COINGECKO_PLAN=pro (COINGECKO_BASE_URL unset or the Pro host)"
    if api_code == 10011:
        return "a Demo key sent to the Pro host: set COINGECKO_PLAN=demo (COINGECKO_BASE_URL unset or the public host)"
    if api_code == 10005:
        return "this endpoint is not included in your CoinGecko plan"
    if api_code == 10002 or status == 401:
        if not has_key:
            return "no API key configured: set COINGECKO_API_KEY"
        return f"the key was refused: check COINGECKO_API_KEY and COINGECKO_PLAN={plan} (sent as header {PLAN_HEADERS[plan]})"
    if status == 429:
        return "rate limited: lower calls_per_minute, or wait; shared IPs and keyless use are throttled harder"
    if status == 404:
        return "unknown path or coin id; check COINGECKO_BASE_URL and the coin id"
    if status in (400, 422):
        return "CoinGecko rejected a parameter"
    if status is not None and status >= 500:
        return "CoinGecko (or its CDN) is failing; see https://status.coingecko.com"
    return None
