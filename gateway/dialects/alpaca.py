"""The Alpaca Trading API v2 served to bots (aiohttp), over any ``Backend``.

Mount it under ``/v2``::

    app.add_subapp("/v2", alpaca_app(backend, auth))      # or: mount_alpaca(app, backend, auth)

It serves every call alpaca-py's ``TradingClient`` makes for orders, positions, account, clock
and assets. Routes are relative to the mount point (``/orders`` is ``/v2/orders``).

Rules this module keeps, because clients depend on them:
- every error is JSON ``{"code": <Alpaca code>, "message": ...}``: alpaca-py reads ``.code`` from it;
- no response is ever 504: alpaca-py re-POSTs a 504, which could place an order twice;
- authentication happens before anything else, so an unauthenticated request never reaches the
  backend and its body is never read;
- an unexpected exception becomes a generic 500: its text could carry a secret.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from ..errors import (
    GatewayError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RiskRejected,
    TradingHalted,
    Unauthorized,
)
from ..model import Caller
from ..numbers import parse_decimal
from ..ports import Authenticator, Backend
from ..wire import alpaca as wire
from . import alpaca_stream

log = logging.getLogger(__name__)

DIALECT = "alpaca"
KEY_HEADER = "APCA-API-KEY-ID"
SECRET_HEADER = "APCA-API-SECRET-KEY"
CONFIDENCE_HEADER = "X-Signal-Confidence"
MAX_CREDENTIAL_LENGTH = 256
MAX_ORDER_ID_LENGTH = 128

BACKEND = web.AppKey("alpaca_backend", Backend)
MAX_BODY_BYTES = web.AppKey("alpaca_max_body_bytes", int)
CALLER = web.RequestKey("gateway_caller", Caller)  # the authenticated Caller of a request

# gateway error kind -> HTTP status (the Alpaca code is derived from the status)
STATUS_BY_KIND = {
    "invalid": 422,
    "too_large": 413,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "insufficient_funds": 403,
    "order_rejected": 422,
    "risk_rejected": 403,
    "halted": 403,
    "rate_limited": 429,
    "upstream_unavailable": 503,
    "upstream_uncertain": 502,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# ---------------------------------------------------------------------------------------
# Building the app


def alpaca_app(backend: Backend, auth: Authenticator, *, max_body_bytes: int = 65536) -> web.Application:
    """The Alpaca v2 API as an aiohttp sub-application; mount it at ``/v2``."""
    app = web.Application(middlewares=alpaca_middlewares(auth))
    app[BACKEND] = backend
    app[MAX_BODY_BYTES] = max_body_bytes
    router = app.router
    router.add_get("/account", get_account)
    router.add_get("/positions", list_positions)
    router.add_delete("/positions", close_all_positions)
    # {symbol:.+} because crypto symbols arrive unencoded: /v2/positions/BTC/USD
    router.add_get("/positions/{symbol:.+}", get_position)
    router.add_delete("/positions/{symbol:.+}", close_position)
    router.add_post("/orders", submit_order)
    router.add_get("/orders", list_orders)
    router.add_delete("/orders", cancel_all_orders)
    router.add_get("/orders:by_client_order_id", get_order_by_client_id)
    router.add_get("/orders/{order_id}", get_order)
    router.add_patch("/orders/{order_id}", replace_order)
    router.add_delete("/orders/{order_id}", cancel_order)
    router.add_get("/clock", get_clock)
    # Startup/reporting calls and the stock data API live in their own modules (they import this
    # one's plumbing, so they are imported here, when an app is built).
    from . import alpaca_account, alpaca_data

    router.add_get("/assets/{symbol:.+}", alpaca_account.get_asset)
    alpaca_account.add_routes(router)
    alpaca_data.add_stock_routes(router)
    return app


def mount_alpaca(
    app: web.Application, backend: Backend, auth: Authenticator, *, max_body_bytes: int = 65536
) -> web.Application:
    """Mount the Alpaca dialect on ``app`` at ``/v2``; returns the sub-application."""
    sub = alpaca_app(backend, auth, max_body_bytes=max_body_bytes)
    app.add_subapp("/v2", sub)
    app.router.add_get("/stream", alpaca_stream.trade_updates_handler(backend, auth))  # trade_updates
    from .alpaca_data import mount_data

    mount_data(app, backend, auth)  # /v1beta3/crypto, /v1beta1/options
    return sub


def alpaca_middlewares(auth: Authenticator) -> list:
    """Error rendering (outer) and authentication (inner). Reusable for extra routes that must
    answer like Alpaca (the paper broker's price and market-data endpoints)."""
    return [_error_middleware, _auth_middleware(auth)]


def public(handler: Handler) -> Handler:
    """Mark a handler as needing no credentials (health checks)."""
    handler._alpaca_public = True  # type: ignore[attr-defined]
    return handler


# ---------------------------------------------------------------------------------------
# Errors


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, message: str, **extra: Any) -> web.Response:
    if status == 504:  # never: alpaca-py retries a 504 by re-sending the order
        status = 502
    return json_response({"code": wire.alpaca_error_code(status), "message": message, **extra}, status)


def gateway_error_response(exc: GatewayError) -> web.Response:
    status = STATUS_BY_KIND.get(exc.kind)
    if status is None:
        return error_response(500, "internal error")
    extra: dict[str, Any] = {}
    if isinstance(exc, RiskRejected):
        extra["reject_codes"] = list(exc.codes)
    elif isinstance(exc, TradingHalted):
        extra["reject_codes"] = [exc.code]
    response = error_response(status, exc.message, **extra)
    if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
        response.headers["Retry-After"] = str(math.ceil(exc.retry_after_s))
    return response


def _http_error_response(exc: web.HTTPException) -> web.Response:
    if exc.status == 405:
        response = error_response(405, "method not allowed")
        allowed = getattr(exc, "allowed_methods", None)
        if allowed:
            response.headers["Allow"] = ",".join(sorted(allowed))
        return response
    messages = {404: "not found", 413: "request body too large"}
    return error_response(exc.status, messages.get(exc.status, exc.reason or "error"))


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        log.info("alpaca %s %s -> %s", request.method, request.path, exc.kind)
        response = gateway_error_response(exc)
        if isinstance(exc, PayloadTooLarge):
            response.force_close()  # the unread rest of the body must not be parsed as a request
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error_response(exc)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        # Type only: the message of an unexpected exception may carry a secret.
        log.error("alpaca %s %s -> internal error (%s)", request.method, request.path, type(exc).__name__)
        return error_response(500, "internal error")


# ---------------------------------------------------------------------------------------
# Authentication


def _auth_middleware(auth: Authenticator) -> Callable:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Already done by an enclosing app's middleware, or a public route.
        if CALLER not in request and not getattr(request.match_info.handler, "_alpaca_public", False):
            request[CALLER] = authenticate_request(request, auth)
        return await handler(request)

    return authenticate


def authenticate_request(request: web.Request, auth: Authenticator) -> Caller:
    """The Caller for a request's Alpaca key headers (plus its optional signal confidence)."""
    key_id = request.headers.get(KEY_HEADER)
    secret = request.headers.get(SECRET_HEADER)
    if not key_id or not secret:
        if request.headers.get("Authorization", "").lower().startswith("bearer "):
            # OAuth tokens belong to Alpaca's OAuth flow; the gateway issues key pairs only.
            raise Unauthorized("OAuth tokens are not accepted: send APCA-API-KEY-ID and APCA-API-SECRET-KEY")
        raise Unauthorized("missing APCA-API-KEY-ID or APCA-API-SECRET-KEY header")
    if len(key_id) > MAX_CREDENTIAL_LENGTH or len(secret) > MAX_CREDENTIAL_LENGTH:
        raise Unauthorized("invalid credentials")
    caller = auth.authenticate(key_id, secret, DIALECT, request.remote)
    confidence = request.headers.get(CONFIDENCE_HEADER)
    if confidence is not None:
        value = parse_decimal(confidence, CONFIDENCE_HEADER, maximum=Decimal(1), allow_zero=True)
        caller = dataclasses.replace(caller, confidence=value)
    return caller


def caller_of(request: web.Request) -> Caller:
    return request[CALLER]


def _backend(request: web.Request) -> Backend:
    return request.config_dict[BACKEND]


# ---------------------------------------------------------------------------------------
# Request bodies


async def read_json_object(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object; 413 past ``max_bytes`` without reading the rest."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"request body exceeds {max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(16384):
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body exceeds {max_bytes} bytes")
        chunks.append(chunk)
    return parse_json_object(b"".join(chunks))


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Strict JSON: numbers as Decimal, no NaN/Infinity, no duplicate keys, an object on top."""
    try:
        data = json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant, object_pairs_hook=_no_duplicates)
    except InvalidRequest:
        raise
    except (ValueError, RecursionError):  # includes UnicodeDecodeError and JSONDecodeError
        raise InvalidRequest("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    return data


def _refuse_constant(name: str) -> Any:
    raise InvalidRequest(f"{name} is not a valid JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise InvalidRequest("request body has a duplicate key")
    return data


def _query(request: web.Request, allowed: frozenset[str]) -> dict[str, str]:
    """Query parameters, each at most once and only the known ones."""
    params: dict[str, str] = {}
    for name, value in request.query.items():
        if name in params:
            raise InvalidRequest(f"query parameter {name[:64]} is repeated")
        params[name] = value
    wire.refuse_unknown(params, allowed, "query parameter ")
    return params


def _order_id(request: web.Request) -> str:
    order_id = request.match_info["order_id"]
    if not order_id or len(order_id) > MAX_ORDER_ID_LENGTH or not order_id.isprintable():
        raise NotFound("order not found")
    return order_id


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def _position_symbol(request: web.Request) -> str:
    """The symbol in the path; alpaca-py may send an asset id instead, resolved via positions."""
    raw = request.match_info["symbol"]
    if not _is_uuid(raw):
        return wire.parse_symbol(raw, "symbol")[0]
    asset_id = str(uuid.UUID(raw))
    for position in await _backend(request).list_positions(caller_of(request)):
        if wire.asset_id_for(position.symbol) == asset_id:
            return position.symbol
    raise NotFound("position not found")


# ---------------------------------------------------------------------------------------
# Handlers


async def get_account(request: web.Request) -> web.Response:
    account = await _backend(request).get_account(caller_of(request))
    return json_response(wire.account_to_wire(account))


async def list_positions(request: web.Request) -> web.Response:
    positions = await _backend(request).list_positions(caller_of(request))
    return json_response([wire.position_to_wire(p) for p in positions])


async def get_position(request: web.Request) -> web.Response:
    symbol = await _position_symbol(request)
    position = await _backend(request).get_position(caller_of(request), symbol)
    return json_response(wire.position_to_wire(position))


async def close_position(request: web.Request) -> web.Response:
    qty, percentage = wire.parse_close_position_params(_query(request, frozenset({"qty", "percentage"})))
    symbol = await _position_symbol(request)
    order = await _backend(request).close_position(caller_of(request), symbol, qty, percentage)
    return json_response(wire.order_to_wire(order))


async def close_all_positions(request: web.Request) -> web.Response:
    params = _query(request, frozenset({"cancel_orders"}))
    cancel = wire.parse_bool(params["cancel_orders"], "cancel_orders") if "cancel_orders" in params else False
    results = await _backend(request).close_all_positions(caller_of(request), cancel)
    return json_response([wire.close_result_to_wire(r) for r in results], 207)


async def submit_order(request: web.Request) -> web.Response:
    body = await read_json_object(request, request.config_dict[MAX_BODY_BYTES])
    intent = wire.parse_order_request(body)
    order = await _backend(request).submit_order(caller_of(request), intent)
    return json_response(wire.order_to_wire(order))


async def list_orders(request: web.Request) -> web.Response:
    query = wire.parse_order_query(_query(request, wire.ORDER_QUERY_FIELDS))
    orders = await _backend(request).list_orders(caller_of(request), query)
    return json_response([wire.order_to_wire(o) for o in orders])


async def cancel_all_orders(request: web.Request) -> web.Response:
    results = await _backend(request).cancel_all_orders(caller_of(request))
    return json_response([wire.cancel_result_to_wire(r) for r in results], 207)


async def get_order_by_client_id(request: web.Request) -> web.Response:
    params = _query(request, frozenset({"client_order_id"}))
    client_order_id = wire.parse_client_order_id(params.get("client_order_id"))
    if client_order_id is None:
        raise InvalidRequest("client_order_id is required")
    order = await _backend(request).get_order_by_client_id(caller_of(request), client_order_id)
    return json_response(wire.order_to_wire(order))


async def get_order(request: web.Request) -> web.Response:
    params = _query(request, frozenset({"nested"}))
    nested = wire.parse_bool(params["nested"], "nested") if "nested" in params else False
    order = await _backend(request).get_order(caller_of(request), _order_id(request), nested)
    return json_response(wire.order_to_wire(order))


async def replace_order(request: web.Request) -> web.Response:
    order_id = _order_id(request)
    body = await read_json_object(request, request.config_dict[MAX_BODY_BYTES])
    change = wire.parse_replace_request(body)
    order = await _backend(request).replace_order(caller_of(request), order_id, change)
    return json_response(wire.order_to_wire(order))


async def cancel_order(request: web.Request) -> web.Response:
    await _backend(request).cancel_order(caller_of(request), _order_id(request))
    return web.Response(status=204)


async def get_clock(request: web.Request) -> web.Response:
    clock = await _backend(request).get_clock(caller_of(request))
    return json_response(wire.clock_to_wire(clock))


async def get_asset(request: web.Request) -> web.Response:
    raw = request.match_info["symbol"]
    if _is_uuid(raw):  # alpaca-py allows an asset id here; assets are known by symbol only
        raise NotFound("asset not found: look assets up by symbol")
    symbol, _ = wire.parse_symbol(raw, "symbol")
    asset = await _backend(request).get_asset(caller_of(request), symbol)
    return json_response(wire.asset_to_wire(asset))


def query_symbols(params: Mapping[str, str]) -> list[str]:
    """The ``symbols`` parameter of the market-data endpoints, validated."""
    raw = params.get("symbols", "")
    symbols = [wire.parse_symbol(part, "symbols")[0] for part in raw.split(",") if part.strip()]
    if not symbols:
        raise InvalidRequest("symbols is required")
    return symbols
