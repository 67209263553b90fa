"""Alpaca's market-data API served to bots under the gateway's base URL, the one alpaca-py's
``url_override`` points the data clients at:

- ``/v2/stocks/...``  (``StockHistoricalDataClient``), routes on the ``/v2`` trading app;
- ``/v1beta3/crypto/us/...`` (``CryptoHistoricalDataClient``) and ``/v1beta1/options/...``
  (``OptionHistoricalDataClient``), sub-apps of their own with the Alpaca middlewares.

Read-only: every route reads the venue's ``MarketData`` port through the backend's
``MarketReads`` (cached, coalesced). Symbols the venue does not know are left out of an answer,
as Alpaca does; a venue that has no such data refuses with a clear 404 (``NotServed``).
"""

from __future__ import annotations

from aiohttp import web

from ..errors import InvalidRequest, NotFound
from ..market import DataKind, NotServed
from ..model import AssetClass
from ..ports import Authenticator, Backend
from ..wire import alpaca as wire
from ..wire import alpaca_data as data
from . import alpaca as dialect
from . import plumbing

STOCKS, CRYPTO, OPTIONS = AssetClass.US_EQUITY, AssetClass.CRYPTO, AssetClass.US_OPTION


def _respond(body) -> web.Response:
    return plumbing.exact_json_response(body)


def _reads(request: web.Request):
    return request.config_dict[dialect.BACKEND].market_data()


def _params(request: web.Request, allowed: frozenset[str]) -> dict[str, str]:
    return dialect._query(request, allowed)


def _single(request: web.Request, asset_class: AssetClass) -> tuple[str, ...]:
    return data.parse_symbols(request.match_info["symbol"], asset_class, "symbol")


# ---------------------------------------------------------------------------------------
# Handlers, one factory per shape


def series(kind: DataKind, asset_class: AssetClass, *, single: bool = False):
    """Historical bars/trades/quotes: ``?symbols=`` or a ``{symbol}`` in the path."""

    async def handler(request: web.Request) -> web.Response:
        params = _params(request, data.SERIES_PARAMS)
        symbols = _single(request, asset_class) if single else None
        query = data.parse_series(params, kind, asset_class, symbols)
        page = await _reads(request).series(query)
        return _respond(data.page_to_wire(page, kind, asset_class, single=symbols[0] if single else None))

    return handler


_LATEST = {
    "trades": ("latest_trades", "trades", "trade", data.trade_to_wire),
    "quotes": ("latest_quotes", "quotes", "quote", data.quote_to_wire),
    "bars": ("latest_bars", "bars", "bar", lambda item, _: data.bar_to_wire(item)),
}


def latest(what: str, asset_class: AssetClass, *, single: bool = False):
    """Latest trade/quote/bar per symbol: ``{"trades": {"AAPL": {...}}}``, or for a symbol in
    the path ``{"symbol": "AAPL", "trade": {...}}`` (404 when the venue has none)."""
    method, plural, singular, render = _LATEST[what]

    async def handler(request: web.Request) -> web.Response:
        params = _params(request, data.LATEST_PARAMS)
        symbols = _single(request, asset_class) if single else data.parse_symbols(params.get("symbols"), asset_class)
        found = await getattr(_reads(request), method)(asset_class, symbols)
        if single:
            if symbols[0] not in found:
                raise NotFound(f"no {singular} for {symbols[0]}")
            return _respond({"symbol": symbols[0], singular: render(found[symbols[0]], asset_class)})
        return _respond({plural: {s: render(item, asset_class) for s, item in found.items()}})

    return handler


def snapshots(asset_class: AssetClass, *, single: bool = False):
    """Stocks: ``{"AAPL": {...}}`` (no sub key); crypto ``{"snapshots": {...}}``; options the same
    with ``next_page_token``; ``/v2/stocks/{symbol}/snapshot``: the snapshot with ``symbol``."""

    async def handler(request: web.Request) -> web.Response:
        params = _params(request, data.LATEST_PARAMS | {"limit", "page_token"})
        symbols = _single(request, asset_class) if single else data.parse_symbols(params.get("symbols"), asset_class)
        found = await _reads(request).snapshots(asset_class, symbols)
        rendered = {s: data.snapshot_to_wire(snap, asset_class) for s, snap in found.items()}
        if single:
            if symbols[0] not in rendered:
                raise NotFound(f"no snapshot for {symbols[0]}")
            return _respond({"symbol": symbols[0], **rendered[symbols[0]]})
        if asset_class is STOCKS:
            return _respond(rendered)
        body = {"snapshots": rendered}
        if asset_class is OPTIONS:
            body["next_page_token"] = None
        return _respond(body)

    return handler


async def option_chain(request: web.Request) -> web.Response:
    """``/v1beta1/options/snapshots/{underlying}``: snapshots of every contract the venue lists
    for the underlying."""
    params = _params(request, frozenset({
        "feed", "limit", "page_token", "type", "strike_price_gte", "strike_price_lte", "expiration_date",
        "expiration_date_gte", "expiration_date_lte", "root_symbol", "updated_since",
    }))
    underlying, asset_class = wire.parse_symbol(request.match_info["underlying"], "underlying_symbol")
    if asset_class is not STOCKS:
        raise InvalidRequest("underlying_symbol must be a stock symbol")
    backend = request.config_dict[dialect.BACKEND]
    filters = {k: v for k, v in params.items() if k in ("type", "expiration_date", "expiration_date_gte", "expiration_date_lte")}
    contracts = await backend.account().option_contracts({"underlying_symbols": underlying, **filters})
    symbols = [c["symbol"] for c in contracts.get("option_contracts", [])][: data.MAX_PAGE]
    found = await _reads(request).snapshots(OPTIONS, symbols) if symbols else {}
    return _respond({"snapshots": {s: data.snapshot_to_wire(v, OPTIONS) for s, v in found.items()}, "next_page_token": None})


async def crypto_orderbooks(request: web.Request) -> web.Response:
    params = _params(request, frozenset({"symbols"}))
    reads = _reads(request)
    books = {}
    for symbol in data.parse_symbols(params.get("symbols"), CRYPTO):
        try:
            books[symbol] = data.book_to_wire(await reads.order_book(symbol, 20))
        except NotServed:  # the venue has no books at all: say so
            raise
        except NotFound:  # this symbol is unknown: left out, as Alpaca does
            continue
    return _respond({"orderbooks": books})


# ---------------------------------------------------------------------------------------
# Route tables


def add_stock_routes(router: web.UrlDispatcher) -> None:
    """``/v2/stocks/...`` on the trading app (routes relative to ``/v2``)."""
    for kind in DataKind:
        router.add_get(f"/stocks/{kind.value}", series(kind, STOCKS))
        router.add_get(f"/stocks/{kind.value}/latest", latest(kind.value, STOCKS))
        router.add_get(f"/stocks/{{symbol}}/{kind.value}", series(kind, STOCKS, single=True))
        router.add_get(f"/stocks/{{symbol}}/{kind.value}/latest", latest(kind.value, STOCKS, single=True))
    router.add_get("/stocks/snapshots", snapshots(STOCKS))
    router.add_get("/stocks/{symbol}/snapshot", snapshots(STOCKS, single=True))


def crypto_app(backend: Backend, auth: Authenticator) -> web.Application:
    """``/v1beta3/crypto`` (feed ``us``)."""
    app = _app(backend, auth)
    for kind in DataKind:
        app.router.add_get(f"/us/{kind.value}", series(kind, CRYPTO))
        app.router.add_get(f"/us/latest/{kind.value}", latest(kind.value, CRYPTO))
    app.router.add_get("/us/latest/orderbooks", crypto_orderbooks)
    app.router.add_get("/us/snapshots", snapshots(CRYPTO))
    return app


def options_app(backend: Backend, auth: Authenticator) -> web.Application:
    """``/v1beta1/options``."""
    app = _app(backend, auth)
    app.router.add_get("/bars", series(DataKind.BARS, OPTIONS))
    app.router.add_get("/trades", series(DataKind.TRADES, OPTIONS))
    app.router.add_get("/trades/latest", latest("trades", OPTIONS))
    app.router.add_get("/quotes/latest", latest("quotes", OPTIONS))
    app.router.add_get("/snapshots", snapshots(OPTIONS))
    app.router.add_get("/snapshots/{underlying}", option_chain)
    return app


def _app(backend: Backend, auth: Authenticator) -> web.Application:
    app = web.Application(middlewares=dialect.alpaca_middlewares(auth))
    app[dialect.BACKEND] = backend
    return app


def mount_data(app: web.Application, backend: Backend, auth: Authenticator) -> None:
    """The crypto and options data APIs at ``/v1beta3/crypto`` and ``/v1beta1/options`` of ``app``
    (stocks come with the ``/v2`` trading app)."""
    app.add_subapp("/v1beta3/crypto", crypto_app(backend, auth))
    app.add_subapp("/v1beta1/options", options_app(backend, auth))
