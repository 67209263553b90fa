"""Binance USDⓈ-M futures market data and the account reads bots make at start, served to bots
(ccxt ``binanceusdm`` and ``binance``, binance-futures-connector, python-binance).

Public endpoints (klines, depth, trades, tickers, premium index, funding, open interest, the spot
and coin-margined exchangeInfo ccxt ``binance`` loads) need no key, as on Binance, so anyone who
can reach the gateway can call them. They therefore:
- answer only symbols the venue lists (-1121 otherwise), so a stranger cannot make the gateway
  look up made-up symbols upstream;
- read through the backend's ``MarketReads``: identical requests coalesced, answers cached briefly;
- are rate-limited per source address in Binance's request weights (429, code -1003, with
  ``Retry-After``), before any work is done.

Signed reads: ``multiAssetsMargin``, ``userTrades``, ``income``, ``commissionRate``.
Routes are added to the ``/fapi`` app by ``add_routes``; ``mount_other_apis`` adds the spot
``/api/v3`` and coin-margined ``/dapi/v1`` exchangeInfo.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from datetime import timedelta

from aiohttp import web

from ..errors import NotFound
from ..market import DataKind, NotServed, SeriesQuery
from ..market_data import RateLimitExceeded
from ..model import AssetClass, utcnow
from ..wire import binance as wire
from ..wire import binance_market as market_wire
from . import binance_futures as dialect

CRYPTO = AssetClass.CRYPTO
Weight = int | Callable[[dict[str, str]], int]


def _reads(request: web.Request):
    return dialect._backend(request).market_data()


def too_many_requests(request: web.Request, exc: RateLimitExceeded) -> web.Response:
    response = dialect.error_response(
        429,
        wire.TOO_MANY_REQUESTS,
        f"Too many requests; current limit of IP({request.remote}) is exceeded. Retry after {exc.retry_after_s:.0f} s.",
    )
    response.headers["Retry-After"] = str(int(exc.retry_after_s))
    return response


def market(weight: Weight, allowed: frozenset[str]):
    """A public market-data endpoint: no key; its weight is charged to the source address first,
    and unknown parameters are refused."""

    def wrap(handler):
        @dialect.public
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            params = dialect.params_of(request)
            cost = weight(params) if callable(weight) else weight
            try:
                _reads(request).admit_public(request.remote, cost)
            except RateLimitExceeded as exc:
                return too_many_requests(request, exc)
            wire.refuse_unknown(params, allowed)
            return await served(handler(request))

        return wrapped

    return wrap


async def served(call):
    """Venue refusals in Binance's terms: a call the venue cannot serve (-5000, 400), a symbol it
    has no data for (-1121), instead of the order-path meaning of "not found"."""
    try:
        return await call
    except NotServed as exc:
        raise wire.BinanceError(400, wire.NOT_SUPPORTED, exc.message) from None
    except NotFound:
        raise wire.BinanceError(400, wire.BAD_SYMBOL, "Invalid symbol.") from None


async def listed(request: web.Request, raw: str | None, name: str = "symbol") -> str:
    """A symbol the venue lists, else -1121: never a guessed symbol that would cost an upstream call."""
    if not raw:
        raise wire.BinanceError(400, wire.MANDATORY_PARAMETER, dialect._MANDATORY.format(name))
    text = raw.strip().upper()
    if len(text) > wire.MAX_SYMBOL_LENGTH:
        raise wire.BinanceError(400, wire.BAD_SYMBOL, "Invalid symbol.")
    market_rules = (await dialect._state(request).book()).markets.get(text)
    if market_rules is None:
        raise wire.BinanceError(400, wire.BAD_SYMBOL, "Invalid symbol.")
    return market_rules.asset.symbol


async def _all_listed(request: web.Request) -> list[str]:
    return sorted(m.asset.symbol for m in (await dialect._state(request).book()).markets.values())


async def _symbols(request: web.Request) -> tuple[list[str], bool]:
    """The one symbol asked for, or every listed one (and whether one was asked for)."""
    raw = dialect.params_of(request).get("symbol")
    if raw:
        return [await listed(request, raw)], True
    return await _all_listed(request), False


def _now_second():
    """Now, to the whole second: a request that names no time shares its cache entry with the
    others in the same second."""
    return utcnow().replace(microsecond=0)


def _one_or_all(rows: list, single: bool):
    return rows[0] if single else rows


# ---------------------------------------------------------------------------------------
# Klines, depth, trades


_KLINE_PARAMS = frozenset({"symbol", "interval", "startTime", "endTime", "limit"})
_CONTINUOUS_PARAMS = frozenset({"pair", "contractType", "interval", "startTime", "endTime", "limit"})


def _kline_weight(params: dict[str, str]) -> int:
    limit = params.get("limit", "")
    return market_wire.kline_weight(int(limit) if limit.isdigit() and len(limit) < 7 else 500)


async def _klines(request: web.Request, symbol: str) -> web.Response:
    params = dialect.params_of(request)
    frame = market_wire.parse_interval(params.get("interval"))
    limit = market_wire.parse_limit(params.get("limit"), default=500, maximum=market_wire.MAX_KLINES)
    start, end = market_wire.kline_range(params, frame, limit, _now_second())
    latest = not params.get("startTime")  # without a start: the latest ``limit`` klines
    query = SeriesQuery(DataKind.BARS, CRYPTO, (symbol,), start, end, limit=limit, timeframe=frame, descending=latest)
    bars = (await _reads(request).series(query)).items.get(symbol, [])
    if latest:
        bars = sorted(bars, key=lambda b: b.t)
    return dialect.json_response([market_wire.kline_to_wire(b, frame) for b in bars])


@market(_kline_weight, _KLINE_PARAMS)
async def klines(request: web.Request) -> web.Response:
    """Also markPriceKlines and indexPriceKlines: the venue's one price path."""
    return await _klines(request, await listed(request, dialect.params_of(request).get("symbol")))


@market(_kline_weight, _CONTINUOUS_PARAMS)
async def continuous_klines(request: web.Request) -> web.Response:
    params = dialect.params_of(request)
    if params.get("contractType", "PERPETUAL") != "PERPETUAL":
        raise wire.BinanceError(400, wire.BAD_PARAMETER, "Only PERPETUAL contracts are served.")
    return await _klines(request, await listed(request, params.get("pair"), "pair"))


def _depth_weight(params: dict[str, str]) -> int:
    limit = params.get("limit", "")
    return market_wire.depth_weight(int(limit) if limit.isdigit() and len(limit) < 7 else 500)


@market(_depth_weight, frozenset({"symbol", "limit"}))
async def depth(request: web.Request) -> web.Response:
    params = dialect.params_of(request)
    symbol = await listed(request, params.get("symbol"))
    limit = market_wire.parse_limit(params.get("limit"), default=500, maximum=1000, allowed=market_wire.DEPTH_LIMITS)
    book = await _reads(request).order_book(symbol, limit)
    return dialect.json_response(market_wire.depth_to_wire(book, dialect._now(request)))


async def _recent_trades(request: web.Request, symbol: str, limit: int):
    params = dialect.params_of(request)
    start = market_wire.parse_time_ms(params.get("startTime"), "startTime")
    end = market_wire.parse_time_ms(params.get("endTime"), "endTime")
    now = _now_second()
    if start is not None:
        end = min(end or now, start + timedelta(hours=1))  # Binance: at most an hour apart
        query = SeriesQuery(DataKind.TRADES, CRYPTO, (symbol,), start, end, limit=limit)
        return (await _reads(request).series(query)).items.get(symbol, [])
    end = end or now
    query = SeriesQuery(DataKind.TRADES, CRYPTO, (symbol,), end - timedelta(days=1), end, limit=limit, descending=True)
    return list(reversed((await _reads(request).series(query)).items.get(symbol, [])))


@market(5, frozenset({"symbol", "limit"}))
async def trades(request: web.Request) -> web.Response:
    params = dialect.params_of(request)
    symbol = await listed(request, params.get("symbol"))
    limit = market_wire.parse_limit(params.get("limit"), default=500, maximum=market_wire.MAX_TRADES)
    return dialect.json_response([market_wire.trade_to_wire(t) for t in await _recent_trades(request, symbol, limit)])


@market(20, frozenset({"symbol", "fromId", "startTime", "endTime", "limit"}))
async def agg_trades(request: web.Request) -> web.Response:
    params = dialect.params_of(request)
    symbol = await listed(request, params.get("symbol"))
    if params.get("fromId"):
        raise wire.BinanceError(400, wire.BAD_PARAMETER, "fromId is not served: page by startTime and endTime.")
    limit = market_wire.parse_limit(params.get("limit"), default=500, maximum=market_wire.MAX_TRADES)
    rows = await _recent_trades(request, symbol, limit)
    return dialect.json_response([market_wire.agg_trade_to_wire(t) for t in rows])


# ---------------------------------------------------------------------------------------
# Tickers


def _ticker_weight(single: int, every: int) -> Callable[[dict[str, str]], int]:
    return lambda params: single if params.get("symbol") else every


@market(_ticker_weight(1, 40), frozenset({"symbol"}))
async def ticker_24hr(request: web.Request) -> web.Response:
    symbols, single = await _symbols(request)
    snapshots = await _reads(request).snapshots(CRYPTO, symbols)
    now = dialect._now(request)
    rows = [market_wire.ticker_24hr_to_wire(s, snapshots[s], now) for s in symbols if s in snapshots]
    if single and not rows:
        raise wire.BinanceError(400, wire.BAD_SYMBOL, "Invalid symbol.")
    return dialect.json_response(_one_or_all(rows, single))


@market(_ticker_weight(1, 2), frozenset({"symbol"}))
async def ticker_price(request: web.Request) -> web.Response:
    symbols, single = await _symbols(request)
    latest = await _reads(request).latest_trades(CRYPTO, symbols)
    rows = [market_wire.price_ticker_to_wire(s, latest[s]) for s in symbols if s in latest]
    if single and not rows:
        raise wire.BinanceError(400, wire.BAD_SYMBOL, "Invalid symbol.")
    return dialect.json_response(_one_or_all(rows, single))


@market(_ticker_weight(2, 5), frozenset({"symbol"}))
async def book_ticker(request: web.Request) -> web.Response:
    symbols, single = await _symbols(request)
    quotes = await _reads(request).latest_quotes(CRYPTO, symbols)
    rows = [market_wire.book_ticker_to_wire(s, quotes[s]) for s in symbols if s in quotes]
    if single and not rows:
        raise wire.BinanceError(400, wire.BAD_SYMBOL, "Invalid symbol.")
    return dialect.json_response(_one_or_all(rows, single))


# ---------------------------------------------------------------------------------------
# Funding and open interest


@market(_ticker_weight(1, 10), frozenset({"symbol"}))
async def premium_index(request: web.Request) -> web.Response:
    symbols, single = await _symbols(request)
    reads = _reads(request)
    funding = [await reads.funding_rate(symbols[0])] if single else await reads.funding_rates(symbols)
    return dialect.json_response(_one_or_all([market_wire.premium_index_to_wire(f) for f in funding], single))


@market(1, frozenset({"symbol", "startTime", "endTime", "limit"}))
async def funding_rate_history(request: web.Request) -> web.Response:
    params = dialect.params_of(request)
    symbol = await listed(request, params.get("symbol"))
    limit = market_wire.parse_limit(params.get("limit"), default=100, maximum=market_wire.MAX_FUNDING)
    start = market_wire.parse_time_ms(params.get("startTime"), "startTime")
    end = market_wire.parse_time_ms(params.get("endTime"), "endTime")
    rows = await _reads(request).funding_history(symbol, start, end, limit)
    return dialect.json_response([market_wire.funding_rate_to_wire(r) for r in rows])


@market(1, frozenset({"symbol"}))
async def open_interest(request: web.Request) -> web.Response:
    symbol = await listed(request, dialect.params_of(request).get("symbol"))
    amount = await _reads(request).open_interest(symbol)
    return dialect.json_response(market_wire.open_interest_to_wire(symbol, amount, dialect._now(request)))


# ---------------------------------------------------------------------------------------
# Other APIs ccxt ``binance`` loads markets from


@market(20, frozenset({"symbol", "symbols", "permissions", "showPermissionSets", "symbolStatus"}))
async def spot_exchange_info(request: web.Request) -> web.Response:
    return dialect.json_response(market_wire.spot_exchange_info(dialect._now(request)))


@market(1, frozenset())
async def coin_margined_exchange_info(request: web.Request) -> web.Response:
    return dialect.json_response(market_wire.spot_exchange_info(dialect._now(request)))  # no coin-margined contract


# ---------------------------------------------------------------------------------------
# Signed account reads


async def get_multi_assets_margin(request: web.Request) -> web.Response:
    return dialect.json_response({"multiAssetsMargin": False})


async def set_multi_assets_margin(request: web.Request) -> web.Response:
    params = dialect.params_of(request)
    if wire.parse_bool(wire.require(params, "multiAssetsMargin"), "multiAssetsMargin"):
        raise wire.BinanceError(400, wire.BAD_PARAMETER, "Multi-assets mode is not supported by the gateway.")
    return dialect.json_response({"code": 200, "msg": "success"})


def _account(request: web.Request):
    return dialect._backend(request).account()


async def user_trades(request: web.Request) -> web.Response:
    params = dialect.params_of(request)
    wire.refuse_unknown(params, frozenset({"symbol", "orderId", "startTime", "endTime", "fromId", "limit"}) | wire.AUTH_PARAMS)
    symbol = await dialect._symbol(request, required=True)
    limit = market_wire.parse_limit(params.get("limit"), default=500, maximum=market_wire.MAX_TRADES)
    start = market_wire.parse_time_ms(params.get("startTime"), "startTime")
    end = market_wire.parse_time_ms(params.get("endTime"), "endTime")
    if start and end and end - start > timedelta(days=7):
        raise wire.BinanceError(400, wire.BAD_PARAMETER, "The time between startTime and endTime can't be longer than 7 days.")
    fills = await served(_account(request).fills(symbol, start, end, limit))
    order_id = params.get("orderId")
    if order_id:
        fills = [f for f in fills if f.order_id == order_id]
    return dialect.json_response([market_wire.user_trade_to_wire(f) for f in fills])


async def income(request: web.Request) -> web.Response:
    params = dialect.params_of(request)
    wire.refuse_unknown(params, frozenset({"symbol", "incomeType", "startTime", "endTime", "limit", "page"}) | wire.AUTH_PARAMS)
    symbol = await dialect._symbol(request, required=False)
    limit = market_wire.parse_limit(params.get("limit"), default=100, maximum=1000)
    start = market_wire.parse_time_ms(params.get("startTime"), "startTime")
    end = market_wire.parse_time_ms(params.get("endTime"), "endTime")
    rows = await served(_account(request).income(symbol, params.get("incomeType") or None, start, end, limit))
    return dialect.json_response(
        [
            {
                "symbol": wire.wire_symbol(r.symbol),
                "incomeType": r.kind,
                "income": market_wire.fmt(r.amount),
                "asset": r.asset,
                "info": r.kind,
                "time": wire.ms(r.t),
                "tranId": _stable_id(r.trade_id, r.kind),
                "tradeId": r.trade_id,
            }
            for r in rows
        ]
    )


def _stable_id(*parts: str) -> int:
    return int.from_bytes(hashlib.blake2b("|".join(parts).encode(), digest_size=6).digest(), "big")


async def commission_rate(request: web.Request) -> web.Response:
    params = dialect.params_of(request)
    wire.refuse_unknown(params, frozenset({"symbol"}) | wire.AUTH_PARAMS)
    symbol = await dialect._symbol(request, required=True)
    maker, taker = await served(_account(request).commission_rate(symbol))
    return dialect.json_response(market_wire.commission_to_wire(symbol, maker, taker))


# ---------------------------------------------------------------------------------------
# Route tables


def add_routes(router: web.UrlDispatcher) -> None:
    """Routes relative to ``/fapi``."""
    for path in ("/v1/klines", "/v1/markPriceKlines", "/v1/indexPriceKlines"):
        router.add_get(path, klines)
    router.add_get("/v1/continuousKlines", continuous_klines)
    router.add_get("/v1/depth", depth)
    router.add_get("/v1/trades", trades)
    router.add_get("/v1/aggTrades", agg_trades)
    router.add_get("/v1/ticker/24hr", ticker_24hr)
    router.add_get("/v1/ticker/price", ticker_price)
    router.add_get("/v2/ticker/price", ticker_price)
    router.add_get("/v1/ticker/bookTicker", book_ticker)
    router.add_get("/v1/premiumIndex", premium_index)
    router.add_get("/v1/fundingRate", funding_rate_history)
    router.add_get("/v1/openInterest", open_interest)
    router.add_get("/v1/multiAssetsMargin", get_multi_assets_margin)
    router.add_post("/v1/multiAssetsMargin", set_multi_assets_margin)
    router.add_get("/v1/userTrades", user_trades)
    router.add_get("/v1/income", income)
    router.add_get("/v1/commissionRate", commission_rate)


def mount_other_apis(app: web.Application, state) -> None:
    """``GET /api/v3/exchangeInfo`` and ``GET /dapi/v1/exchangeInfo`` (no markets of those kinds)."""
    for prefix, handler in (("/api/v3", spot_exchange_info), ("/dapi/v1", coin_margined_exchange_info)):
        sub = web.Application(middlewares=dialect.binance_middlewares(state))
        sub[dialect.STATE] = state
        sub.router.add_get("/exchangeInfo", handler)
        app.add_subapp(prefix, sub)
