"""The CoinGecko client: one API root, one session, one rate limiter, retries.

It returns what the API sent, byte for byte (``ApiPage``), plus the parsed records, so
Bronze can land raw bodies and still know what each record was. It refuses anything that is
not the documented shape instead of guessing (no unwrapping of ``{"data": [...]}``), respects
the rate limit before the API has to say so, retries only what a retry can fix, and keeps the
API key out of URLs, logs and exceptions: it travels only in the plan's header.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Optional, TypeGuard
from urllib.parse import urlencode

import requests
from dagster import get_dagster_logger

from crypto_assets.resources.coingecko.errors import (
    KEY_ERROR_CODES,
    PLAN_HEADERS,
    CoinGeckoError,
    api_error,
    hint,
    retry_after,
)  # fmt: skip
from crypto_assets.resources.coingecko.responses import ApiPage, HistoryCapture, MarketsCapture, safe_segment

if TYPE_CHECKING:
    from crypto_assets.resources.coingecko.resource import CoinGeckoResource

# A Dagster logger: inside a run its lines go to the run log (and the UI), outside to stderr.
log = get_dagster_logger("crypto_assets.coingecko")

MARKETS = "/coins/markets"
HISTORY = "/coins/{id}/market_chart/range"
MAX_PER_PAGE = 250
# CRYPTO_COINS_LIMIT=all pages to the end of /coins/markets, but not past this many pages.
MAX_PAGES_ALL = 200
HISTORY_CHUNK = timedelta(days=90)  # CoinGecko serves hourly points only for ranges up to 90 days
# History calls in flight at once: the rate limiter still spaces their starts, and the overlap
# hides each call's latency, which alone kept a serial fetch under a paid plan's rate.
HISTORY_CALLS_IN_FLIGHT = 4
# plan -> (API root, calls per minute the plan allows)
PLANS = {"demo": ("https://api.coingecko.com/api/v3", 30.0), "pro": ("https://pro-api.coingecko.com/api/v3", 500.0)}


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


class CoinGeckoClient:
    """Talks to one CoinGecko API root with one session and one rate limiter."""

    def __init__(self, settings: CoinGeckoResource):
        default_url, default_rate = PLANS[settings.plan]
        self.settings = settings
        self.base_url = (settings.base_url or default_url).rstrip("/")
        self.timeframes = ",".join(t.strip() for t in settings.price_change_timeframes.split(",") if t.strip())
        self.limiter = RateLimiter(settings.calls_per_minute or default_rate)
        self._key = clean_api_key(settings.api_key)
        self._session = requests.Session()
        self._session.headers.update({"Accept": "application/json", "User-Agent": "crypto_assets/0.1"})
        if self._key:
            self._session.headers[PLAN_HEADERS[settings.plan]] = self._key

    # --- transport -----------------------------------------------------------------------

    def _get(self, endpoint: str, path: str, params: dict, page: int) -> ApiPage:
        """One GET with rate limiting and retries; returns the 200 response as an ApiPage."""
        request = path + ("?" + urlencode(params, safe=",") if params else "")
        deadline = time.monotonic() + self.settings.max_retry_seconds
        attempt = 0
        while True:
            attempt += 1
            self.limiter.acquire()
            wait: Optional[float] = None
            try:
                prepared = self._prepared(request)
                # what Session.get would add: proxies and CA bundle from the environment
                settings = self._session.merge_environment_settings(self.base_url + request, {}, None, None, None)
                response = self._session.send(prepared, timeout=self.settings.timeout_seconds, **settings)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                error = self._error(
                    f"{type(exc).__name__} after attempt {attempt}",
                    endpoint=endpoint, page=page, retryable=True,
                    hint=f"the API did not answer within {self.settings.timeout_seconds}s or refused the connection; check COINGECKO_BASE_URL",
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
                    wait = retry_after(response.headers.get("Retry-After"))
            if not error.retryable:
                raise error
            if attempt >= self.settings.max_attempts:
                raise self._error(f"gave up after {attempt} attempts", **self._context(error))
            if wait is None:
                wait = self.settings.backoff_seconds * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            if time.monotonic() + wait > deadline:
                raise self._error(
                    f"retry budget of {self.settings.max_retry_seconds:g}s exhausted after {attempt} attempts "
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
        api_message, api_code = api_error(body)
        retryable = (status in (408, 429) or status >= 500) and api_code not in KEY_ERROR_CODES
        return self._error(
            "request failed", endpoint=endpoint, page=page, status=status, api_message=api_message,
            api_code=api_code, body=body, hint=hint(status, api_code, self.settings.plan, bool(self._key)), retryable=retryable,
        )  # fmt: skip

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
            params = {
                "vs_currency": self.settings.vs_currency,
                "order": "market_cap_desc",
                "per_page": per_page,
                "page": page,
            }
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
            api_message, api_code = api_error(api_page.body)
            if api_message or api_code:
                raise self._error(
                    "an error object with HTTP 200", api_message=api_message, api_code=api_code,
                    hint=hint(None, api_code, self.settings.plan, bool(self._key)) or "CoinGecko reported an error in a 200 response", **context,
                )  # fmt: skip
            raise self._error(
                f"a JSON object (keys {sorted(payload)[:5]}) where a bare array was expected",
                hint="a wrapped array is not the API's shape; refusing to unwrap it", **context,
            )  # fmt: skip
        if not isinstance(payload, list):
            raise self._error(f"a JSON {type(payload).__name__} where an array was expected", **context)
        return payload

    def calls_for_history(self, coins: int, start: datetime, end: datetime) -> tuple[int, float]:
        """Calls a history fetch of ``coins`` over [start, end) makes, and the seconds the rate
        limit alone needs for them (retries aside)."""
        chunks = max(1, -(-(end - start) // HISTORY_CHUNK))
        return coins * chunks, coins * chunks * self.limiter.interval

    def market_chart_ranges(
        self, coin_ids: Iterable[str], start: datetime, end: datetime
    ) -> Generator[Future[HistoryCapture], None, None]:
        """``market_chart_range`` of each coin, as futures in the order of ``coin_ids``, with
        HISTORY_CALLS_IN_FLIGHT coins fetched at once and at most one more waiting to be taken.
        Once the caller stops taking them (an error), the coins not yet begun are never fetched."""
        with ThreadPoolExecutor(HISTORY_CALLS_IN_FLIGHT, thread_name_prefix="coingecko-history") as pool:
            pending: deque[Future[HistoryCapture]] = deque()
            try:
                for coin_id in coin_ids:
                    pending.append(pool.submit(self.market_chart_range, coin_id, start, end))
                    if len(pending) > HISTORY_CALLS_IN_FLIGHT:
                        yield pending.popleft()
                while pending:
                    yield pending.popleft()
            finally:
                for future in pending:
                    future.cancel()

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
                "vs_currency": self.settings.vs_currency,
                "from": int(chunk_start.timestamp()),
                "to": int(chunk_end.timestamp()),
            }
            api_page = self._get(HISTORY, path, params, chunk)
            decoded = self._decode(api_page)
            payload = decoded if isinstance(decoded, dict) else {}
            for name, points in series.items():
                values = payload.get(name)
                if not _is_series(values):
                    raise self._error(
                        f"missing or malformed {name!r} (expected [[unix_ms, number], ...])", endpoint=HISTORY,
                        page=chunk, status=api_page.status, body=api_page.body,
                    )  # fmt: skip
                points.update((int(ms), float(v)) for ms, v in values if start_ms <= ms < end_ms)
            pages.append(api_page)
            log.debug("history %s chunk %d: %d points", coin_id, chunk, len(payload["prices"]))
            chunk_start = chunk_end
        return HistoryCapture(
            coin_id, pages, *(sorted(series[n].items()) for n in ("prices", "market_caps", "total_volumes"))
        )


def _is_series(values: object) -> TypeGuard[list[list[float]]]:
    """Whether decoded JSON is ``[[number, number], ...]`` (``true`` is not a number): whole-list
    passes over the types, four times faster than a check per point (744 hours: 2,232 points)."""
    return (
        isinstance(values, list)
        and all(type(point) is list and len(point) == 2 for point in values)
        and {type(x) for point in values for x in point} <= {int, float}
    )
