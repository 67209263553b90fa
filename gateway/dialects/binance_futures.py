"""A subset of Binance USDⓈ-M futures served to bots (aiohttp), over any ``Backend``.

Enough for an unmodified ccxt ``binanceusdm`` whose ``urls['api']`` all point here: markets,
time, balance, positions, leverage and margin type, plain orders and conditional (algo) orders,
and the two ``/sapi`` calls ``load_markets`` makes when keys are set. Mount it with
``mount_binance_futures(app, backend, auth)``: ``/fapi/...`` and ``/sapi/...`` on ``app``.

Rules this module keeps, because clients and safety depend on them:
- every error is JSON ``{"code": <negative int>, "msg": ...}`` with a code ccxt maps to its specific
  exception under any host (see ``gateway.wire.binance``); never a 504;
- a signed request is checked before anything else: ``X-MBX-APIKEY`` names the key, ``signature``
  is the hex HMAC-SHA256 of the query string followed by the body (without the signature), the
  ``timestamp`` is within ``recvWindow`` (default 5000 ms, at most 60000) of this server's clock.
  The signature is checked before the credential's standing (revoked, expired, address), so
  naming a revoked key proves nothing. An order is accepted once: after it parsed and its
  credential may trade, its signature is remembered (per credential, bounded) until it expires,
  and an order signed before this process started is refused (the memory of the previous one is
  gone), so a captured request cannot be replayed to place another.
  Unauthenticated requests never reach the backend; a bad signature counts toward the remote's
  block (``record_failure``);
- public endpoints (exchangeInfo, time, ping, tickers) need no key, as on Binance, because ccxt
  calls them without one; they read symbols and prices only, through a short cache;
- an unexpected exception becomes a generic 500: its text could carry a secret.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import heapq
import hmac
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from ..errors import (
    Forbidden,
    GatewayError,
    InvalidRequest,
    NotFound,
    OrderRejected,
    PayloadTooLarge,
    RateLimited,
    RiskRejected,
    TradingHalted,
    Unauthorized,
)
from ..model import AssetClass, Caller, Order, OrderIntent, OrderQuery, Side
from ..numbers import parse_decimal
from ..ports import Authenticator, Backend, TradingRules
from ..wire import binance as wire
from ..wire import binance_batch
from . import binance_user_stream

log = logging.getLogger(__name__)

DIALECT = "binance-futures"
API_KEY_HEADER = "X-MBX-APIKEY"
CONFIDENCE_HEADER = "X-Signal-Confidence"
MAX_API_KEY_LENGTH = 256
DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60000
FUTURE_TOLERANCE_MS = 1000  # Binance accepts a timestamp up to 1 s ahead of its clock
MAX_BODY_BYTES = 65536
MAX_PARAMETERS = 64
MARKETS_TTL_S = 30.0
PRICE_TTL_S = 1.0
MAX_REMEMBERED_SIGNATURES = 20_000  # per credential: 300 orders/s sustained over a 60 s window
_SIGNATURE = re.compile(r"^[0-9a-fA-F]{64}$")
_MANDATORY = "Mandatory parameter '{}' was not sent, was empty/null, or malformed."

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# ---------------------------------------------------------------------------------------
# Shared state


class _Signatures:
    """One credential's accepted order signatures, each kept until its timestamp leaves the
    receive window (after that the timestamp check refuses it anyway)."""

    def __init__(self) -> None:
        self.expiry: dict[str, int] = {}
        self.heap: list[tuple[int, str]] = []

    def expire(self, now_ms: int) -> None:
        while self.heap and self.heap[0][0] <= now_ms:
            _, old = heapq.heappop(self.heap)
            if self.expiry.get(old, now_ms + 1) <= now_ms:
                del self.expiry[old]


class ReplayGuard:
    """Accepted order signatures, per credential. Bounded per credential: when one credential's
    memory is full of live entries its new orders are refused (429) rather than one forgotten,
    and no other credential is affected."""

    def __init__(self, capacity: int = MAX_REMEMBERED_SIGNATURES):
        self.capacity = capacity
        self._by_key: dict[str, _Signatures] = {}

    def admit(self, key_id: str, signature: str, expires_ms: int, now_ms: int) -> bool:
        """True the first time a signature is seen (within its lifetime), False on a replay."""
        seen = self._by_key.setdefault(key_id, _Signatures())
        seen.expire(now_ms)
        if signature in seen.expiry:
            return False
        if len(seen.expiry) >= self.capacity:
            raise wire.BinanceError(429, wire.TOO_MANY_REQUESTS, "Too many signed orders from this key; slow down.")
        seen.expiry[signature] = expires_ms
        heapq.heappush(seen.heap, (expires_ms, signature))
        return True


@dataclasses.dataclass
class BinanceState:
    """What the dialect's apps share: the backend, the key check, the clock, the replay guard and
    the caches of public data."""

    backend: Backend
    auth: Authenticator
    clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)
    replay: ReplayGuard = dataclasses.field(default_factory=ReplayGuard)
    # Orders signed before this moment are refused: the replay memory does not survive a restart.
    started_ms: int | None = None
    _book: wire.SymbolBook | None = None
    _book_at: float = 0.0
    _book_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    _prices: dict[str, tuple[Decimal, float]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.started_ms is None:
            self.started_ms = self.clock_ms()

    async def book(self) -> wire.SymbolBook:
        """The venue's crypto markets, cached for MARKETS_TTL_S (an empty answer is not cached)."""
        async with self._book_lock:
            now = time.monotonic()
            if self._book is None or now - self._book_at > MARKETS_TTL_S:
                book = wire.SymbolBook(await self.backend.list_markets(_public_caller()))
                if book.markets:
                    self._book, self._book_at = book, now
                return book
            return self._book

    def forget_markets(self) -> None:
        """Drop the cached market list (the paper broker's new symbols show at once)."""
        self._book = None

    async def price(self, symbol: str) -> Decimal:
        now = time.monotonic()
        cached = self._prices.get(symbol)
        if cached is not None and now - cached[1] <= PRICE_TTL_S:
            return cached[0]
        price = await self.backend.latest_price(_public_caller(), symbol, AssetClass.CRYPTO)
        if len(self._prices) > 10_000:
            self._prices.clear()
        self._prices[symbol] = (price, now)
        return price


STATE = web.AppKey("binance_state", BinanceState)
CALLER = web.RequestKey("binance_caller", Caller)
PARAMS = web.RequestKey("binance_params", dict)
RAW_BODY = web.RequestKey("binance_raw_body", bytes)
SIGNATURE = web.RequestKey("binance_signature", str)


def _public_caller(remote: str | None = None) -> Caller:
    return Caller(key_id="anonymous", dialect=DIALECT, remote=remote)


# ---------------------------------------------------------------------------------------
# Building the apps


def binance_middlewares(state: BinanceState) -> list:
    """Error rendering (outer) and signed-request authentication (inner), reusable for extra
    routes that must answer like Binance (the paper broker's price endpoint)."""
    return [_error_middleware, _auth_middleware(state)]


def fapi_app(state: BinanceState) -> web.Application:
    """The ``/fapi`` API as a sub-application; routes are relative to the mount point."""
    app = web.Application(middlewares=binance_middlewares(state))
    app[STATE] = state
    r = app.router
    r.add_get("/v1/ping", ping)
    r.add_get("/v1/time", server_time)
    r.add_get("/v1/exchangeInfo", exchange_info)
    for version in ("v2", "v3"):
        r.add_get(f"/{version}/account", account)
        r.add_get(f"/{version}/balance", balance)
        r.add_get(f"/{version}/positionRisk", position_risk)
    r.add_get("/v1/leverageBracket", leverage_bracket)
    r.add_post("/v1/leverage", set_leverage)
    r.add_post("/v1/marginType", set_margin_type)
    r.add_get("/v1/symbolConfig", symbol_config)
    r.add_get("/v1/positionSide/dual", get_position_mode)
    r.add_post("/v1/positionSide/dual", set_position_mode)
    r.add_post("/v1/order", new_order)
    r.add_get("/v1/order", query_order)
    r.add_delete("/v1/order", cancel_order)
    r.add_put("/v1/order", amend_order)
    r.add_post("/v1/batchOrders", new_batch_orders)
    r.add_get("/v1/openOrder", query_open_order)
    r.add_get("/v1/openOrders", open_orders)
    r.add_get("/v1/allOrders", all_orders)
    r.add_delete("/v1/allOpenOrders", cancel_all_open_orders)
    r.add_post("/v1/algoOrder", new_algo_order)
    r.add_get("/v1/algoOrder", query_algo_order)
    r.add_delete("/v1/algoOrder", cancel_algo_order)
    r.add_get("/v1/openAlgoOrders", open_algo_orders)
    r.add_get("/v1/allAlgoOrders", all_algo_orders)
    r.add_delete("/v1/algoOpenOrders", cancel_all_algo_orders)
    r.add_post("/v1/countdownCancelAll", countdown_cancel_all)
    binance_user_stream.add_listen_key_routes(r, state)  # POST/PUT/DELETE /fapi/v1/listenKey
    from . import (
        binance_market,  # market data and start-up reads (it imports this module's plumbing)
    )

    binance_market.add_routes(r)
    return app


def sapi_app(state: BinanceState) -> web.Application:
    """The two ``/sapi`` calls ccxt's load_markets makes when keys are set."""
    app = web.Application(middlewares=binance_middlewares(state))
    app[STATE] = state
    app.router.add_get("/v1/capital/config/getall", capital_config)
    app.router.add_get("/v1/margin/allPairs", margin_all_pairs)
    app.router.add_get("/v1/margin/isolated/allPairs", margin_all_pairs)  # ccxt ``binance`` asks too
    return app


def mount_binance_futures(
    app: web.Application, backend: Backend, auth: Authenticator, *, clock_ms: Callable[[], int] | None = None
) -> BinanceState:
    """Mount the dialect on ``app`` at ``/fapi`` and ``/sapi``; returns the shared state."""
    state = BinanceState(backend, auth) if clock_ms is None else BinanceState(backend, auth, clock_ms)
    app.add_subapp("/fapi", fapi_app(state))
    app.add_subapp("/sapi", sapi_app(state))
    binance_user_stream.add_socket_routes(app, state)  # the user data stream's websockets
    from .binance_market import mount_other_apis

    mount_other_apis(app, state)  # /api/v3 and /dapi/v1 exchangeInfo for ccxt ``binance``
    return state


def public(handler: Handler) -> Handler:
    """A Binance public endpoint: no key, no signature."""
    handler._binance_public = True  # type: ignore[attr-defined]
    return handler


def order_route(handler: Handler) -> Handler:
    """An endpoint that places orders: malformed input there is InvalidOrder to ccxt."""
    handler._binance_order = True  # type: ignore[attr-defined]
    return handler


def _flag(request: web.Request, name: str) -> bool:
    return bool(getattr(request.match_info.handler, name, False))


# ---------------------------------------------------------------------------------------
# Errors


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, code: int, msg: str, **extra: Any) -> web.Response:
    if status == 504:  # never: a client may take a 504 as "not done" and send the order again
        status = 503
    return json_response({"code": code, "msg": msg, **extra}, status)


def gateway_error_response(exc: GatewayError, *, order_route: bool = False) -> web.Response:
    status, body = error_body(exc, order_route=order_route)
    response = error_response(status, **body)
    if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
        response.headers["Retry-After"] = str(math.ceil(exc.retry_after_s))
    return response


def error_body(exc: GatewayError, *, order_route: bool = False) -> tuple[int, dict[str, Any]]:
    """(HTTP status, ``{"code", "msg", ...}``) for an error: a response, or one order's entry in
    a batch answer."""
    if isinstance(exc, wire.BinanceError):
        return exc.status, {"code": exc.code, "msg": exc.message}
    status_code = wire.CODES_BY_KIND.get(exc.kind)
    if status_code is None:
        return 500, {"code": wire.UNKNOWN, "msg": "An unknown error occurred while processing the request."}
    status, code = status_code
    if exc.kind == "invalid" and order_route:
        code = wire.BAD_ORDER
    if isinstance(exc, RiskRejected):
        msg = f"Rejected by the gateway's risk policy: {exc.message}"
        return status, {"code": code, "msg": msg, "rejectCodes": list(exc.codes)}
    if isinstance(exc, TradingHalted):
        return status, {"code": code, "msg": exc.message, "rejectCodes": [exc.code]}
    return status, {"code": code, "msg": exc.message}


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        log.info("binance %s %s -> %s", request.method, request.path, exc.kind)
        response = gateway_error_response(exc, order_route=_flag(request, "_binance_order"))
        if isinstance(exc, PayloadTooLarge):
            response.force_close()  # the unread rest of the body must not be parsed as a request
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        messages = {
            404: "The gateway does not serve this endpoint.",
            405: "Method not allowed.",
            413: "Request body too large.",
        }
        return error_response(exc.status, wire.NOT_SUPPORTED, messages.get(exc.status, "Request refused."))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        # Type only: the message of an unexpected exception may carry a secret.
        log.error("binance %s %s -> internal error (%s)", request.method, request.path, type(exc).__name__)
        return error_response(500, wire.UNKNOWN, "An unknown error occurred while processing the request.")


# ---------------------------------------------------------------------------------------
# Authentication


def _auth_middleware(state: BinanceState) -> Callable:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Already done by an enclosing app's middleware, or a public route; an unknown path or
        # method is answered (404/405) without a key, as Binance does.
        if PARAMS not in request and getattr(request.match_info, "http_exception", None) is None:
            if _flag(request, "_binance_public"):
                request[PARAMS] = _parse_params(_raw_query(request), "")
            else:
                await authenticate_request(request, state)
        return await handler(request)

    return authenticate


async def authenticate_request(request: web.Request, state: BinanceState) -> Caller:
    """Check a signed request; sets its Caller, parameters and raw body on the request."""
    key_id = request.headers.get(API_KEY_HEADER)
    if not key_id or len(key_id) > MAX_API_KEY_LENGTH or not key_id.isprintable():
        raise wire.BinanceError(401, wire.BAD_API_KEY, "API-key format invalid.")
    raw_query = _raw_query(request)
    raw_body = await _read_body(request)
    form = _is_form(request)
    payload, signature = _signed_payload(raw_query, raw_body, form)
    verdicts: list[bool] = []

    def signed_with(secret: bytes) -> bool:
        expected = hmac.new(secret, payload, hashlib.sha256).hexdigest()
        ok = signature is not None and bool(_SIGNATURE.match(signature)) and hmac.compare_digest(expected, signature.lower())
        verdicts.append(ok)
        return ok

    try:
        caller = state.auth.verify_signed(key_id, DIALECT, request.remote, signed_with)
    except Unauthorized:
        if verdicts == [False]:
            raise wire.BinanceError(401, wire.BAD_SIGNATURE, "Signature for this request is not valid.") from None
        raise wire.BinanceError(401, wire.REJECTED_API_KEY, "Invalid API-key, IP, or permissions for action.") from None
    assert signature is not None  # signed_with accepted it
    params = _parse_params(raw_query, _ascii(raw_body) if form else "")
    _check_freshness(params, state)
    request[SIGNATURE] = signature.lower()
    confidence = request.headers.get(CONFIDENCE_HEADER)
    if confidence is not None:
        value = parse_decimal(confidence, CONFIDENCE_HEADER, maximum=Decimal(1), allow_zero=True)
        caller = dataclasses.replace(caller, confidence=value)
    request[CALLER] = caller
    request[PARAMS] = params
    request[RAW_BODY] = raw_body
    return caller


def _raw_query(request: web.Request) -> str:
    """The query string exactly as sent (the signature covers its bytes; a parsed and re-encoded
    URL may spell characters differently)."""
    _, _, query = request.raw_path.partition("?")
    return query.partition("#")[0]


def _check_freshness(params: dict[str, str], state: BinanceState) -> None:
    timestamp = params.get("timestamp", "")
    if not timestamp.isdigit() or len(timestamp) > 16:
        raise wire.BinanceError(400, wire.MANDATORY_PARAMETER, _MANDATORY.format("timestamp"))
    window = _recv_window(params.get("recvWindow"))
    now = state.clock_ms()
    sent = int(timestamp)
    if sent > now + FUTURE_TOLERANCE_MS or now - sent > window:
        raise wire.BinanceError(401, wire.BAD_SIGNATURE, "Timestamp for this request is outside of the recvWindow.")


def admit_order_once(request: web.Request) -> None:
    """An order's signature is remembered only once the order parsed and its credential may
    trade: otherwise any key, even a read-only one, could fill the memory with garbage. Only
    order placement is guarded: a replayed cancel or setting changes nothing, and an identical
    one can be legitimate (two calls in the same millisecond)."""
    state, caller, params = _state(request), caller_of(request), params_of(request)
    scopes_of = getattr(state.auth, "scopes_of", None)
    if scopes_of is not None and "trade" not in scopes_of(caller.key_id):
        raise Forbidden("this credential lacks the 'trade' scope")
    sent, window = int(params["timestamp"]), _recv_window(params.get("recvWindow"))
    assert state.started_ms is not None
    if sent < state.started_ms:
        _record_failure(state.auth, caller.key_id, request.remote, "order signed before the gateway started")
        raise wire.BinanceError(
            401, wire.BAD_SIGNATURE, "This order was signed before the gateway started; sign a new one."
        )
    if not state.replay.admit(caller.key_id, request[SIGNATURE], sent + window + FUTURE_TOLERANCE_MS, state.clock_ms()):
        _record_failure(state.auth, caller.key_id, request.remote, "replayed request signature")
        raise wire.BinanceError(
            401, wire.BAD_SIGNATURE, "This signed request was already accepted once; sign a new one."
        )


def _recv_window(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_RECV_WINDOW_MS
    # Binance takes up to three decimal places (microseconds); whole milliseconds are enough here.
    text = value.strip()
    try:
        window = Decimal(text) if len(text) <= 16 else None
    except ArithmeticError:
        window = None
    if window is None or not window.is_finite() or window <= 0 or window > MAX_RECV_WINDOW_MS:
        raise wire.BinanceError(
            400, wire.BAD_PARAMETER, f"recvWindow must be greater than 0 and at most {MAX_RECV_WINDOW_MS}."
        )
    return int(window)


def _record_failure(auth: Authenticator, key_id: str, remote: str | None, reason: str) -> None:
    record = getattr(auth, "record_failure", None)
    if record is not None:
        record(key_id, remote, reason)


def _is_form(request: web.Request) -> bool:
    return request.content_type in ("application/x-www-form-urlencoded", "application/octet-stream", "")


async def _read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body exceeds {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(16384):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _ascii(raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidRequest("a form body must be URL-encoded ASCII") from None


def _signed_payload(raw_query: str, raw_body: bytes, form: bool) -> tuple[bytes, str | None]:
    """What was signed (Binance: the query string followed by the body, without the signature
    parameter) and the signature sent. A non-form body (the paper broker's JSON prices) is signed
    as it is, with the signature in the query string. More than one signature is none."""
    found: list[str] = []

    def strip(text: str) -> str:
        kept = []
        for part in text.split("&") if text else []:
            if part.startswith("signature="):
                found.append(part[len("signature=") :])
            else:
                kept.append(part)
        return "&".join(kept)

    query = strip(raw_query).encode("utf-8", "surrogateescape")
    body = strip(_ascii(raw_body)).encode("ascii") if form else raw_body
    return query + body, found[0] if len(found) == 1 else None


def _parse_params(raw_query: str, body_text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for text in (raw_query, body_text):
        if not text:
            continue
        try:
            pairs = parse_qsl(
                text,
                keep_blank_values=True,
                strict_parsing=True,
                max_num_fields=MAX_PARAMETERS,
                encoding="utf-8",
                errors="strict",
            )
        except (ValueError, UnicodeDecodeError):
            raise wire.BinanceError(400, wire.TOO_MANY_PARAMETERS, "Malformed or too many parameters.") from None
        for name, value in pairs:
            if name in params:
                raise wire.BinanceError(400, wire.TOO_MANY_PARAMETERS, "Duplicate values for a parameter detected.")
            params[name] = value
    return params


def caller_of(request: web.Request) -> Caller:
    return request[CALLER]


def params_of(request: web.Request) -> dict[str, str]:
    return request[PARAMS]


def _state(request: web.Request) -> BinanceState:
    return request.config_dict[STATE]


def _backend(request: web.Request) -> Backend:
    return request.config_dict[STATE].backend


def _now(request: web.Request) -> int:
    return _state(request).clock_ms()


# ---------------------------------------------------------------------------------------
# Public market data


@public
async def ping(request: web.Request) -> web.Response:
    return json_response({})


@public
async def server_time(request: web.Request) -> web.Response:
    return json_response({"serverTime": _now(request)})


@public
async def exchange_info(request: web.Request) -> web.Response:
    book = await _state(request).book()
    return json_response(wire.exchange_info_to_wire(book.markets.values(), _now(request)))


async def _ticker_symbol(request: web.Request) -> str:
    raw = params_of(request).get("symbol")
    if not raw:
        # Every symbol would cost one venue call each; a bot asks for the ones it trades.
        raise wire.BinanceError(400, wire.MANDATORY_PARAMETER, _MANDATORY.format("symbol"))
    return (await _state(request).book()).resolve(raw)


async def _public_price(request: web.Request, symbol: str) -> Decimal:
    try:
        return await _state(request).price(symbol)
    except NotFound:
        raise wire.BinanceError(400, wire.BAD_SYMBOL, "Invalid symbol.") from None


@public
async def ticker_24hr(request: web.Request) -> web.Response:
    symbol = await _ticker_symbol(request)
    return json_response(wire.ticker_to_wire(symbol, await _public_price(request, symbol), _now(request)))


@public
async def ticker_price(request: web.Request) -> web.Response:
    symbol = await _ticker_symbol(request)
    return json_response(wire.price_to_wire(symbol, await _public_price(request, symbol), _now(request)))


# ---------------------------------------------------------------------------------------
# Account, positions, leverage


async def _symbol(request: web.Request, *, required: bool) -> str | None:
    raw = params_of(request).get("symbol")
    if not raw:
        if required:
            raise wire.BinanceError(400, wire.MANDATORY_PARAMETER, _MANDATORY.format("symbol"))
        return None
    return (await _state(request).book()).resolve(raw)


async def _positions(request: web.Request, symbol: str | None) -> list[dict[str, Any]]:
    backend, caller, now = _backend(request), caller_of(request), _now(request)
    positions = [
        p
        for p in await backend.list_positions(caller)
        if p.asset_class is AssetClass.CRYPTO and (symbol is None or p.symbol == symbol)
    ]

    async def one(position) -> dict[str, Any]:
        leverage, mode = await asyncio.gather(
            backend.get_leverage(caller, position.symbol), backend.get_margin_mode(caller, position.symbol)
        )
        return wire.position_to_wire(position, leverage, mode, now)

    return list(await asyncio.gather(*(one(p) for p in positions)))


async def account(request: web.Request) -> web.Response:
    version = 2 if request.path.startswith("/fapi/v2/") else 3
    acct, positions = await asyncio.gather(_backend(request).get_account(caller_of(request)), _positions(request, None))
    short = [wire.account_position_to_wire(p) for p in positions]
    return json_response(wire.account_to_wire(acct, short, _now(request), version))


async def balance(request: web.Request) -> web.Response:
    acct = await _backend(request).get_account(caller_of(request))
    return json_response(wire.balance_to_wire(acct, _now(request)))


async def position_risk(request: web.Request) -> web.Response:
    return json_response(await _positions(request, await _symbol(request, required=False)))


async def _max_leverage(request: web.Request, market: TradingRules) -> int:
    venue_max = market.max_leverage or wire.DEFAULT_MAX_LEVERAGE
    limit = await _backend(request).leverage_limit(caller_of(request), market.asset.symbol)
    if limit is None:
        return venue_max
    return max(1, min(venue_max, int(limit)))


async def leverage_bracket(request: web.Request) -> web.Response:
    book = await _state(request).book()
    symbol = await _symbol(request, required=False)
    markets = [m for m in book.markets.values() if symbol is None or m.asset.symbol == symbol]
    limits = await asyncio.gather(*(_max_leverage(request, m) for m in markets))
    return json_response(
        [wire.leverage_bracket_to_wire(m.asset.symbol, lim) for m, lim in zip(markets, limits, strict=True)]
    )


async def set_leverage(request: web.Request) -> web.Response:
    params = params_of(request)
    wire.refuse_unknown(params, frozenset({"symbol", "leverage"}) | wire.AUTH_PARAMS)
    symbol = await _symbol(request, required=True)
    leverage = wire.parse_leverage(params)
    try:
        effective = await _backend(request).set_leverage(caller_of(request), symbol, leverage)
    except RiskRejected as exc:
        # Binance's own answer to a leverage it will not set; the message names the limit.
        raise wire.BinanceError(400, wire.BAD_LEVERAGE, f"Leverage {leverage} is not valid: {exc.message}") from None
    return json_response(
        {"leverage": effective, "maxNotionalValue": wire.MAX_NOTIONAL_VALUE, "symbol": wire.wire_symbol(symbol)}
    )


async def set_margin_type(request: web.Request) -> web.Response:
    params = params_of(request)
    wire.refuse_unknown(params, frozenset({"symbol", "marginType"}) | wire.AUTH_PARAMS)
    symbol = await _symbol(request, required=True)
    await _backend(request).set_margin_mode(caller_of(request), symbol, wire.parse_margin_type(params))
    return json_response({"code": 200, "msg": "success"})


async def symbol_config(request: web.Request) -> web.Response:
    """One symbol, or every market (ccxt's fetch_leverage asks for all and picks one)."""
    backend, caller = _backend(request), caller_of(request)
    symbol = await _symbol(request, required=False)
    if symbol is not None:
        symbols = [symbol]
    else:
        symbols = sorted(m.asset.symbol for m in (await _state(request).book()).markets.values())

    async def one(sym: str) -> dict[str, Any]:
        leverage, mode = await asyncio.gather(backend.get_leverage(caller, sym), backend.get_margin_mode(caller, sym))
        return wire.symbol_config_to_wire(sym, leverage, mode)

    return json_response(list(await asyncio.gather(*(one(s) for s in symbols))))


async def get_position_mode(request: web.Request) -> web.Response:
    return json_response({"dualSidePosition": False})


async def set_position_mode(request: web.Request) -> web.Response:
    if wire.parse_bool(wire.require(params_of(request), "dualSidePosition"), "dualSidePosition"):
        raise InvalidRequest("hedge mode (dualSidePosition=true) is not supported by the gateway")
    return json_response({"code": 200, "msg": "success"})


# ---------------------------------------------------------------------------------------
# Orders


async def _orders(
    request: web.Request, status: str, symbol: str | None, query: OrderQuery | None = None
) -> list[Order]:
    query = query or OrderQuery(status=status, limit=wire.INTERNAL_LIST_LIMIT, symbols=(symbol,) if symbol else ())
    orders = await _backend(request).list_orders(caller_of(request), query)
    return [o for o in orders if wire.is_binance_order(o)]


async def _find(request: web.Request, id_name: str, client_name: str, *, symbol_required: bool = True) -> Order:
    params = params_of(request)
    symbol = await _symbol(request, required=symbol_required)
    order_id = wire.parse_order_id(params.get(id_name), id_name)
    client_id = params.get(client_name) or None
    if order_id is None and client_id is None:
        raise wire.BinanceError(400, wire.MANDATORY_PARAMETER, f"Either {id_name} or {client_name} must be sent.")
    backend, caller = _backend(request), caller_of(request)
    try:
        if order_id is not None:
            order = await backend.get_order(caller, order_id)
        else:
            order = await backend.get_order_by_client_id(caller, wire.parse_client_id(client_id, client_name) or "")
    except NotFound:
        order = None
    if order is None or not wire.is_binance_order(order) or (symbol is not None and order.symbol != symbol):
        raise wire.BinanceError(400, wire.NO_SUCH_ORDER, "Order does not exist.")
    if order_id is not None and client_id is not None and order.client_order_id != client_id:
        raise wire.BinanceError(400, wire.NO_SUCH_ORDER, "Order does not exist.")
    return order


async def _cancel(request: web.Request, order: Order) -> Order:
    backend, caller = _backend(request), caller_of(request)
    try:
        await backend.cancel_order(caller, order.id)
    except (NotFound, OrderRejected):
        # Binance answers a cancel of a closed or unknown order the same way.
        raise wire.BinanceError(400, wire.CANCEL_REJECTED, "Unknown order sent.") from None
    try:
        return await backend.get_order(caller, order.id)
    except NotFound:
        return order


@order_route
async def new_order(request: web.Request) -> web.Response:
    intent = wire.parse_order(params_of(request), await _state(request).book())
    admit_order_once(request)
    order = await _backend(request).submit_order(caller_of(request), intent)
    return json_response(wire.order_to_wire(order))


@order_route
async def new_batch_orders(request: web.Request) -> web.Response:
    """Each order parsed and judged on its own; the batch decided in one step by the backend.
    The answer is Binance's: one entry per order, the order or its ``{"code", "msg"}``."""
    book = await _state(request).book()
    parsed: list[Any] = []
    for params in binance_batch.parse_batch(params_of(request)):
        try:
            if "_malformed" in params:
                raise InvalidRequest(f"malformed order in batchOrders: {params['_malformed']}")
            parsed.append(wire.parse_order(params, book))
        except GatewayError as exc:
            parsed.append(exc)
    intents = [p for p in parsed if not isinstance(p, GatewayError)]
    if intents:
        admit_order_once(request)
    results = iter(await _backend(request).submit_orders(caller_of(request), intents) if intents else [])
    out: list[dict[str, Any]] = []
    for item in parsed:
        outcome = item if isinstance(item, GatewayError) else next(results)
        if isinstance(outcome, GatewayError):
            out.append(error_body(outcome, order_route=True)[1])
        else:
            out.append(wire.order_to_wire(outcome))
    return json_response(out)


@order_route
async def amend_order(request: web.Request) -> web.Response:
    """PUT /fapi/v1/order: a LIMIT order's new quantity and price, judged as a replace."""
    order = await _find(request, "orderId", "origClientOrderId")
    change = binance_batch.parse_amend(params_of(request), order)
    admit_order_once(request)
    new = await _backend(request).replace_order(caller_of(request), order.id, change)
    return json_response(wire.order_to_wire(new))


async def query_order(request: web.Request) -> web.Response:
    return json_response(wire.order_to_wire(await _find(request, "orderId", "origClientOrderId")))


async def query_open_order(request: web.Request) -> web.Response:
    order = await _find(request, "orderId", "origClientOrderId")
    if not order.status.is_open:
        raise wire.BinanceError(400, wire.NO_SUCH_ORDER, "Order does not exist.")
    return json_response(wire.order_to_wire(order))


async def cancel_order(request: web.Request) -> web.Response:
    order = await _find(request, "orderId", "origClientOrderId")
    return json_response(wire.order_to_wire(await _cancel(request, order)))


async def open_orders(request: web.Request) -> web.Response:
    orders = await _orders(request, "open", await _symbol(request, required=False))
    return json_response([wire.order_to_wire(o) for o in orders if not wire.is_algo(o)])


async def _history(request: web.Request, algo: bool) -> list[Order]:
    symbol = await _symbol(request, required=False)
    query = wire.parse_history_query(params_of(request), symbol)
    orders = [o for o in await _orders(request, "all", symbol, query) if wire.is_algo(o) == algo]
    return list(reversed(orders))  # Binance lists oldest first


async def all_orders(request: web.Request) -> web.Response:
    return json_response([wire.order_to_wire(o) for o in await _history(request, algo=False)])


async def _cancel_all(request: web.Request, algo: bool) -> None:
    symbol = await _symbol(request, required=True)
    for order in await _orders(request, "open", symbol):
        if wire.is_algo(order) == algo:
            try:
                await _backend(request).cancel_order(caller_of(request), order.id)
            except (NotFound, OrderRejected):
                continue  # filled or canceled meanwhile: nothing left to cancel


async def cancel_all_open_orders(request: web.Request) -> web.Response:
    await _cancel_all(request, algo=False)
    return json_response({"code": 200, "msg": "The operation of cancel all open order is done."})


async def _sized_to_position(request: web.Request, intent: OrderIntent) -> OrderIntent:
    """A closePosition order's quantity is the position it closes, so it is judged (as an exit)
    for exactly that. Without a position on the other side there is nothing to close: refused."""
    try:
        position = await _backend(request).get_position(caller_of(request), intent.symbol)
    except NotFound:
        position = None
    size = abs(position.qty) if position is not None else Decimal(0)
    if size == 0 or (position.qty > 0) != (intent.side is Side.SELL):
        # Binance answers -2022; under a host that is not Binance's, ccxt maps only -2010 to InvalidOrder.
        raise wire.BinanceError(
            400, wire.ORDER_REJECTED, "ReduceOnly Order is rejected: closePosition needs a position on the other side."
        )
    return dataclasses.replace(intent, qty=size)


@order_route
async def new_algo_order(request: web.Request) -> web.Response:
    intent = wire.parse_algo_order(params_of(request), await _state(request).book())
    if intent.close_position:
        intent = await _sized_to_position(request, intent)
    admit_order_once(request)
    order = await _backend(request).submit_order(caller_of(request), intent)
    return json_response(wire.algo_order_to_wire(order))


async def query_algo_order(request: web.Request) -> web.Response:
    order = await _find(request, "algoId", "clientAlgoId", symbol_required=False)
    return json_response(wire.algo_order_to_wire(order))


async def cancel_algo_order(request: web.Request) -> web.Response:
    order = await _find(request, "algoId", "clientAlgoId", symbol_required=False)
    return json_response(wire.algo_cancel_to_wire(await _cancel(request, order)))


async def open_algo_orders(request: web.Request) -> web.Response:
    orders = await _orders(request, "open", await _symbol(request, required=False))
    return json_response([wire.algo_order_to_wire(o) for o in orders if wire.is_algo(o)])


async def all_algo_orders(request: web.Request) -> web.Response:
    return json_response([wire.algo_order_to_wire(o) for o in await _history(request, algo=True)])


async def cancel_all_algo_orders(request: web.Request) -> web.Response:
    await _cancel_all(request, algo=True)
    return json_response({"code": 200, "msg": "success"})


MAX_COUNTDOWN_MS = 10**12  # far beyond any sensible countdown; keeps the number bounded


def _countdown_ms(params: dict[str, str]) -> int:
    """``countdownTime``: whole milliseconds, 0 stops the countdown."""
    text = wire.require(params, "countdownTime").strip()
    if not text.isdigit() or len(text) > 13 or int(text) > MAX_COUNTDOWN_MS:
        raise wire.BinanceError(400, wire.BAD_PARAMETER, "Data sent for parameter 'countdownTime' is not valid.")
    return int(text)


async def countdown_cancel_all(request: web.Request) -> web.Response:
    """Binance's exchange-side dead man's switch: cancel the symbol's open orders (conditional
    ones too) unless called again within ``countdownTime`` ms; 0 stops it."""
    params = params_of(request)
    wire.refuse_unknown(params, frozenset({"symbol", "countdownTime"}) | wire.AUTH_PARAMS)
    symbol = await _symbol(request, required=True)
    if wire.wire_symbol(symbol) not in (await _state(request).book()).markets:
        raise wire.BinanceError(400, wire.BAD_SYMBOL, "Invalid symbol.")
    countdown_ms = _countdown_ms(params)
    await _backend(request).countdown_cancel_all(caller_of(request), symbol, countdown_ms)
    return json_response({"symbol": wire.wire_symbol(symbol), "countdownTime": str(countdown_ms)})


# ---------------------------------------------------------------------------------------
# /sapi


async def capital_config(request: web.Request) -> web.Response:
    book = await _state(request).book()
    return json_response(wire.coins_to_wire(book.markets.values()))


async def margin_all_pairs(request: web.Request) -> web.Response:
    return json_response([])  # no spot margin through the gateway
