"""Binance USDⓈ-M market data and start-up reads through the gateway, with unmodified clients
over real sockets: ccxt ``binanceusdm``, ccxt ``binance`` (freqtrade's class, defaultType
future) and binance-futures-connector, on the embedded paper venue and on --venue ccxt in front
of a `gatewayctl paper-broker --dialect binance-futures` process.

Also the public surface's protections (issue 11, finding 5): only listed symbols are answered,
unknown ones and repeated ones cost the venue nothing, and each source address has a budget
(429 -1003 with Retry-After)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from urllib.parse import urlsplit

import aiohttp
import ccxt.async_support as ccxt
import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockLatestTradeRequest
from binance.error import ClientError
from binance.um_futures import UMFutures

from gateway.home import Home
from gateway.keys.broker import BrokerKeys
from gateway.keys.vault import Vault
from gateway.market_data import AddressLimiter, MarketReads

from .support import start_gateway
from .test_binance_paper_broker import binance_client, broker_process


@pytest.fixture(scope="module")
def broker():
    """One futures paper-broker process for the module (starting one takes seconds)."""
    with broker_process() as running:
        yield running


@pytest.fixture(params=["paper", "ccxt"])
async def gateway(request, gateway_home):
    if request.param == "paper":
        running = await start_gateway(gateway_home, venue="paper")
        running.symbol, running.wire = "BTC/USD:USD", "BTCUSD"
    else:
        broker = request.getfixturevalue("broker")
        BrokerKeys(Vault.open(Home.at(gateway_home.home))).set("ccxt", broker.key, broker.secret)
        running = await start_gateway(gateway_home, venue="ccxt", upstream_url=broker.url)
        running.symbol, running.wire = "BTC/USDT:USDT", "BTCUSDT"
    try:
        yield running
    finally:
        await running.gateway.stop()


@pytest.fixture
async def bot(gateway):
    exchange = binance_client(gateway.url, gateway.key_id, gateway.secret)
    try:
        await exchange.load_markets()
        yield exchange
    finally:
        await exchange.close()


def futures(gateway) -> bool:
    return gateway.gateway.options.venue == "ccxt"


@pytest.mark.compat('ccxt binanceusdm', 'fetch_ohlcv', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'fetch_order_book', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'fetch_trades', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'fetch_tickers', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'fetch_bids_asks', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'fetch_funding_rate', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'fetch_funding_rate_history', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'fetch_open_interest', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'fetch_my_trades', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'fetch_trading_fee', 'works')
async def test_ccxt_binanceusdm_market_data(gateway, bot):
    symbol = gateway.symbol
    candles = await bot.fetch_ohlcv(symbol, "1m", limit=50)
    assert len(candles) == 50 and candles[-1][4] == 60000.0
    assert [c[0] for c in candles] == sorted(c[0] for c in candles) and candles[1][0] - candles[0][0] == 60_000
    assert len({c[4] for c in candles}) > 5  # the seeded path moves
    since = candles[0][0]
    hourly = await bot.fetch_ohlcv(symbol, "1h", since=since - 3_600_000 * 5, limit=3)
    assert len(hourly) == 3 and hourly[0][0] >= since - 3_600_000 * 5

    book = await bot.fetch_order_book(symbol, 10)
    assert len(book["bids"]) == 10 and len(book["asks"]) == 10 and book["bids"][0][0] < book["asks"][0][0]

    ticker = await bot.fetch_ticker(symbol)
    assert ticker["last"] == 60000.0 and ticker["bid"] < 60000.0 < ticker["ask"]
    tickers = await bot.fetch_tickers()
    assert symbol in tickers and tickers[symbol]["bid"] is not None
    bids_asks = await bot.fetch_bids_asks([symbol])
    assert bids_asks[symbol]["bid"] == ticker["bid"]

    trades = await bot.fetch_trades(symbol, limit=20)
    assert len(trades) == 20 and all(t["price"] > 0 for t in trades)
    assert [t["timestamp"] for t in trades] == sorted(t["timestamp"] for t in trades)

    if futures(gateway):
        funding = await bot.fetch_funding_rate(symbol)
        assert funding["markPrice"] == 60000.0 and funding["fundingRate"] == 0.0001 and funding["fundingTimestamp"]
        history = await bot.fetch_funding_rate_history(symbol, limit=3)
        assert len(history) == 3 and all(h["fundingRate"] == 0.0001 for h in history)
        assert (await bot.fetch_open_interest(symbol))["openInterestAmount"] == 0
        # The same gateway's Alpaca data API: a crypto exchange has no stock data, and says so.
        stocks = StockHistoricalDataClient(gateway.key_id, gateway.secret, url_override=gateway.url)
        with pytest.raises(APIError) as refused:
            await asyncio.to_thread(stocks.get_stock_latest_trade, StockLatestTradeRequest(symbol_or_symbols="AAPL"))
        assert refused.value.status_code == 404 and "ccxt venue does not serve latest trades for us_equity" in str(refused.value)
    else:  # a cash account has no perpetuals: refused, not answered with made-up funding
        with pytest.raises(ccxt.ExchangeError, match="does not serve funding"):
            await bot.fetch_funding_rate(symbol)

    bought = await bot.create_order(symbol, "market", "buy", 0.01)
    mine = await bot.fetch_my_trades(symbol)
    assert [(t["order"], t["amount"], t["price"]) for t in mine] == [(bought["id"], 0.01, 60000.0)]
    fee = await bot.fetch_trading_fee(symbol)
    assert fee["maker"] == 0 and fee["taker"] == 0


@pytest.mark.compat('ccxt binance (defaultType future)', 'load_markets', 'works')
@pytest.mark.compat('ccxt binance (defaultType future)', 'fetch_ohlcv', 'works')
@pytest.mark.compat('ccxt binance (defaultType future)', 'fetch_order_book', 'works')
async def test_ccxt_binance_class_loads_markets_for_a_futures_bot(gateway):
    """freqtrade's exchange class: ccxt ``binance`` with defaultType future loads spot, linear and
    inverse markets (/api/v3, /fapi, /dapi exchangeInfo) and reads multiAssetsMargin."""
    exchange = ccxt.binance({
        "apiKey": gateway.key_id, "secret": gateway.secret, "enableRateLimit": False,
        "options": {"defaultType": "future", "fetchCurrencies": False},
    })
    exchange.urls["api"] = {name: gateway.url + urlsplit(value).path for name, value in exchange.urls["api"].items()}
    try:
        markets = await exchange.load_markets()
        assert gateway.symbol in markets and markets[gateway.symbol]["linear"]
        assert all(m["swap"] for m in markets.values())  # no spot or inverse market through the gateway
        candles = await exchange.fetch_ohlcv(gateway.symbol, "5m", limit=10)
        assert len(candles) == 10
        assert (await exchange.fetch_order_book(gateway.symbol, 5))["bids"]
        mode = await exchange.fapiPrivateGetMultiAssetsMargin()
        assert mode == {"multiAssetsMargin": False}
    finally:
        await exchange.close()


@pytest.mark.compat('binance-futures-connector UMFutures', 'klines', 'works')
@pytest.mark.compat('binance-futures-connector UMFutures', 'continuous_klines', 'works')
@pytest.mark.compat('binance-futures-connector UMFutures', 'mark_price_klines', 'works')
@pytest.mark.compat('binance-futures-connector UMFutures', 'depth', 'works')
@pytest.mark.compat('binance-futures-connector UMFutures', 'trades', 'works')
@pytest.mark.compat('binance-futures-connector UMFutures', 'agg_trades', 'works')
@pytest.mark.compat('binance-futures-connector UMFutures', 'book_ticker', 'works')
@pytest.mark.compat('binance-futures-connector UMFutures', 'ticker_price', 'works')
@pytest.mark.compat('binance-futures-connector UMFutures', 'mark_price', 'works')
@pytest.mark.compat('binance-futures-connector UMFutures', 'funding_rate', 'works')
@pytest.mark.compat('binance-futures-connector UMFutures', 'open_interest', 'works')
@pytest.mark.compat('binance-futures-connector UMFutures', 'get_account_trades', 'works')
@pytest.mark.compat('binance-futures-connector UMFutures', 'get_income_history', 'works')
@pytest.mark.compat('binance-futures-connector UMFutures', 'get_multi_asset_mode', 'works')
@pytest.mark.compat('binance-futures-connector UMFutures', 'get_position_mode', 'works')
@pytest.mark.compat('binance-futures-connector UMFutures', 'get_position_risk', 'works')
@pytest.mark.compat('binance-futures-connector UMFutures', 'commission_rate', 'works')
async def test_binance_futures_connector(gateway):
    client = UMFutures(key=gateway.key_id, secret=gateway.secret, base_url=gateway.url)
    wire = gateway.wire

    def run():
        klines = client.klines(wire, "15m", limit=4)
        assert len(klines) == 4 and klines[-1][4] == "60000"
        assert len(client.continuous_klines(wire, "PERPETUAL", "1h", limit=2)) == 2
        assert len(client.mark_price_klines(wire, "1m", limit=3)) == 3
        depth = client.depth(wire, limit=5)
        assert len(depth["bids"]) == 5 and float(depth["bids"][0][0]) < float(depth["asks"][0][0])
        assert len(client.trades(wire, limit=7)) == 7
        assert len(client.agg_trades(wire, limit=9)) == 9
        assert client.ticker_price(wire)["price"] == "60000"
        assert wire in {row["symbol"] for row in client.ticker_price()}
        assert wire in {row["symbol"] for row in client.ticker_24hr_price_change()}
        assert client.book_ticker(wire)["symbol"] == wire
        assert wire in {row["symbol"] for row in client.book_ticker()}
        assert client.get_multi_asset_mode() == {"multiAssetsMargin": False}
        assert client.get_position_mode() == {"dualSidePosition": False}
        assert client.commission_rate(wire)["takerCommissionRate"] == "0"
        assert all(t["symbol"] == wire for t in client.get_account_trades(wire))
        if futures(gateway):
            assert client.mark_price(wire)["markPrice"] == "60000"
            assert len(client.funding_rate(wire, limit=2)) == 2
            held = sum(abs(Decimal(p["positionAmt"])) for p in client.get_position_risk(symbol=wire))
            assert Decimal(client.open_interest(wire)["openInterest"]) == held  # the paper account is the market
            assert client.get_income_history(incomeType="FUNDING_FEE") == []
        else:
            try:
                client.mark_price(wire)
            except ClientError as exc:
                assert exc.status_code == 400 and exc.error_code == -5000 and "funding" in exc.error_message
            else:
                raise AssertionError("a cash venue answered funding")

    await asyncio.to_thread(run)


# ---------------------------------------------------------------------------------------
# Finding 5: the public surface costs the venue nothing it did not list, and is rate-limited


class VenueCalls:
    """Counts the venue's market-data calls (each still goes to the real venue)."""

    def __init__(self, monkeypatch, venue):
        self.calls: list[str] = []
        for name in ("latest_trades", "latest_quotes", "snapshots", "series", "order_book", "funding_rate", "funding_rates",
                     "latest_price"):
            real = getattr(venue, name)

            async def counted(*args, _real=real, _name=name, **kwargs):
                self.calls.append(_name)
                return await _real(*args, **kwargs)

            monkeypatch.setattr(venue, name, counted)


async def get(gateway, path: str, headers: dict | None = None):
    async with aiohttp.ClientSession() as http, http.get(gateway.url + path, headers=headers or {}) as response:
        return response.status, await response.json(content_type=None), response.headers


async def test_unknown_symbols_never_reach_the_venue(gateway, monkeypatch):
    pipeline = gateway.gateway.pipeline  # a budget large enough for this many requests from one address
    pipeline.market_reads = MarketReads(pipeline.venue, limiter=AddressLimiter(per_min=100_000, burst=100_000))
    await get(gateway, "/fapi/v1/exchangeInfo")  # the market list is loaded (and cached) once
    calls = VenueCalls(monkeypatch, gateway.gateway.venue)
    paths = ["/fapi/v1/ticker/price?"] * 300 + [
        path for _ in range(20) for path in (
            "/fapi/v1/ticker/24hr?", "/fapi/v1/ticker/bookTicker?", "/fapi/v1/depth?", "/fapi/v1/klines?interval=1m&",
            "/fapi/v1/trades?", "/fapi/v1/premiumIndex?", "/fapi/v1/openInterest?", "/fapi/v1/fundingRate?")
    ]
    for i, path in enumerate(paths):
        status, body, _ = await get(gateway, f"{path}symbol=ZZ{i}USD")
        assert status == 400 and body == {"code": -1121, "msg": "Invalid symbol."}, path
    assert calls.calls == []


async def test_identical_public_requests_are_coalesced_and_cached(gateway, monkeypatch):
    await get(gateway, "/fapi/v1/exchangeInfo")
    calls = VenueCalls(monkeypatch, gateway.gateway.venue)
    answers = await asyncio.gather(*(get(gateway, f"/fapi/v1/ticker/price?symbol={gateway.wire}") for _ in range(50)))
    assert {a[0] for a in answers} == {200} and calls.calls == ["latest_trades"]
    status, _, _ = await get(gateway, f"/fapi/v1/ticker/price?symbol={gateway.wire}")
    assert status == 200 and calls.calls == ["latest_trades"]  # within the TTL: from the cache


async def test_public_endpoints_are_rate_limited_per_address(gateway):
    pipeline = gateway.gateway.pipeline
    pipeline.market_reads = MarketReads(pipeline.venue, limiter=AddressLimiter(per_min=60, burst=10))
    for _ in range(10):
        status, _, _ = await get(gateway, f"/fapi/v1/ticker/price?symbol={gateway.wire}")
        assert status == 200
    status, body, headers = await get(gateway, f"/fapi/v1/ticker/price?symbol={gateway.wire}")
    assert status == 429 and body["code"] == -1003 and int(headers["Retry-After"]) >= 1
    # Weights: a ticker for every symbol costs 40 of the 10 left, even after a refill.
    status, body, _ = await get(gateway, "/fapi/v1/ticker/24hr")
    assert status == 429
    # Signed calls are not public: the bot's own account reads still go through.
    exchange = binance_client(gateway.url, gateway.key_id, gateway.secret, fetchCurrencies=False)
    try:
        assert (await exchange.fapiPrivateGetMultiAssetsMargin()) == {"multiAssetsMargin": False}
    finally:
        await exchange.close()


async def test_ccxt_gets_bad_symbol_for_an_unlisted_one(bot):
    with pytest.raises(ccxt.BadSymbol):
        await bot.fapiPublicGetTickerPrice({"symbol": "NOPEUSDT"})


async def test_bad_market_data_requests_answer_in_binances_shape(gateway):
    now = int(time.time() * 1000)
    w = gateway.wire
    cases = [
        (f"/fapi/v1/klines?symbol={w}&interval=7x", -1120),
        (f"/fapi/v1/klines?symbol={w}&interval=1m&limit=5000", -1130),
        (f"/fapi/v1/klines?symbol={w}&interval=1m&startTime=abc", -1130),
        (f"/fapi/v1/klines?symbol={w}&interval=1m&startTime=0&endTime={now}", -1130),  # 56 years of minutes
        (f"/fapi/v1/klines?symbol={w}&interval=1m&startTime={now}&endTime={now - 60_000}", -1130),
        ("/fapi/v1/klines?interval=1m", -1102),
        (f"/fapi/v1/klines?symbol={w}&interval=1m&bogus=1", -1130),
        (f"/fapi/v1/depth?symbol={w}&limit=7", -1130),
        (f"/fapi/v1/trades?symbol={w}&limit=0", -1130),
        (f"/fapi/v1/aggTrades?symbol={w}&fromId=5", -1130),
        (f"/fapi/v1/continuousKlines?pair={w}&contractType=CURRENT_QUARTER&interval=1m", -1130),
        ("/fapi/v1/openInterest", -1102),
        (f"/fapi/v1/ticker/price?symbol={'X' * 400}", -1121),
        ("/fapi/v1/fundingRate?symbol=NOPEUSDT", -1121),
    ]
    for path, code in cases:
        status, body, _ = await get(gateway, path)
        assert status == 400 and body["code"] == code and isinstance(body["msg"], str), (path, body)
        assert gateway.secret not in str(body)
    status, body, _ = await get(gateway, "/fapi/v1/userTrades?symbol=" + w)  # signed: no key, refused
    assert status == 401 and body["code"] == -2014


async def test_premium_index_for_every_symbol_is_one_venue_call(gateway, monkeypatch):
    if not futures(gateway):
        status, body, _ = await get(gateway, "/fapi/v1/premiumIndex")
        assert status == 400 and body["code"] == -5000  # a cash venue: no perpetuals, said once
        return
    calls = VenueCalls(monkeypatch, gateway.gateway.venue)
    status, body, _ = await get(gateway, "/fapi/v1/premiumIndex")
    assert status == 200 and {row["symbol"] for row in body} >= {"BTCUSDT", "ETHUSDT"} and len(body) >= 5
    assert calls.calls == ["funding_rates"]
