"""A CoinGecko-compatible HTTP server with fault injection, for the demo, tests, CI and benchmarks.

Stdlib only (``ThreadingHTTPServer``), so it runs anywhere the package imports. Faults are
armed from Python (``Simulator.inject``) or over HTTP (``POST /__sim/faults``) so that a
simulator started as a subprocess can be driven the same way.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional, Union
from urllib.parse import parse_qs, unquote, urlsplit

from crypto_assets.partitions import as_utc
from crypto_assets.simulator.market import CURRENCY_RATES, DEFAULT_TIMEFRAMES, Market

API_ROOT = "/api/v3"
MARKETS = "/coins/markets"
HISTORY = "/coins/{id}/market_chart/range"
_HISTORY_PATH = re.compile(r"^/coins/([^/]+)/market_chart/range$")

KEY_HEADERS = {"demo": "x-cg-demo-api-key", "pro": "x-cg-pro-api-key"}
KEY_QUERY_PARAMS = ("x_cg_demo_api_key", "x_cg_pro_api_key")
_KEY_IN_QUERY = re.compile(r"((?:x_cg_demo_api_key|x_cg_pro_api_key)=)[^&]*")

# The real 429 body (shared/coingecko/samples/error_429_public-api_body_transcribed.json, 187 bytes).
RATE_LIMIT_BODY = (
    b'{"status":{"error_code":429,"error_message":"You\'ve exceeded the Rate Limit. Please visit '
    b'https://www.coingecko.com/en/api/pricing to subscribe to our API plans for higher rate limits."}}'
)
KEY_ERROR_MESSAGES = {
    10002: "API Key Missing. Please make sure you're using the right authentication method. "
    "For Pro API, ensure you pass in x_cg_pro_api_key parameter with a Pro Key. "
    "For Demo API, ensure you pass in x_cg_demo_api_key parameter with a Demo Key.",
    10010: "If you are using Pro API key, please change your root URL from api.coingecko.com to pro-api.coingecko.com",
    10011: "If you are using Demo API key, please change your root URL from pro-api.coingecko.com to api.coingecko.com",
}
CLOUDFLARE_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Access denied | api.coingecko.com used Cloudflare to restrict access"
    b"</title></head>\n<body><h1>Error 1015</h1><p>You are being rate limited</p>"
    b"<p>The owner of this website (api.coingecko.com) has banned you temporarily from accessing this website.</p>"
    b"</body></html>\n"
)
FAULTS = (
    "429", "500", "503", "slow", "html", "truncated", "error_object", "wrapped",
    "drift", "string_numbers", "duplicates", "bad_values", "key_error", "missing_ids", "null_prices", "bad_points",
)  # fmt: skip
# The request log keeps the newest entries only, so a long-running simulator stays small.
REQUEST_LOG_LIMIT = 10_000


def _json(payload: object) -> bytes:
    """Minified, as the API sends it."""
    return json.dumps(payload, separators=(",", ":")).encode()


def _endpoint_of(path: str) -> Optional[str]:
    if path == MARKETS:
        return MARKETS
    if _HISTORY_PATH.match(path):
        return HISTORY
    return path if path == "/ping" else None


class Fault:
    """One armed fault: applies to the next ``times`` matching requests."""

    def __init__(
        self, fault: str, endpoint: Optional[str] = MARKETS, page: Optional[int] = None, times: int = 1, **opts
    ):
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        self.fault, self.endpoint, self.page, self.times, self.opts = fault, endpoint, page, times, opts

    def matches(self, endpoint: Optional[str], page: Optional[int]) -> bool:
        return self.times > 0 and self.endpoint in (None, "*", endpoint) and (self.page is None or self.page == page)


class Simulator:
    """The simulator as a Python object: ``with Simulator(coins=300) as sim: base = sim.base_url``.

    ``now`` freezes the clock (settable later to move it); ``markets_file`` serves a recorded
    ``/coins/markets`` body byte for byte as page 1 (and ``[]`` after it). ``rename`` serves
    coins under other ids (a compromised proxy: ``{"coin-0005": "../../escape"}``) and
    ``delisted`` ids answer 404 on the history endpoint. The request log (``requests``) keeps
    the newest ``REQUEST_LOG_LIMIT`` entries with API keys masked; ``request_count`` counts all.
    """

    def __init__(
        self,
        coins: int = 300,
        api_key: Optional[str] = None,
        plan: str = "demo",
        seed: int = 7,
        now: Optional[datetime] = None,
        markets_file: Union[str, Path, None] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        rename: Optional[dict[str, str]] = None,
        delisted: tuple[str, ...] = (),
    ):
        if plan not in KEY_HEADERS:
            raise ValueError(f"plan must be one of {sorted(KEY_HEADERS)}, got {plan!r}")
        self.market = Market(coins=coins, seed=seed, rename=rename)
        self.delisted = set(delisted)
        self.api_key, self.plan = api_key, plan
        self.now = as_utc(now) if now else None
        self.markets_file = Path(markets_file) if markets_file else None
        self.host, self.port = host, port
        self.requests: list[dict] = []
        self.request_count = 0
        self.faults: list[Fault] = []
        self._held: list[threading.Event] = []
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # --- control -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if not self._server:
            raise RuntimeError("simulator not started")
        return f"http://{self.host}:{self._server.server_address[1]}{API_ROOT}"

    def _bind(self) -> ThreadingHTTPServer:
        self._server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        self._server.daemon_threads = True  # idle keep-alive connections must not block stop()
        return self._server

    def start(self) -> str:
        """Serve on a background thread; returns the API root URL."""
        server = self._bind()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="coingecko-sim", daemon=True
        )  # a short poll keeps stop() fast
        self._thread.start()
        return self.base_url

    def serve_forever(self, on_ready=None) -> None:
        """Serve on the calling thread (the CLI); ``on_ready(base_url)`` runs once bound."""
        server = self._bind()
        if on_ready:
            on_ready(self.base_url)
        server.serve_forever()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> "Simulator":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def inject(
        self, fault: str, *, endpoint: Optional[str] = MARKETS, page: Optional[int] = None, times: int = 1, **opts
    ) -> None:
        """Arm ``fault`` for the next ``times`` requests to ``endpoint`` (None/"*" = any), optionally one ``page``."""
        with self._lock:
            self.faults.append(Fault(fault, endpoint, page, times, **opts))

    def hold(self, seconds: float) -> None:
        """Keep a ``slow`` reply back for ``seconds``, or until ``release_held()``."""
        released = threading.Event()
        with self._lock:
            self._held.append(released)
        released.wait(seconds)

    @property
    def held(self) -> int:
        """How many replies a ``slow`` fault holds back now."""
        with self._lock:
            return len(self._held)

    def release_held(self) -> int:
        """Send every reply a ``slow`` fault holds back now (a test that has seen what it waited for
        needs no longer delay); returns how many."""
        with self._lock:
            held, self._held = self._held, []
        for released in held:
            released.set()
        return len(held)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def reset(self) -> None:
        """Clear faults and the request log."""
        with self._lock:
            self.faults.clear()
            self.requests.clear()
            self.request_count = 0

    def clock(self) -> datetime:
        return self.now or datetime.now(timezone.utc)

    def market_at(
        self, hour_or_moment: Union[datetime, str], timeframes: tuple[str, ...] = DEFAULT_TIMEFRAMES
    ) -> list[dict]:
        """The full universe as ``/coins/markets`` serves it at that moment, in market-cap order.

        Accepts a datetime, an ISO string or a Dagster hourly partition key ("2026-11-25-13:00").
        """
        moment = parse_now(hour_or_moment) if isinstance(hour_or_moment, str) else hour_or_moment
        return self.market.snapshot(moment, timeframes)

    def log_request(self, path: str, headers: dict[str, str], status: int, key_in_query: bool) -> None:
        """Keep the request, its API key replaced by whether it was the right one in the plan's header."""
        lowered = {name.lower(): value for name, value in headers.items()}
        key_header = next((name for name in KEY_HEADERS.values() if name in lowered), None)
        entry = {
            "method": "GET",
            "path": _KEY_IN_QUERY.sub(r"\1***", path),
            "headers": {
                name: "***" if name.lower() in KEY_HEADERS.values() else value for name, value in headers.items()
            },
            "key_header": key_header,
            "key_ok": self.api_key is not None and lowered.get(KEY_HEADERS[self.plan]) == self.api_key,
            "status": status,
            "time": time.time(),
            "key_in_query": key_in_query,
        }
        with self._lock:
            self.requests.append(entry)
            self.request_count += 1
            if len(self.requests) > REQUEST_LOG_LIMIT:
                del self.requests[: len(self.requests) - REQUEST_LOG_LIMIT]

    @property
    def key_in_query(self) -> list[dict]:
        """Requests that carried a key as a query parameter: a client fault (leaks into logs)."""
        return [r for r in self.requests if r["key_in_query"]]

    def _take_fault(self, endpoint: Optional[str], page: Optional[int]) -> Optional[Fault]:
        with self._lock:
            for fault in self.faults:
                if fault.matches(endpoint, page):
                    fault.times -= 1
                    return fault
        return None

    # --- responses -----------------------------------------------------------------------

    def respond(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes, float]:
        """(status, headers, body, delay before sending) for one API request."""
        url = urlsplit(target)
        path = url.path[len(API_ROOT) :] if url.path.startswith(API_ROOT) else None
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        endpoint = _endpoint_of(path) if path is not None else None
        page = _int(query.get("page"), 1) if endpoint == MARKETS else None
        if endpoint is None or method != "GET":
            return _reply(404, {"error": "Incorrect path. Please check https://www.coingecko.com/api/"})

        # Only the plan's header is accepted: a key in the query string is a client fault
        # (it leaks into logs); such requests are flagged in the request log.
        key_status = self._check_key({k.lower(): v for k, v in headers.items()})
        if key_status:
            return _key_error(key_status)
        fault = self._take_fault(endpoint, page)
        if fault and fault.fault in ("429", "500", "503", "key_error", "html", "error_object"):
            return _fault_reply(fault)
        delay = float(fault.opts.get("delay", 5.0)) if fault and fault.fault == "slow" else 0.0

        extra: dict[str, str] = {}
        if endpoint == "/ping":
            status, body = 200, _json({"gecko_says": "(V3) To the Moon!"})
        elif endpoint == MARKETS:
            status, extra, body = self._markets(query, page or 1, fault)
        else:
            status, extra, body = self._history(path or "", query, fault)
        if fault and fault.fault == "truncated" and status == 200:
            body = body[: len(body) // 2]
        return status, extra, body, delay

    def _check_key(self, headers: dict[str, str]) -> Optional[int]:
        """The CoinGecko key error code for this request's headers, or None when accepted."""
        if not self.api_key:
            return None
        if headers.get(KEY_HEADERS[self.plan]) == self.api_key:
            return None
        other = KEY_HEADERS["pro" if self.plan == "demo" else "demo"]
        if headers.get(other):
            return 10010 if self.plan == "demo" else 10011
        return 10002

    def _markets(self, query: dict[str, str], page: int, fault: Optional[Fault]) -> tuple[int, dict, bytes]:
        vs_currency = query.get("vs_currency", "").lower()
        if not vs_currency:
            return 422, {}, _json({"error": "Missing parameter vs_currency"})
        if vs_currency not in CURRENCY_RATES:
            return 400, {}, _json({"error": "invalid vs_currency"})
        if self.markets_file:
            return 200, {}, self.markets_file.read_bytes() if page == 1 else b"[]"
        per_page = min(max(_int(query.get("per_page"), 100), 1), 250)
        timeframes = tuple(t.strip() for t in query.get("price_change_percentage", "").split(",") if t.strip())
        moment = self.clock()
        records = _order(
            self.market.unstamped_snapshot(moment, timeframes, vs_currency), query.get("order", "market_cap_desc")
        )
        if query.get("ids"):
            wanted = {i.strip() for i in query["ids"].split(",")}
            records = [r for r in records if r["id"] in wanted]
        start = (max(page, 1) - 1) * per_page
        if fault and fault.fault == "duplicates" and page > 1:
            start = max(start - int(fault.opts.get("count", 3)), 0)
        rows = self.market.stamped(records[start : start + per_page], moment)
        if fault:
            rows = _mangle(rows, fault)
        payload: object = rows
        if fault and fault.fault == "wrapped":
            payload = {fault.opts.get("key", "data"): rows}
        return 200, {}, _json(payload)

    def _history(self, path: str, query: dict[str, str], fault: Optional[Fault]) -> tuple[int, dict, bytes]:
        matched = _HISTORY_PATH.match(path)
        assert matched, path  # respond() routes only matching paths here
        coin_id = unquote(matched.group(1))
        vs_currency = query.get("vs_currency", "").lower()
        for name in ("vs_currency", "from", "to"):
            if not query.get(name):
                return 422, {}, _json({"error": f"Missing parameter {name}"})
        if vs_currency not in CURRENCY_RATES:
            return 400, {}, _json({"error": "invalid vs_currency"})
        if coin_id not in self.market.by_id or coin_id in self.delisted:
            return 404, {}, _json({"error": "coin not found"})
        try:
            start, end = int(float(query["from"])), int(float(query["to"]))
        except ValueError:
            return 400, {}, _json({"error": "invalid from/to"})
        payload = self.market.history(coin_id, start, end, self.clock(), vs_currency)
        if fault and fault.fault == "bad_points":
            _spoil_points(payload, **fault.opts)
        return 200, {}, _json(payload)


def _spoil_points(payload: dict, series: str = "prices", point: object = None) -> None:
    """The ``bad_points`` fault: the first point of ``series``, if it has one, replaced by ``point``
    (default: its time with ``true`` as the value), or the series dropped if ``point`` is ``"missing"``."""
    if not payload[series]:
        return
    if point == "missing":
        del payload[series]
    else:
        payload[series][0] = [payload[series][0][0], True] if point is None else point


def _int(value: Optional[str], default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def _order(records: list[dict], order: str) -> list[dict]:
    keys = {
        "market_cap_asc": (lambda r: r["market_cap"], False),
        "volume_desc": (lambda r: r["total_volume"], True),
        "volume_asc": (lambda r: r["total_volume"], False),
        "id_asc": (lambda r: r["id"], False),
        "id_desc": (lambda r: r["id"], True),
    }
    if order not in keys:
        return records
    key, reverse = keys[order]
    return sorted(records, key=key, reverse=reverse)


def _mangle(rows: list, fault: Fault) -> list:
    """Record-level faults: schema drift, numbers as strings, bad values."""
    rows = [dict(r) for r in rows]
    if fault.fault == "drift":
        drop = fault.opts.get("drop", "roi")
        for r in rows:
            r.pop(drop, None)
            r["new_field_x"] = 1
    elif fault.fault == "string_numbers" and rows:
        for r in rows[:3]:
            r["current_price"] = str(r["current_price"])
            r["market_cap"] = str(r["market_cap"])
        rows[-1]["total_volume"] = "n/a"
    elif fault.fault == "bad_values" and rows:
        rows[0]["current_price"] = None
        rows[-1]["total_volume"] = -abs(rows[-1]["total_volume"] or 1.0)
    elif fault.fault == "missing_ids" and len(rows) >= 3:
        del rows[0]["id"]
        rows[1]["id"] = 12345
        rows[2] = ["not", "an", "object"]
    elif fault.fault == "null_prices":
        for r in rows:
            r["current_price"] = None
    return rows


def _reply(status: int, payload: object, headers: Optional[dict] = None) -> tuple[int, dict, bytes, float]:
    return status, headers or {}, _json(payload), 0.0


def _key_error(code: int) -> tuple[int, dict, bytes, float]:
    stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    return _reply(401, {"status": {"timestamp": stamp, "error_code": code, "error_message": KEY_ERROR_MESSAGES[code]}})


def _fault_reply(fault: Fault) -> tuple[int, dict, bytes, float]:
    opts = fault.opts
    if fault.fault == "429":
        wait = float(opts.get("retry_after", 1))
        retry_after = (
            formatdate(time.time() + wait, usegmt=True) if opts.get("retry_after_http_date") else str(int(wait))
        )
        return 429, {"Retry-After": retry_after}, RATE_LIMIT_BODY, 0.0
    if fault.fault == "500":
        return _reply(500, {"status": 500, "error": "Internal Server Error"})
    if fault.fault == "503":
        page = b"<html><head><title>503 Service Temporarily Unavailable</title></head><body>503</body></html>"
        return 503, {"Content-Type": "text/html"}, page, 0.0
    if fault.fault == "key_error":
        return _key_error(int(opts.get("code", 10002)))
    if fault.fault == "html":
        body = b"error code: 1015" if opts.get("variant") == "1015" else CLOUDFLARE_PAGE
        return 200, {"Content-Type": "text/html; charset=UTF-8"}, body, 0.0
    return 200, {}, RATE_LIMIT_BODY, 0.0  # error_object: an error body with HTTP 200


def _handler_for(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # Headers and body go out as separate writes: with Nagle's algorithm on, each response
        # would wait ~40 ms for the client's delayed ACK.
        disable_nagle_algorithm = True
        protocol_version = "HTTP/1.1"  # keep-alive, as requests.Session expects

        def log_message(self, format: str, *args) -> None:  # quiet: the request log is sim.requests
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/__sim/"):
                return self._control()
            query = urlsplit(self.path).query
            status, headers, body, delay = sim.respond("GET", self.path, dict(self.headers))
            sim.log_request(self.path, dict(self.headers), status, any(p in query for p in KEY_QUERY_PARAMS))
            if delay:
                sim.hold(delay)
            self._send(status, body, headers)

        def do_POST(self) -> None:
            self._control()

        def _control(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = urlsplit(self.path).path
            try:
                if self.command == "POST" and path == "/__sim/faults":
                    spec = json.loads(raw or b"{}")
                    sim.inject(spec.pop("fault"), **spec)
                    return self._send(200, _json({"ok": True}))
                if self.command == "POST" and path == "/__sim/reset":
                    sim.reset()
                    return self._send(200, _json({"ok": True}))
                if self.command == "GET" and path == "/__sim/requests":
                    with sim._lock:
                        return self._send(200, _json(sim.requests))
            except (ValueError, KeyError, TypeError) as exc:
                return self._send(400, _json({"error": str(exc)}))
            self._send(404, _json({"error": f"unknown control {self.command} {path}"}))

        def _send(self, status: int, body: bytes, headers: Optional[dict] = None) -> None:
            headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
            if status != 200:
                headers.setdefault("Cache-Control", "no-cache")
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (e.g. timed out on a slow fault)

    return Handler


def parse_now(text: str) -> datetime:
    """ISO-8601 (naive taken as UTC) or an hourly partition key like ``2026-11-25-13:00``."""
    try:
        return datetime.strptime(text, "%Y-%m-%d-%H:%M").replace(tzinfo=timezone.utc)
    except ValueError:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
