"""alpaca-py's three historical data clients and the TradingClient's startup/reporting calls,
unmodified, through the gateway's base URL over real sockets: on the embedded paper venue, and on
--venue alpaca in front of a standalone paper-broker process (whose data comes from its own
seeded price path, so the Alpaca venue's data path is exercised end to end)."""

from __future__ import annotations

import asyncio
import warnings
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import aiohttp
import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.enums import DataFeed
from alpaca.data.historical import CryptoHistoricalDataClient, OptionHistoricalDataClient, StockHistoricalDataClient
from alpaca.data.requests import (
    CryptoBarsRequest,
    CryptoLatestBarRequest,
    CryptoLatestOrderbookRequest,
    CryptoLatestQuoteRequest,
    CryptoLatestTradeRequest,
    CryptoQuoteRequest,
    CryptoSnapshotRequest,
    CryptoTradesRequest,
    OptionBarsRequest,
    OptionChainRequest,
    OptionLatestQuoteRequest,
    OptionLatestTradeRequest,
    OptionSnapshotRequest,
    OptionTradesRequest,
    StockBarsRequest,
    StockLatestBarRequest,
    StockLatestQuoteRequest,
    StockLatestTradeRequest,
    StockQuotesRequest,
    StockSnapshotRequest,
    StockTradesRequest,
)
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import AssetClass as AlpacaAssetClass
from alpaca.trading.enums import CorporateActionType, OrderSide, TimeInForce
from alpaca.trading.models import AccountConfiguration
from alpaca.trading.requests import (
    CreateWatchlistRequest,
    GetAssetsRequest,
    GetCalendarRequest,
    GetCorporateAnnouncementsRequest,
    GetOptionContractsRequest,
    GetPortfolioHistoryRequest,
    MarketOrderRequest,
    UpdateWatchlistRequest,
)

from gateway.audit.verify import iter_records
from gateway.venues.paper_engine import DEFAULT_MARKS

from .support import (
    BROKER_KEY_ID,
    BROKER_SECRET,
    PaperBrokerProcess,
    RunningGateway,
    free_port,
    paper_broker_subprocess,
    start_gateway,
    store_broker_key,
)

OPTION = "AAPL261218C00190000"
MARKS = {**{symbol: str(price) for symbol, price in DEFAULT_MARKS.items()}, OPTION: "12.5"}


async def call(fn, *args, **kwargs):
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture(scope="module")
def broker():
    """One paper-broker process for the module (starting one takes seconds); each test resets
    its prices."""
    port = free_port()
    with paper_broker_subprocess(port, "--key-id", BROKER_KEY_ID, "--secret", BROKER_SECRET) as process:
        yield PaperBrokerProcess(f"http://127.0.0.1:{port}", BROKER_KEY_ID, BROKER_SECRET, process)


@pytest.fixture(params=["paper", "alpaca"])
async def gateway(request, gateway_home):
    if request.param == "paper":
        running = await start_gateway(gateway_home, venue="paper")
        await running.gateway.venue.set_prices({OPTION: Decimal("12.5")})
    else:
        broker = request.getfixturevalue("broker")
        await broker.set_prices(MARKS)
        store_broker_key(gateway_home)
        running = await start_gateway(gateway_home, venue="alpaca", upstream_url=broker.url)
    try:
        yield running
    finally:
        await running.gateway.stop()


def clients(gw: RunningGateway):
    kwargs = {"url_override": gw.url}
    return (
        StockHistoricalDataClient(gw.key_id, gw.secret, **kwargs),
        CryptoHistoricalDataClient(gw.key_id, gw.secret, **kwargs),
        OptionHistoricalDataClient(gw.key_id, gw.secret, **kwargs),
    )


@pytest.mark.compat('alpaca-py StockHistoricalDataClient', 'get_stock_bars', 'works')
@pytest.mark.compat('alpaca-py StockHistoricalDataClient', 'get_stock_trades', 'works')
@pytest.mark.compat('alpaca-py StockHistoricalDataClient', 'get_stock_quotes', 'works')
@pytest.mark.compat('alpaca-py StockHistoricalDataClient', 'get_stock_latest_trade', 'works')
@pytest.mark.compat('alpaca-py StockHistoricalDataClient', 'get_stock_latest_quote', 'works')
@pytest.mark.compat('alpaca-py StockHistoricalDataClient', 'get_stock_latest_bar', 'works')
@pytest.mark.compat('alpaca-py StockHistoricalDataClient', 'get_stock_snapshot', 'works')
async def test_stock_data_client(gateway):
    stocks, _, _ = clients(gateway)
    end = datetime.now(timezone.utc)
    bars = await call(stocks.get_stock_bars, StockBarsRequest(
        symbol_or_symbols=["AAPL", "MSFT"], timeframe=TimeFrame(5, TimeFrameUnit.Minute), start=end - timedelta(hours=3), end=end))
    aapl = bars.data["AAPL"]
    assert 35 <= len(aapl) <= 37 and len(bars.data["MSFT"]) == len(aapl)
    assert all(b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close) for b in aapl)
    assert aapl[-1].close == 190  # the bar containing now closes at the mark orders fill at
    assert len({b.close for b in aapl}) > 10  # the path moves
    # Paging: 1-minute bars for 3 days are more than one page of 10,000; alpaca-py follows the token.
    many = await call(stocks.get_stock_bars, StockBarsRequest(
        symbol_or_symbols="AAPL", timeframe=TimeFrame.Minute, start=end - timedelta(days=8), end=end))
    assert len(many.data["AAPL"]) > 10_000
    times = [b.timestamp for b in many.data["AAPL"]]
    assert times == sorted(times) and len(set(times)) == len(times)
    daily = await call(stocks.get_stock_bars, StockBarsRequest(
        symbol_or_symbols="AAPL", timeframe=TimeFrame.Day, start=end - timedelta(days=30), limit=5))
    assert len(daily.data["AAPL"]) == 5

    trades = await call(stocks.get_stock_trades, StockTradesRequest(symbol_or_symbols="AAPL", start=end - timedelta(minutes=10)))
    assert 55 <= len(trades.data["AAPL"]) <= 61 and all(t.price > 0 and t.size > 0 for t in trades.data["AAPL"])
    quotes = await call(stocks.get_stock_quotes, StockQuotesRequest(symbol_or_symbols="AAPL", start=end - timedelta(minutes=5), limit=7))
    assert len(quotes.data["AAPL"]) == 7 and all(q.bid_price < q.ask_price for q in quotes.data["AAPL"])

    latest = await call(stocks.get_stock_latest_trade, StockLatestTradeRequest(symbol_or_symbols=["AAPL", "SPY"], feed=DataFeed.IEX))
    assert latest["AAPL"].price == 190 and latest["SPY"].price == 500
    quote = await call(stocks.get_stock_latest_quote, StockLatestQuoteRequest(symbol_or_symbols="AAPL"))
    assert quote["AAPL"].bid_price < 190 < quote["AAPL"].ask_price
    bar = await call(stocks.get_stock_latest_bar, StockLatestBarRequest(symbol_or_symbols="TSLA"))
    assert bar["TSLA"].close == 250
    snapshot = await call(stocks.get_stock_snapshot, StockSnapshotRequest(symbol_or_symbols=["AAPL", "QQQ"]))
    assert snapshot["AAPL"].latest_trade.price == 190 and snapshot["QQQ"].daily_bar.close == 430
    assert snapshot["AAPL"].previous_daily_bar.timestamp < snapshot["AAPL"].daily_bar.timestamp


@pytest.mark.compat('alpaca-py CryptoHistoricalDataClient', 'get_crypto_bars', 'works')
@pytest.mark.compat('alpaca-py CryptoHistoricalDataClient', 'get_crypto_trades', 'works')
@pytest.mark.compat('alpaca-py CryptoHistoricalDataClient', 'get_crypto_quotes', 'works')
@pytest.mark.compat('alpaca-py CryptoHistoricalDataClient', 'get_crypto_latest_trade', 'works')
@pytest.mark.compat('alpaca-py CryptoHistoricalDataClient', 'get_crypto_latest_quote', 'works')
@pytest.mark.compat('alpaca-py CryptoHistoricalDataClient', 'get_crypto_latest_bar', 'works')
@pytest.mark.compat('alpaca-py CryptoHistoricalDataClient', 'get_crypto_latest_orderbook', 'works')
@pytest.mark.compat('alpaca-py CryptoHistoricalDataClient', 'get_crypto_snapshot', 'works')
@pytest.mark.compat('alpaca-py OptionHistoricalDataClient', 'get_option_bars', 'works')
@pytest.mark.compat('alpaca-py OptionHistoricalDataClient', 'get_option_trades', 'works')
@pytest.mark.compat('alpaca-py OptionHistoricalDataClient', 'get_option_latest_trade', 'works')
@pytest.mark.compat('alpaca-py OptionHistoricalDataClient', 'get_option_latest_quote', 'works')
@pytest.mark.compat('alpaca-py OptionHistoricalDataClient', 'get_option_snapshot', 'works')
@pytest.mark.compat('alpaca-py OptionHistoricalDataClient', 'get_option_chain', 'works')
async def test_crypto_and_option_data_clients(gateway):
    _, crypto, options = clients(gateway)
    end = datetime.now(timezone.utc)
    bars = await call(crypto.get_crypto_bars, CryptoBarsRequest(
        symbol_or_symbols="BTC/USD", timeframe=TimeFrame.Hour, start=end - timedelta(days=2), end=end))
    assert 48 <= len(bars.data["BTC/USD"]) <= 49 and bars.data["BTC/USD"][-1].close == 60000
    trades = await call(crypto.get_crypto_trades, CryptoTradesRequest(symbol_or_symbols="ETH/USD", start=end - timedelta(minutes=2)))
    assert trades.data["ETH/USD"]
    quotes = await call(crypto.get_crypto_quotes, CryptoQuoteRequest(symbol_or_symbols="ETH/USD", start=end - timedelta(minutes=2)))
    assert all(q.bid_price < q.ask_price for q in quotes.data["ETH/USD"])
    assert (await call(crypto.get_crypto_latest_trade, CryptoLatestTradeRequest(symbol_or_symbols="BTC/USD")))["BTC/USD"].price == 60000
    latest_quote = await call(crypto.get_crypto_latest_quote, CryptoLatestQuoteRequest(symbol_or_symbols="BTC/USD"))
    assert latest_quote["BTC/USD"].bid_price < 60000 < latest_quote["BTC/USD"].ask_price
    assert (await call(crypto.get_crypto_latest_bar, CryptoLatestBarRequest(symbol_or_symbols="ETH/USD")))["ETH/USD"].close == 3000
    book = (await call(crypto.get_crypto_latest_orderbook, CryptoLatestOrderbookRequest(symbol_or_symbols="BTC/USD")))["BTC/USD"]
    assert book.bids[0].price < book.asks[0].price and len(book.bids) == 20
    assert [b.price for b in book.bids] == sorted((b.price for b in book.bids), reverse=True)
    snap = await call(crypto.get_crypto_snapshot, CryptoSnapshotRequest(symbol_or_symbols=["BTC/USD", "ETH/USD"]))
    assert snap["ETH/USD"].latest_trade.price == 3000 and snap["BTC/USD"].minute_bar is not None

    obars = await call(options.get_option_bars, OptionBarsRequest(
        symbol_or_symbols=OPTION, timeframe=TimeFrame.Hour, start=end - timedelta(hours=5), end=end))
    assert obars.data[OPTION][-1].close == Decimal("12.5")
    otrades = await call(options.get_option_trades, OptionTradesRequest(symbol_or_symbols=OPTION, start=end - timedelta(minutes=1)))
    assert otrades.data[OPTION]
    assert (await call(options.get_option_latest_trade, OptionLatestTradeRequest(symbol_or_symbols=OPTION)))[OPTION].price == 12.5
    oquote = await call(options.get_option_latest_quote, OptionLatestQuoteRequest(symbol_or_symbols=OPTION))
    assert oquote[OPTION].bid_price < 12.5 < oquote[OPTION].ask_price
    osnap = await call(options.get_option_snapshot, OptionSnapshotRequest(symbol_or_symbols=OPTION))
    assert osnap[OPTION].latest_trade.price == 12.5
    chain = await call(options.get_option_chain, OptionChainRequest(underlying_symbol="AAPL"))
    assert set(chain) == {OPTION}


async def test_prices_follow_a_pinned_mark(gateway, request):
    stocks, _, _ = clients(gateway)
    if gateway.gateway.options.venue == "paper":
        await gateway.gateway.venue.set_prices({"AAPL": Decimal("200")})
    else:
        await request.getfixturevalue("broker").set_prices({"AAPL": "200"})
    deadline = asyncio.get_running_loop().time() + 5
    while True:  # the gateway caches data answers for a second
        latest = await call(stocks.get_stock_latest_trade, StockLatestTradeRequest(symbol_or_symbols="AAPL"))
        if latest["AAPL"].price == 200 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert latest["AAPL"].price == 200


async def raw(gw: RunningGateway, method: str, path: str, **kwargs):
    async with aiohttp.ClientSession(headers=gw.headers) as http:
        async with http.request(method, gw.url + path, **kwargs) as response:
            return response.status, await response.json(content_type=None), await response.text()


async def test_bad_data_requests_answer_in_alpacas_shape(gateway):
    end = datetime.now(timezone.utc)
    cases = [
        ("/v2/stocks/bars?symbols=AAPL&timeframe=7Fortnight", 422, "timeframe"),
        ("/v2/stocks/bars?symbols=AAPL&timeframe=1Min&limit=100000", 422, "limit"),
        ("/v2/stocks/bars?symbols=AAPL&timeframe=1Min&start=1970-01-01T00:00:00Z", 422, "too large"),
        ("/v2/stocks/bars?symbols=AAPL&timeframe=1Min&start=yesterday", 422, "start"),
        ("/v2/stocks/bars?timeframe=1Min", 422, "symbols is required"),
        ("/v2/stocks/bars?symbols=BTC/USD&timeframe=1Min", 422, "not a us_equity"),
        ("/v2/stocks/trades?symbols=AAPL&bogus=1", 422, "bogus"),
        ("/v2/stocks/trades?symbols=AAPL&page_token=zz", 422, "page_token"),
        ("/v2/stocks/bars?symbols=AAPL&timeframe=1Min&sort=sideways", 422, "sort"),
        ("/v2/stocks/ZZZZ/trades/latest", 404, "ZZZZ"),
        ("/v1beta3/crypto/us/latest/trades?symbols=" + ",".join(f"X{i}/USD" for i in range(201)), 422, "200"),
    ]
    for path, status, words in cases:
        got, body, text = await raw(gateway, "GET", path)
        assert got == status, (path, text)
        assert body["code"] == status * 100000 + 10000 and words in body["message"], (path, body)
        assert gateway.secret not in text and BROKER_SECRET not in text
    # Unknown symbols are left out, as Alpaca does.
    got, body, _ = await raw(gateway, "GET", "/v1beta3/crypto/us/latest/trades?symbols=BTC/USD,ZZZ/USD")
    assert got == 200 and set(body["trades"]) == {"BTC/USD"}
    got, body, _ = await raw(gateway, "GET", f"/v2/stocks/bars?symbols=ZZZZ&timeframe=1Min&end={end.isoformat().replace('+00:00', 'Z')}")
    assert got == 200 and body["bars"] == {}
    # No credentials, no data.
    async with aiohttp.ClientSession() as http, http.get(gateway.url + "/v2/stocks/AAPL/trades/latest") as response:
        assert response.status == 401 and (await response.json())["code"] == 40110000


# ---------------------------------------------------------------------------------------
# TradingClient's startup and reporting calls


@pytest.mark.compat('alpaca-py TradingClient', 'get_all_assets', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'get_asset', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'get_calendar', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'get_account_configurations', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'set_account_configurations', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'get_portfolio_history', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'create_watchlist', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'add_asset_to_watchlist_by_id', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'remove_asset_from_watchlist_by_id', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'update_watchlist_by_id', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'get_watchlist_by_id', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'get_watchlists', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'delete_watchlist_by_id', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'get_option_contracts', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'get_option_contract', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'set_account_configurations', 'refused', why='a change that loosens a broker protection (no_shorting, dtbp_check, max_margin_multiplier, pdt_check, suspend_trade) is a policy decision')
@pytest.mark.compat('alpaca-py TradingClient', 'exercise_options_position', 'refused', why='an exercise opens a stock position, an entry the order path must judge first')
@pytest.mark.compat('alpaca-py TradingClient', 'get_corporate_announcements', 'not served', why="the venues serve no corporate actions (404 in Alpaca's shape)")
async def test_trading_client_startup_and_reporting_calls(gateway):
    tc = TradingClient(gateway.key_id, gateway.secret, paper=True, url_override=gateway.url)
    assets = await call(tc.get_all_assets, GetAssetsRequest(asset_class=AlpacaAssetClass.CRYPTO))
    assert {a.symbol for a in assets} == {"BTC/USD", "ETH/USD"}
    every = await call(tc.get_all_assets)
    assert {"AAPL", "SPY", "BTC/USD"} <= {a.symbol for a in every}
    btc = await call(tc.get_asset, "BTCUSD")  # alias, as Alpaca answers it
    assert btc.symbol == "BTC/USD"
    assert (await call(tc.get_asset, btc.id)).symbol == "BTC/USD"  # by id

    today = date.today()
    days = await call(tc.get_calendar, GetCalendarRequest(start=today, end=today + timedelta(days=13)))
    assert len(days) == 10 and all(d.date.weekday() < 5 for d in days)

    config = await call(tc.get_account_configurations)
    assert config.no_shorting is False
    tighter = AccountConfiguration(**{**config.model_dump(), "no_shorting": True})
    assert (await call(tc.set_account_configurations, tighter)).no_shorting is True
    looser = AccountConfiguration(**{**tighter.model_dump(), "no_shorting": False})
    with pytest.raises(APIError) as refused:
        await call(tc.set_account_configurations, looser)
    assert refused.value.status_code == 403 and "no_shorting" in str(refused.value.message)
    assert (await call(tc.get_account_configurations)).no_shorting is True
    more_margin = AccountConfiguration(**{**tighter.model_dump(), "max_margin_multiplier": "4", "dtbp_check": "exit"})
    with pytest.raises(APIError) as refused:
        await call(tc.set_account_configurations, more_margin)
    assert refused.value.status_code == 403 and "dtbp_check" in str(refused.value.message)
    records = [r for r in await _audit(gateway) if r["type"].startswith("account.config")]
    assert [r["type"] for r in records] == ["account.configured", "account.configuration_refused", "account.configuration_refused"]
    assert records[0]["data"]["changes"] == {"no_shorting": True}

    await call(tc.submit_order, MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    history = await call(tc.get_portfolio_history, GetPortfolioHistoryRequest(period="1D", timeframe="1H"))
    assert history.equity and len(history.timestamp) == len(history.equity)

    watch = await call(tc.create_watchlist, CreateWatchlistRequest(name="startup", symbols=["AAPL", "SPY"]))
    assert [a.symbol for a in watch.assets] == ["AAPL", "SPY"]
    watch = await call(tc.add_asset_to_watchlist_by_id, watch.id, "BTC/USD")
    assert [a.symbol for a in watch.assets] == ["AAPL", "SPY", "BTC/USD"]
    watch = await call(tc.remove_asset_from_watchlist_by_id, watch.id, "SPY")
    assert [a.symbol for a in watch.assets] == ["AAPL", "BTC/USD"]
    watch = await call(tc.update_watchlist_by_id, watch.id, UpdateWatchlistRequest(name="renamed"))
    assert watch.name == "renamed" and (await call(tc.get_watchlist_by_id, watch.id)).name == "renamed"
    assert [w.name for w in await call(tc.get_watchlists)] == ["renamed"]
    await call(tc.delete_watchlist_by_id, watch.id)
    assert await call(tc.get_watchlists) == []
    with pytest.raises(APIError) as missing:
        await call(tc.get_watchlist_by_id, watch.id)
    assert missing.value.status_code == 404

    contracts = await call(tc.get_option_contracts, GetOptionContractsRequest(underlying_symbols=["AAPL"]))
    assert [c.symbol for c in contracts.option_contracts] == [OPTION]
    assert (await call(tc.get_option_contract, OPTION)).strike_price == 190

    with pytest.raises(APIError) as refused:
        await call(tc.exercise_options_position, OPTION)
    assert refused.value.status_code == 403 and "exercis" in str(refused.value.message)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(APIError) as not_served:
            await call(tc.get_corporate_announcements, GetCorporateAnnouncementsRequest(
                ca_types=[CorporateActionType.DIVIDEND], since=today - timedelta(days=30), until=today))
    assert not_served.value.status_code == 404 and "does not serve corporate actions" in str(not_served.value.message)


async def test_activities_list_the_fills(gateway):
    tc = TradingClient(gateway.key_id, gateway.secret, paper=True, url_override=gateway.url)
    order = await call(tc.submit_order, MarketOrderRequest(symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    status, body, _ = await raw(gateway, "GET", "/v2/account/activities/FILL")
    assert status == 200 and body[0]["order_id"] == str(order.id)  # newest first
    assert body[0]["activity_type"] == "FILL" and body[0]["price"] == "500" and body[0]["qty"] == "1"
    assert all(a["activity_type"] == "FILL" for a in body)


async def test_bad_account_requests(gateway):
    cases = [
        ("GET", "/v2/calendar?start=1900-01-01&end=2100-01-01", None, 422, "too large"),
        ("GET", "/v2/calendar?start=tomorrow", None, 422, "start"),
        ("GET", "/v2/assets?asset_class=bonds", None, 422, "asset_class"),
        ("GET", "/v2/assets/ZZZZ", None, 404, "ZZZZ"),
        ("PATCH", "/v2/account/configurations", {"no_shorting": "no"}, 422, "no_shorting"),
        ("PATCH", "/v2/account/configurations", {"max_margin_multiplier": "9"}, 422, "max_margin_multiplier"),
        ("PATCH", "/v2/account/configurations", {"admin": True}, 422, "admin"),
        ("POST", "/v2/watchlists", {"name": "x", "symbols": ["not a symbol"]}, 422, "symbols"),
        ("POST", "/v2/watchlists", {"symbols": []}, 422, "name"),
        ("GET", "/v2/watchlists/not-a-uuid", None, 404, "watchlist"),
        ("GET", "/v2/corporate_actions/announcements?ca_types=dividend&since=2020-01-01&until=2021-01-01", None, 422, "90 days"),
        ("GET", "/v2/options/contracts?limit=0", None, 422, "limit"),
    ]
    for method, path, body, status, words in cases:
        got, answer, text = await raw(gateway, method, path, json=body)
        assert got == status and answer["code"] == status * 100000 + 10000 and words in answer["message"], (path, text)
        assert gateway.secret not in text and BROKER_SECRET not in text


async def _audit(gw: RunningGateway) -> list[dict]:
    return [r.to_dict() for r in iter_records(gw.gateway.home.audit_log)]
