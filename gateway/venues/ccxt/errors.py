"""ccxt's exceptions into gateway errors, from one table, with messages safe to show.

When placing an order is interrupted after it may have left (timeout, dropped connection, a 5xx),
the error is UpstreamUncertain (the venue then looks the order up by client id), never a rejection.
Messages carry the exchange's own ``msg`` with URLs, keys and long tokens removed, never ccxt's
text as it is (which holds the request URL).
"""

from __future__ import annotations

import contextvars
import json
import re
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
from ccxt.base import errors as cx

from ...errors import (
    GatewayError,
    InsufficientFunds,
    NotFound,
    OrderRejected,
    RateLimited,
    UpstreamUnavailable,
    UpstreamUncertain,
)

MAX_MESSAGE = 200
_URL = re.compile(r"https?://\S+")
_TOKENISH = re.compile(r"[A-Za-z0-9+/=_-]{40,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")

# The exchange answered and refused: which gateway error each ccxt class becomes (first match;
# subclasses before their bases).
_REFUSALS: tuple[tuple[type[cx.BaseError], Callable[[str], GatewayError]], ...] = (
    (cx.InsufficientFunds, InsufficientFunds),
    (cx.OrderNotFound, NotFound),
    (cx.BadSymbol, NotFound),
    (cx.InvalidOrder, OrderRejected),
)

# The HTTP status of the last answer in this task (ccxt raises before its caller sees it).
# Binance USDⓈ-M request weights of the calls that cost more than 1 (its documentation): what
# the account's shared request budget counts.
REQUEST_WEIGHTS = {"fetch_balance": 5, "fetch_positions": 5, "fetch_open_orders": 40, "fetch_my_trades": 5}

HTTP_STATUS: contextvars.ContextVar[int | None] = contextvars.ContextVar("ccxt_http_status", default=None)


def remember_status(original: Callable) -> Callable:
    def on_rest_response(code, reason, url, method, headers, body, request_headers, request_body):
        HTTP_STATUS.set(code)
        return original(code, reason, url, method, headers, body, request_headers, request_body)

    return on_rest_response


def maybe_applied(exc: cx.BaseError) -> bool:
    """Whether a failed mutating call may still have reached the exchange."""
    cause = exc.__cause__
    if isinstance(cause, (aiohttp.ClientConnectorError, socket.gaierror)):
        return False  # never connected: nothing was sent
    if isinstance(exc, cx.OnMaintenance):
        return False  # the exchange answered that it is down
    if cause is not None or isinstance(exc, cx.RequestTimeout):
        return True  # sent, and the answer was lost
    # An HTTP answer without an error code: a 5xx may have been applied, a 4xx was refused.
    return re.search(r" 5\d\d ", str(exc)) is not None


def translate(exc: cx.BaseError, exchange_id: str, message: str, mutating: bool) -> GatewayError:
    """The gateway error for a ccxt exception; ``message`` is ``clean_message``'s."""
    status = HTTP_STATUS.get()
    if mutating and status is not None and status >= 500:
        # The exchange answered with a server error: whatever code its body carries, the
        # order may have been placed before it failed. Uncertain, never a rejection.
        return UpstreamUncertain(f"{exchange_id} answered {status}; the request may or may not have been applied")
    if isinstance(exc, cx.AuthenticationError):
        return UpstreamUnavailable("upstream rejected the gateway's broker credentials")
    for kind, error in _REFUSALS:
        if isinstance(exc, kind):
            return error(message)
    if isinstance(exc, cx.DDoSProtection):  # includes RateLimitExceeded: answered 418/429
        return RateLimited(f"{exchange_id} is rate limiting the gateway")
    if isinstance(exc, cx.NetworkError):  # ExchangeNotAvailable, RequestTimeout, ...
        if mutating and maybe_applied(exc):
            return UpstreamUncertain(f"{exchange_id} did not confirm the request; it may or may not have been applied")
        return UpstreamUnavailable(f"{exchange_id} is unavailable: {message}")
    if mutating and isinstance(exc, cx.ExchangeError) and not isinstance(exc.__cause__, aiohttp.ClientError):
        return OrderRejected(message)  # the exchange answered: the request was refused
    if isinstance(exc.__cause__, aiohttp.ClientError) and mutating:
        return UpstreamUncertain(
            f"the connection to {exchange_id} failed; the request may or may not have been applied"
        )
    return UpstreamUnavailable(f"{exchange_id} answered with an error: {message}")


def clean_message(exc: BaseException, exchange_id: str, exchange: Any) -> str:
    """The exchange's own message (``msg`` of a JSON body), cleaned; never ccxt's raw text."""
    text = str(exc)
    start = text.find("{")
    detail = None
    if start >= 0:
        try:
            body = json.loads(text[start:])
            detail = body.get("msg") or body.get("message") if isinstance(body, dict) else None
        except (ValueError, RecursionError):
            detail = None
    if not isinstance(detail, str):
        detail = type(exc).__name__
    for secret in (getattr(exchange, "apiKey", None), getattr(exchange, "secret", None)):
        if secret:
            detail = detail.replace(secret, "[redacted]")
    detail = _TOKENISH.sub("[redacted]", _URL.sub("[url]", detail))
    detail = _CONTROL.sub(" ", detail).strip()
    if len(detail) > MAX_MESSAGE:
        detail = detail[: MAX_MESSAGE - 3] + "..."
    return f"{exchange_id}: {detail}"
