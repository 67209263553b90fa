"""The paper broker's request accounting: a broker-style rate limit and the counts behind it.

Real brokers limit an account's requests (Alpaca: 200 requests a minute; Binance USDⓈ-M: 2,400
request weight a minute) and answer 429 beyond. The paper broker can do the same
(``--rate-limit N/min``; off by default), so a gateway that spends its bots' budget is caught
in a test, and it counts every request so a benchmark can print how many the gateway made
(``GET /_paper/stats``).

Counted: every API request that reaches the broker's authentication, public market data
included. Alpaca's market-data API (``/v2/stocks/...``, ``/v1beta3/...``, ``/v1beta1/...``) has
its own limit at Alpaca, so the Alpaca paper broker meters it separately (same N). Not counted: ``/health``, the paper broker's own ``/_paper/...`` controls, websocket
connections (streams are not REST requests), and requests refused with 429 (the window holds
what was served).
"""

from __future__ import annotations

import collections
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from .errors import RateLimited
from .model import utcnow

WINDOW_S = 60.0
_UNCOUNTED = re.compile(r"^/(health$|_paper/|stream$|ws(/|$)|private/ws)")
_ALPACA_DATA = re.compile(r"^/(v2/stocks/|v1beta\d+/)")
_RATE = re.compile(r"^\s*(\d{1,7})\s*(/\s*min)?\s*$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Weigher = Callable[[web.Request], int]


def parse_rate_limit(text: str) -> int:
    """``200/min`` (or ``200``) -> 200. ValueError for anything else or zero."""
    match = _RATE.match(text or "")
    if not match or int(match.group(1)) < 1:
        raise ValueError("rate limit must look like 200/min (a whole number of requests a minute, at least 1)")
    return int(match.group(1))


def one_per_request(request: web.Request) -> int:
    """Alpaca counts requests."""
    return 1


# Binance USDⓈ-M request weights that differ from 1 (its documentation, per endpoint); the
# ones that depend on whether a symbol is given weigh more without one.
_BINANCE_WEIGHTS = {
    "/fapi/v2/account": 5,
    "/fapi/v3/account": 5,
    "/fapi/v2/balance": 5,
    "/fapi/v3/balance": 5,
    "/fapi/v2/positionRisk": 5,
    "/fapi/v3/positionRisk": 5,
    "/fapi/v1/allOrders": 5,
    "/fapi/v1/allAlgoOrders": 5,
    "/fapi/v1/countdownCancelAll": 10,
}
_BINANCE_WITHOUT_SYMBOL = {"/fapi/v1/openOrders": 40, "/fapi/v1/openAlgoOrders": 40, "/fapi/v1/ticker/24hr": 40}


def binance_weight(request: web.Request) -> int:
    path = request.path
    if path in _BINANCE_WITHOUT_SYMBOL:
        return 1 if "symbol=" in request.query_string else _BINANCE_WITHOUT_SYMBOL[path]
    return _BINANCE_WEIGHTS.get(path, 1)


@dataclass
class RequestMeter:
    """Counts served requests and, with ``limit``, refuses those beyond ``limit`` weight in any
    trailing WINDOW_S."""

    limit: int | None = None
    weigh: Weigher = one_per_request
    clock: Callable[[], float] = time.monotonic
    requests: int = 0
    weight: int = 0
    rate_limited: int = 0
    by_route: collections.Counter = field(default_factory=collections.Counter)
    since: str = field(default_factory=lambda: utcnow().isoformat())
    _window: collections.deque = field(default_factory=collections.deque)
    _window_weight: int = 0

    def used(self) -> int:
        """Weight served in the trailing window."""
        horizon = self.clock() - WINDOW_S
        while self._window and self._window[0][0] <= horizon:
            self._window_weight -= self._window.popleft()[1]
        return self._window_weight

    def admit(self, request: web.Request) -> None:
        weight = self.weigh(request)
        if self.limit is not None and self.used() + weight > self.limit:
            self.rate_limited += 1
            refusal = RateLimited(f"too many requests: the limit is {self.limit} a minute")
            refusal.retry_after_s = self._wait_for(weight)  # type: ignore[attr-defined]
            raise refusal
        self._window.append((self.clock(), weight))
        self._window_weight += weight
        self.requests += 1
        self.weight += weight
        route = getattr(request.match_info.route.resource, "canonical", None) or "unmatched"
        self.by_route[f"{request.method} {route}"] += 1

    def _wait_for(self, weight: int) -> int:
        """Whole seconds until ``weight`` more fits in the window (Retry-After)."""
        excess = self.used() + weight - (self.limit or 0)
        freed = 0
        for at, served in self._window:
            freed += served
            if freed >= excess:
                return max(1, math.ceil(at + WINDOW_S - self.clock()))
        return math.ceil(WINDOW_S)

    def stats(self) -> dict:
        return {
            "requests": self.requests,
            "weight": self.weight,
            "rate_limited": self.rate_limited,
            "limit_per_min": self.limit,
            "used_last_min": self.used(),
            "by_route": dict(sorted(self.by_route.items())),
            "since": self.since,
        }


METER = web.AppKey("paper_request_meter", RequestMeter)
DATA_METER = web.AppKey("paper_data_request_meter", RequestMeter)


def is_alpaca_market_data(request: web.Request) -> bool:
    return _ALPACA_DATA.match(request.path) is not None


def meter_middleware(
    meter: RequestMeter,
    headers: Callable[[RequestMeter], dict[str, str]],
    refuse: Callable[[RateLimited], web.Response],
    *,
    data_meter: RequestMeter | None = None,
    is_data: Callable[[web.Request], bool] = lambda request: False,
) -> Callable:
    """Counts (and limits) a request, then sets the broker's usage headers on its answer. Place
    it after authentication (a limit is per account). A refusal is ``refuse(error)`` (the
    dialect's own 429) with ``Retry-After``. Requests ``is_data`` picks go to ``data_meter`` (an
    API with its own limit)."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _UNCOUNTED.match(request.path) or getattr(request.match_info, "http_exception", None) is not None:
            return await handler(request)
        chosen = data_meter if data_meter is not None and is_data(request) else meter
        try:
            chosen.admit(request)
        except RateLimited as exc:
            response = refuse(exc)
            response.headers["Retry-After"] = str(exc.retry_after_s)  # type: ignore[attr-defined]
            response.headers.update(headers(chosen))
            return response
        response = await handler(request)
        if not response.prepared:
            response.headers.update(headers(chosen))
        return response

    return count


def alpaca_headers(meter: RequestMeter) -> dict[str, str]:
    if meter.limit is None:
        return {}
    return {"X-RateLimit-Limit": str(meter.limit), "X-RateLimit-Remaining": str(max(0, meter.limit - meter.used()))}


def binance_headers(meter: RequestMeter) -> dict[str, str]:
    return {"X-MBX-USED-WEIGHT-1M": str(meter.used())}
