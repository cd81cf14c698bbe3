"""The CoinGecko client and its Dagster resource.

The client returns what the API sent, byte for byte (``ApiPage``), plus the parsed records, so
Bronze can land raw bodies and still know what each record was. It refuses anything that is
not the documented shape instead of guessing (no unwrapping of ``{"data": [...]}``), respects
the rate limit before the API has to say so, retries only what a retry can fix, and keeps the
API key out of URLs, logs and exceptions: it travels only in the plan's header.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Optional
from urllib.parse import quote, urlencode

import requests
from dagster import ConfigurableResource, get_dagster_logger
from pydantic import PrivateAttr

# A Dagster logger: inside a run its lines go to the run log (and the UI), outside to stderr.
log = get_dagster_logger("crypto_assets.coingecko")

MARKETS = "/coins/markets"
HISTORY = "/coins/{id}/market_chart/range"
MAX_PER_PAGE = 250
# CRYPTO_COINS_LIMIT=all pages to the end of /coins/markets, but not past this many pages.
MAX_PAGES_ALL = 200
HISTORY_CHUNK = timedelta(days=90)  # CoinGecko serves hourly points only for ranges up to 90 days
PLANS = {
    "demo": ("https://api.coingecko.com/api/v3", "x-cg-demo-api-key", 30.0),
    "pro": ("https://pro-api.coingecko.com/api/v3", "x-cg-pro-api-key", 500.0),
}
KEY_ERROR_CODES = {10002, 10005, 10010, 10011}
BODY_PREVIEW = 200


def safe_segment(text: str) -> str:
    """``text`` as one URL path or file name segment: percent-encoded (``/`` included), and
    never ``.`` or ``..``, so an id from the API cannot change a URL's or a path's structure."""
    encoded = quote(text, safe="")
    return encoded.replace(".", "%2E") if set(encoded) <= {"."} else encoded


def clean_api_key(key: Optional[str]) -> Optional[str]:
    """The key without surrounding whitespace (a secret file's newline, a CRLF ``.env``);
    refused, without showing it, when control characters remain inside."""
    key = (key or "").strip()
    if any(ord(char) < 32 or ord(char) == 127 for char in key):
        raise ValueError(
            "COINGECKO_API_KEY holds control characters inside it (a line break or tab "
            "in the middle): set it to the key alone"
        )
    return key or None


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
    requested: int
    unique_ids: int
    duplicate_ids: list[str]


@dataclass(frozen=True)
class HistoryCapture:
    coin_id: str
    pages: list[ApiPage]
    prices: list[tuple[int, float]]
    market_caps: list[tuple[int, float]]
    total_volumes: list[tuple[int, float]]


class RateLimiter:
    """Minimum spacing between calls, shared by every thread of one client.

    ``defer`` pushes the next slot out for everyone, so one 429's ``Retry-After`` pauses the
    whole client rather than just the thread that saw it.
    """

    def __init__(self, calls_per_minute: float):
        self.interval = 60.0 / calls_per_minute
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)

    def defer(self, seconds: float) -> None:
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


def _api_error(body: bytes) -> tuple[Optional[str], Optional[int]]:
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


def _retry_after(value: Optional[str]) -> Optional[float]:
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


class CoinGeckoClient:
    """Talks to one CoinGecko API root with one session and one rate limiter."""

    def __init__(
        self,
        *,
        base_url: str,
        plan: str = "demo",
        api_key: Optional[str] = None,
        vs_currency: str = "usd",
        price_change_timeframes: str = "1h,24h,7d",
        timeout_seconds: float = 30.0,
        calls_per_minute: float = 30.0,
        max_attempts: int = 6,
        max_retry_seconds: float = 300.0,
        backoff_seconds: float = 1.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.plan = plan
        self.vs_currency = vs_currency
        self.timeframes = ",".join(t.strip() for t in price_change_timeframes.split(",") if t.strip())
        self.timeout = timeout_seconds
        self.max_attempts = max_attempts
        self.max_retry_seconds = max_retry_seconds
        self.backoff_seconds = backoff_seconds
        self.limiter = RateLimiter(calls_per_minute)
        self._key = clean_api_key(api_key)
        self._session = requests.Session()
        self._session.headers.update({"Accept": "application/json", "User-Agent": "crypto_assets/0.1"})
        if self._key:
            self._session.headers[PLANS[plan][1]] = self._key

    # --- transport -----------------------------------------------------------------------

    def _get(self, endpoint: str, path: str, params: dict, page: int) -> ApiPage:
        """One GET with rate limiting and retries; returns the 200 response as an ApiPage."""
        request = path + ("?" + urlencode(params, safe=",") if params else "")
        deadline = time.monotonic() + self.max_retry_seconds
        attempt = 0
        while True:
            attempt += 1
            self.limiter.acquire()
            wait: Optional[float] = None
            try:
                prepared = self._prepared(request)
                # what Session.get would add: proxies and CA bundle from the environment
                settings = self._session.merge_environment_settings(prepared.url, {}, None, None, None)
                response = self._session.send(prepared, timeout=self.timeout, **settings)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                error = self._error(
                    f"{type(exc).__name__} after attempt {attempt}",
                    endpoint=endpoint, page=page, retryable=True,
                    hint=f"the API did not answer within {self.timeout}s or refused the connection; check COINGECKO_BASE_URL",
                )  # fmt: skip
            except requests.RequestException as exc:  # a request that cannot be sent; its text may quote a header
                raise self._error(
                    f"{type(exc).__name__}: {exc}",
                    endpoint=endpoint,
                    page=page,
                    hint="check COINGECKO_BASE_URL and COINGECKO_API_KEY",
                ) from None
            else:
                if response.status_code == 200:
                    return ApiPage(endpoint, request, page, 200, response.content, datetime.now(timezone.utc))
                error = self._http_error(endpoint, page, response)
                if response.status_code == 429:
                    wait = _retry_after(response.headers.get("Retry-After"))
            if not error.retryable:
                raise error
            if attempt >= self.max_attempts:
                raise self._error(f"gave up after {attempt} attempts", **self._context(error))
            if wait is None:
                wait = self.backoff_seconds * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            if time.monotonic() + wait > deadline:
                raise self._error(
                    f"retry budget of {self.max_retry_seconds:g}s exhausted after {attempt} attempts "
                    f"(next wait {wait:.1f}s)", **self._context(error),
                )  # fmt: skip
            log.warning("%s page %s: %s; retrying in %.2fs (attempt %d)", endpoint, page, error, wait, attempt)
            if error.status == 429:
                self.limiter.defer(wait)  # every caller of this client backs off, not just this one
            else:
                time.sleep(wait)

    def _prepared(self, request: str) -> requests.PreparedRequest:
        """The GET as built, its URL exactly as quoted here: requests would otherwise decode
        ``%2E`` back to ``.`` and let an id of ``..`` climb the API's path."""
        prepared = self._session.prepare_request(requests.Request("GET", self.base_url + request))
        prepared.url = self.base_url + request
        return prepared

    def _context(self, error: CoinGeckoError) -> dict:
        return dict(
            endpoint=error.endpoint, page=error.page, status=error.status, api_message=error.api_message,
            api_code=error.api_code, body=error.body, hint=error.hint, retryable=True,
        )  # fmt: skip

    def _error(self, reason: str, **kw) -> CoinGeckoError:
        return CoinGeckoError(reason, secret=self._key, **kw)

    def _http_error(self, endpoint: str, page: int, response: requests.Response) -> CoinGeckoError:
        status, body = response.status_code, response.content
        api_message, api_code = _api_error(body)
        retryable = (status in (408, 429) or status >= 500) and api_code not in KEY_ERROR_CODES
        return self._error(
            "request failed", endpoint=endpoint, page=page, status=status, api_message=api_message,
            api_code=api_code, body=body, hint=self._hint(status, api_code), retryable=retryable,
        )  # fmt: skip

    def _hint(self, status: Optional[int], api_code: Optional[int]) -> Optional[str]:
        header = PLANS[self.plan][1]
        if api_code == 10010:
            return (
                "a Pro key sent to the public host: set COINGECKO_PLAN=pro (COINGECKO_BASE_URL unset or the Pro host)"
            )
        if api_code == 10011:
            return (
                "a Demo key sent to the Pro host: set COINGECKO_PLAN=demo (COINGECKO_BASE_URL unset or the public host)"
            )
        if api_code == 10005:
            return "this endpoint is not included in your CoinGecko plan"
        if api_code == 10002 or status == 401:
            if not self._key:
                return "no API key configured: set COINGECKO_API_KEY"
            return (
                f"the key was refused: check COINGECKO_API_KEY and COINGECKO_PLAN={self.plan} (sent as header {header})"
            )
        if status == 429:
            return "rate limited: lower calls_per_minute, or wait; shared IPs and keyless use are throttled harder"
        if status == 404:
            return "unknown path or coin id; check COINGECKO_BASE_URL and the coin id"
        if status in (400, 422):
            return "CoinGecko rejected a parameter"
        if status is not None and status >= 500:
            return "CoinGecko (or its CDN) is failing; see https://status.coingecko.com"
        return None

    def _decode(self, api_page: ApiPage) -> object:
        """The JSON body, or a CoinGeckoError naming what came instead."""
        head = api_page.body.lstrip()[:1]
        if head == b"<" or head not in (b"[", b"{"):
            raise self._error(
                "not JSON (an HTML or text page with HTTP 200)", endpoint=api_page.endpoint, page=api_page.page,
                status=api_page.status, body=api_page.body,
                hint="usually Cloudflare throttling or a proxy/captive page in front of the API",
            )  # fmt: skip
        try:
            return json.loads(api_page.body)
        except ValueError as exc:
            raise self._error(
                f"invalid JSON ({exc})", endpoint=api_page.endpoint, page=api_page.page, status=api_page.status,
                body=api_page.body, hint="the body was probably truncated in transit; a rerun usually succeeds",
            ) from None  # fmt: skip

    # --- endpoints -----------------------------------------------------------------------

    def ping(self) -> dict:
        api_page = self._get("/ping", "/ping", {}, 1)
        payload = self._decode(api_page)
        if not isinstance(payload, dict):
            raise self._error("not a JSON object", endpoint="/ping", status=200, body=api_page.body)
        return payload

    def markets(self, limit: Optional[int]) -> MarketsCapture:
        """The top ``limit`` coins by market cap, in ``ceil(limit/250)`` evenly sized pages; with
        ``limit=None`` every coin, 250 a page until a page comes back short."""
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        page_count = math.ceil(limit / MAX_PER_PAGE) if limit is not None else MAX_PAGES_ALL
        per_page = math.ceil(limit / page_count) if limit is not None else MAX_PER_PAGE
        pages: list[ApiPage] = []
        records: list[tuple[int, int, object]] = []
        started = time.monotonic()
        for page in range(1, page_count + 1):
            params = {"vs_currency": self.vs_currency, "order": "market_cap_desc", "per_page": per_page, "page": page}
            if self.timeframes:
                params["price_change_percentage"] = self.timeframes
            api_page = self._get(MARKETS, MARKETS, params, page)
            rows = self._market_rows(api_page)
            pages.append(api_page)
            records.extend((page, position, row) for position, row in enumerate(rows))
            log.info(
                "markets page %d/%s: %d records (%d bytes), %.2fs elapsed",
                page, page_count if limit is not None else "?", len(rows), len(api_page.body), time.monotonic() - started,
            )  # fmt: skip
            if len(rows) < per_page:
                break
        else:
            if limit is None and page_count == MAX_PAGES_ALL:
                raise self._error(
                    f"still full pages after {MAX_PAGES_ALL} pages of {per_page}: refusing to page on",
                    endpoint=MARKETS,
                    page=page_count,
                    status=200,
                    hint="CoinGecko lists under 20,000 coins; set CRYPTO_COINS_LIMIT to a number",
                )
        counts: dict[str, int] = {}
        for _, _, row in records:
            coin_id = row.get("id") if isinstance(row, dict) else None
            if isinstance(coin_id, str):
                counts[coin_id] = counts.get(coin_id, 0) + 1
        duplicates = [cid for cid, n in counts.items() if n > 1]
        if duplicates:
            log.warning(
                "markets: %d ids served more than once (ranks moved while paging): %s", len(duplicates), duplicates[:10]
            )
        return MarketsCapture(pages, records, limit, len(counts), duplicates)

    def _market_rows(self, api_page: ApiPage) -> list:
        """The page's records; anything but a JSON array is refused. Records are kept as sent:
        one without a string id is data for Silver's quarantine, not a reason to lose the page."""
        payload = self._decode(api_page)
        context = dict(endpoint=api_page.endpoint, page=api_page.page, status=api_page.status, body=api_page.body)
        if isinstance(payload, dict):
            api_message, api_code = _api_error(api_page.body)
            if api_message or api_code:
                raise self._error(
                    "an error object with HTTP 200", api_message=api_message, api_code=api_code,
                    hint=self._hint(None, api_code) or "CoinGecko reported an error in a 200 response", **context,
                )  # fmt: skip
            raise self._error(
                f"a JSON object (keys {sorted(payload)[:5]}) where a bare array was expected",
                hint="a wrapped array is not the API's shape; refusing to unwrap it", **context,
            )  # fmt: skip
        if not isinstance(payload, list):
            raise self._error(f"a JSON {type(payload).__name__} where an array was expected", **context)
        return payload

    def market_chart_range(self, coin_id: str, start: datetime, end: datetime) -> HistoryCapture:
        """Prices, caps and volumes of ``coin_id`` in [start, end), in ≤90-day chunks (hourly points)."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        path = f"/coins/{safe_segment(coin_id)}/market_chart/range"
        pages: list[ApiPage] = []
        series: dict[str, dict[int, float]] = {"prices": {}, "market_caps": {}, "total_volumes": {}}
        start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        chunk_start, chunk = start, 0
        while chunk_start < end:
            chunk += 1
            chunk_end = min(chunk_start + HISTORY_CHUNK, end)
            params = {
                "vs_currency": self.vs_currency,
                "from": int(chunk_start.timestamp()),
                "to": int(chunk_end.timestamp()),
            }
            api_page = self._get(HISTORY, path, params, chunk)
            payload = self._decode(api_page)
            for name, points in series.items():
                values = payload.get(name) if isinstance(payload, dict) else None
                if not isinstance(values, list) or not all(_is_point(p) for p in values):
                    raise self._error(
                        f"missing or malformed {name!r} (expected [[unix_ms, number], ...])", endpoint=HISTORY,
                        page=chunk, status=api_page.status, body=api_page.body,
                    )  # fmt: skip
                points.update((int(ms), float(v)) for ms, v in values if start_ms <= ms < end_ms)
            pages.append(api_page)
            log.info("history %s chunk %d: %d points", coin_id, chunk, len(payload["prices"]))
            chunk_start = chunk_end
        return HistoryCapture(
            coin_id, pages, *(sorted(series[n].items()) for n in ("prices", "market_caps", "total_volumes"))
        )


def _is_point(point: object) -> bool:
    return (
        isinstance(point, list)
        and len(point) == 2
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in point)
    )


class CoinGeckoResource(ConfigurableResource):
    """CoinGecko access for assets: one client (one session, one rate limiter) per run."""

    api_key: Optional[str] = None
    plan: str = "demo"
    base_url: Optional[str] = None
    vs_currency: str = "usd"
    coins_limit: Optional[int] = 250  # None: every coin /coins/markets lists
    price_change_timeframes: str = "1h,24h,7d"
    timeout_seconds: float = 30.0
    calls_per_minute: Optional[float] = None
    max_attempts: int = 6
    max_retry_seconds: float = 300.0
    backoff_seconds: float = 1.0  # first retry delay; doubles per attempt, with jitter

    _client: Optional[CoinGeckoClient] = PrivateAttr(default=None)
    _client_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def _validate(self) -> None:
        clean_api_key(self.api_key)
        if self.plan not in PLANS:
            raise ValueError(f"COINGECKO_PLAN must be 'demo' or 'pro', got {self.plan!r}")
        if self.coins_limit is not None and not 1 <= self.coins_limit <= 10000:
            raise ValueError(f"CRYPTO_COINS_LIMIT must be between 1 and 10000, or 'all', got {self.coins_limit}")
        if self.calls_per_minute is not None and self.calls_per_minute <= 0:
            raise ValueError(f"calls_per_minute must be > 0, got {self.calls_per_minute}")
        if self.timeout_seconds <= 0 or self.max_attempts < 1:
            raise ValueError("timeout_seconds must be > 0 and max_attempts >= 1")

    def get_client(self) -> CoinGeckoClient:
        """The run's client; built once so every asset shares its rate limiter."""
        with self._client_lock:
            if self._client is None:
                self._validate()
                default_url, _, default_rate = PLANS[self.plan]
                self._client = CoinGeckoClient(
                    base_url=self.base_url or default_url,
                    plan=self.plan,
                    api_key=self.api_key,
                    vs_currency=self.vs_currency,
                    price_change_timeframes=self.price_change_timeframes,
                    timeout_seconds=self.timeout_seconds,
                    calls_per_minute=self.calls_per_minute or default_rate,
                    max_attempts=self.max_attempts,
                    max_retry_seconds=self.max_retry_seconds,
                    backoff_seconds=self.backoff_seconds,
                )
            return self._client
