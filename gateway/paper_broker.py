"""The standalone paper broker: the paper venue served over HTTP in a broker's own API.

``gatewayctl paper-broker`` runs it. It speaks the Alpaca dialect or (``--dialect binance-futures``)
the Binance USDⓈ-M futures dialect, the same code the gateway serves bots with, over
``DirectBackend(PaperVenue)``, so the gateway's HTTP venues are tested against a real server over
a real socket.

Binance futures (``build_binance_paper_broker_app``): a futures paper account (shorts, per-symbol
leverage starting at 1x, margin modes; see ``paper_engine``) seeded with ``FUTURES_MARKS``, ``/fapi``
and ``/sapi`` as ccxt's ``binanceusdm`` calls them, every signed request checked against the one
configured key (HMAC-SHA256, ``X-MBX-APIKEY``), the user data stream (``/fapi/v1/listenKey`` and
its websockets, ``gateway.dialects.binance_user_stream``), plus ``POST /_paper/prices`` (signed the
Binance way: timestamp and signature in the query string, over the query and the JSON body)
taking ``{"BTCUSDT": price}`` or ``{"BTC/USDT": price}``, and ``GET /health``.

Alpaca: besides Alpaca's trading API it serves:

- the ``trade_updates`` stream at ``/stream`` (``gateway.dialects.alpaca_stream``);
- ``POST /_paper/prices`` ``{"SYMBOL": price}``: moves marks (tests trigger stops and losses);
- Alpaca's market-data API (``/v2/stocks``, ``/v1beta3/crypto/us``, ``/v1beta1/options``: bars,
  trades, quotes, snapshots, latest*, crypto order books) from the venue's seeded price path, so
  ``AlpacaVenue`` and bots' data clients work against it;
- ``GET /health`` (no credentials).

Run from the command line, the Alpaca broker refuses what Alpaca refuses (a sell of shares an open
sell holds, crypto orders other than simple market/limit/stop-limit gtc/ioc, non-simple or
non-day notional and fractional orders; ``PaperEngine(alpaca_rules=True)``) unless ``--lenient``.

Both dialects: ``--rate-limit N/min`` answers 429 beyond N requests (Binance: request weight) a
minute, in the dialect's error shape; ``GET /_paper/stats`` (authenticated like any other call)
gives the requests served, their weight, the refusals and a count per route
(``gateway.paper_traffic``).

Every route but ``/health`` needs the one configured key pair, compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from decimal import Decimal

from aiohttp import web

from .dialects import alpaca as dialect
from .dialects import alpaca_data, alpaca_data_stream, alpaca_stream, binance_user_stream
from .dialects import binance_futures as binance
from .errors import InvalidRequest, Unauthorized
from .model import Caller
from .numbers import MAX_PRICE, fmt, parse_decimal
from .paper_traffic import (
    DATA_METER,
    METER,
    RequestMeter,
    alpaca_headers,
    binance_headers,
    binance_weight,
    is_alpaca_market_data,
    meter_middleware,
)
from .ports import Authenticator, DirectBackend
from .venues.paper import PaperVenue
from .wire import alpaca as wire
from .wire import binance as binance_wire

log = logging.getLogger(__name__)

VENUE = web.AppKey("paper_venue", PaperVenue)
MAX_PRICE_UPDATES = 1000
SUPPORTED_DIALECTS = ("alpaca", "binance-futures")


class SingleKeyAuthenticator(Authenticator):
    """Accepts exactly one key pair. Both parts are always compared, in constant time, so the
    timing says nothing about which part was wrong."""

    def __init__(self, key_id: str, secret: str):
        if not key_id or not secret:
            raise ValueError("the paper broker needs a non-empty key id and secret")
        self._key_id = key_id.encode()
        self._secret = secret.encode()

    def __repr__(self) -> str:
        return "SingleKeyAuthenticator(<key hidden>)"

    def _check(self, key_id: str, secret: str | None) -> None:
        key_ok = hmac.compare_digest(key_id.encode("utf-8", "surrogateescape"), self._key_id)
        secret_ok = secret is None or hmac.compare_digest(secret.encode("utf-8", "surrogateescape"), self._secret)
        if not (key_ok and secret_ok):
            raise Unauthorized("invalid credentials")

    def authenticate(self, key_id: str, secret: str, dialect: str, remote: str | None) -> Caller:
        self._check(key_id, secret)
        return Caller(key_id=key_id, dialect=dialect, remote=remote)

    def hmac_secret(self, key_id: str, dialect: str, remote: str | None) -> tuple[bytes, Caller]:
        self._check(key_id, None)
        return self._secret, Caller(key_id=key_id, dialect=dialect, remote=remote)


def build_paper_broker_app(
    venue: PaperVenue, *, key_id: str, secret: str, rate_limit: int | None = None
) -> web.Application:
    """The paper broker as an aiohttp app (Alpaca dialect at /v2, the trade_updates stream at
    /stream, plus prices, market data, request stats and health). ``rate_limit``: requests a
    minute beyond which it answers 429, as Alpaca does per account (None: no limit)."""
    auth = SingleKeyAuthenticator(key_id, secret)
    meter, data_meter = RequestMeter(limit=rate_limit), RequestMeter(limit=rate_limit)
    counting = meter_middleware(
        meter, alpaca_headers, dialect.gateway_error_response, data_meter=data_meter, is_data=is_alpaca_market_data
    )
    # The root app has the same middlewares, so its own routes answer errors the Alpaca way;
    # the sub-app sees the request already authenticated and does not check it twice.
    app = web.Application(middlewares=[*dialect.alpaca_middlewares(auth), counting])
    app[VENUE] = venue
    app[METER] = meter
    app[DATA_METER] = data_meter
    backend = DirectBackend(venue)
    app.add_subapp("/v2", dialect.alpaca_app(backend, auth))  # trading and the stock data API
    alpaca_data.mount_data(app, backend, auth)  # crypto and options data
    app.router.add_get("/stream", alpaca_stream.trade_updates_handler(backend, auth))
    alpaca_data_stream.mount_data_streams(app, backend, auth)  # market data websockets
    app.router.add_get("/health", health)
    app.router.add_post("/_paper/prices", set_prices)
    app.router.add_get("/_paper/stats", alpaca_stats)
    app.on_startup.append(_start_venue)
    app.on_cleanup.append(_close_venue)
    return app


def build_binance_paper_broker_app(
    venue: PaperVenue, *, key_id: str, secret: str, rate_limit: int | None = None
) -> web.Application:
    """The paper broker speaking Binance USDⓈ-M futures (``/fapi``, ``/sapi``, the user data
    stream), plus prices, request stats and health. ``venue`` should be a futures one:
    ``PaperVenue(futures=True, seed_marks=True)``. ``rate_limit``: request weight a minute
    beyond which it answers 429 (-1003), as Binance does (None: no limit)."""
    state = binance.BinanceState(DirectBackend(venue), SingleKeyAuthenticator(key_id, secret))
    meter = RequestMeter(limit=rate_limit, weigh=binance_weight)
    # The root app authenticates its own routes the Binance way; the sub-apps see a request
    # already checked and do not check it (or remember its signature) twice.
    app = web.Application(middlewares=[*binance.binance_middlewares(state), meter_middleware(meter, binance_headers, binance.gateway_error_response)])
    app[VENUE] = venue
    app[METER] = meter
    app[binance.STATE] = state
    app.add_subapp("/fapi", binance.fapi_app(state))
    app.add_subapp("/sapi", binance.sapi_app(state))
    binance_user_stream.add_socket_routes(app, state)
    app.router.add_get("/health", binance_health)
    app.router.add_post("/_paper/prices", binance_set_prices)
    app.router.add_get("/_paper/stats", binance_stats)
    app.on_startup.append(_start_venue)
    app.on_cleanup.append(_close_venue)
    return app


@binance.public
async def binance_health(request: web.Request) -> web.Response:
    return binance.json_response({"status": "ok", "service": "paper-broker", "dialect": "binance-futures"})


async def binance_set_prices(request: web.Request) -> web.Response:
    body = dialect.parse_json_object(request[binance.RAW_BODY])
    if not body:
        raise InvalidRequest('send at least one price: {"BTCUSDT": price}')
    if len(body) > MAX_PRICE_UPDATES:
        raise InvalidRequest(f"at most {MAX_PRICE_UPDATES} prices per request")
    book = await request.config_dict[binance.STATE].book()
    prices = {}
    for raw_symbol, value in body.items():
        # BTC/USDT as it is; BTCUSDT through the venue's markets (or its quote asset).
        symbol = wire.parse_symbol(raw_symbol)[0] if "/" in raw_symbol else book.resolve(raw_symbol)
        prices[symbol] = parse_decimal(value, f"price for {symbol}", maximum=MAX_PRICE)
    await request.config_dict[VENUE].set_prices(prices)
    if any(binance_wire.wire_symbol(symbol) not in book.markets for symbol in prices):
        request.config_dict[binance.STATE].forget_markets()
    return binance.json_response({binance_wire.wire_symbol(symbol): fmt(price) for symbol, price in prices.items()})


async def binance_stats(request: web.Request) -> web.Response:
    """Requests served and their weight, so a benchmark can print what a gateway spent."""
    return binance.json_response(request.config_dict[METER].stats())


async def alpaca_stats(request: web.Request) -> web.Response:
    """Trading API requests served (and refused with 429), so a benchmark can print what a
    gateway spent; the market-data API's under ``market_data`` (Alpaca limits it separately)."""
    stats = request.config_dict[METER].stats()
    stats["market_data"] = request.config_dict[DATA_METER].stats()
    return dialect.json_response(stats)


async def _start_venue(app: web.Application) -> None:
    await app[VENUE].start()


async def _close_venue(app: web.Application) -> None:
    await app[VENUE].close()


@dialect.public
async def health(request: web.Request) -> web.Response:
    return dialect.json_response({"status": "ok", "service": "paper-broker", "dialect": "alpaca"})


async def set_prices(request: web.Request) -> web.Response:
    body = await dialect.read_json_object(request, 65536)
    if not body:
        raise InvalidRequest("send at least one price: {\"SYMBOL\": price}")
    if len(body) > MAX_PRICE_UPDATES:
        raise InvalidRequest(f"at most {MAX_PRICE_UPDATES} prices per request")
    prices = {}
    for raw_symbol, value in body.items():
        symbol, _ = wire.parse_symbol(raw_symbol, "symbol")
        prices[symbol] = parse_decimal(value, f"price for {symbol}", maximum=MAX_PRICE)
    await request.config_dict[VENUE].set_prices(prices)
    return dialect.json_response({symbol: fmt(price) for symbol, price in prices.items()})


async def run_paper_broker(
    host: str,
    port: int,
    *,
    equity: Decimal,
    key_id: str,
    secret: str,
    dialect: str = "alpaca",
    rate_limit: int | None = None,
    lenient: bool = False,
    walk_s: float | None = None,
) -> None:
    """Serve a paper broker on host:port until cancelled. The Alpaca dialect refuses what Alpaca
    refuses (held quantities, crypto and fractional order shapes; see ``PaperEngine``) unless
    ``lenient``."""
    if dialect not in SUPPORTED_DIALECTS:
        raise ValueError(f"paper broker dialect {dialect!r} is not supported yet; supported: {', '.join(SUPPORTED_DIALECTS)}")
    if dialect == "binance-futures":
        venue = PaperVenue(starting_equity=equity, seed_marks=True, futures=True, walk_every_s=walk_s)
        app = build_binance_paper_broker_app(venue, key_id=key_id, secret=secret, rate_limit=rate_limit)
    else:
        venue = PaperVenue(starting_equity=equity, alpaca_rules=not lenient, walk_every_s=walk_s)
        app = build_paper_broker_app(venue, key_id=key_id, secret=secret, rate_limit=rate_limit)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("paper broker (%s) listening on %s:%s", dialect, host, port)
        await asyncio.Event().wait()  # until cancelled
    finally:
        await runner.cleanup()
