"""The calls freqtrade (futures, isolated margin, live) makes through ccxt ``binance`` with
``defaultType: swap``, replayed with that unmodified client over real sockets against the
gateway on ``--venue ccxt`` in front of the Binance futures paper broker, under the shipped
default policy. The slow end-to-end run with freqtrade itself is ``scripts/e2e-freqtrade.sh``;
this keeps its call sequence in the fast suite.

The sequence (recorded from freqtrade 2026.9 through a logging proxy): load_markets (spot,
USDⓈ-M and coin-M exchangeInfo, the two /sapi reads), time, leverageBracket, positionSide/dual,
multiAssetsMargin, account and positionRisk (v3), klines (limit 499 and paged with startTime),
depth, marginType and leverage before each entry, market orders (exits reduce-only), the order
and its userTrades, STOP_MARKET stoploss on exchange through algoOrder (query and cancel with
``stop: True``), funding fees from income."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from urllib.parse import urlsplit

import ccxt.async_support as ccxt
import pytest

from gateway.home import Home
from gateway.keys.broker import BrokerKeys
from gateway.keys.vault import Vault
from gateway.paper_broker import build_binance_paper_broker_app
from gateway.venues.paper import PaperVenue

from .support import start_gateway
from .test_binance_paper_broker import BROKER_KEY, BROKER_SECRET, BinanceBroker

PAIR = "BTC/USDT:USDT"


@pytest.fixture
async def broker(serve_app) -> BinanceBroker:
    venue = PaperVenue(starting_equity=Decimal(100000), seed_marks=True, futures=True)
    url = await serve_app(build_binance_paper_broker_app(venue, key_id=BROKER_KEY, secret=BROKER_SECRET))
    return BinanceBroker(url, BROKER_KEY, BROKER_SECRET)


@pytest.fixture
async def gateway(default_policy_home, broker):
    BrokerKeys(Vault.open(Home.at(default_policy_home.home))).set("ccxt", broker.key, broker.secret)
    running = await start_gateway(default_policy_home, venue="ccxt", upstream_url=broker.url)
    try:
        yield running
    finally:
        await running.gateway.stop()


@pytest.fixture
async def freqtrade_exchange(gateway):
    """ccxt ``binance`` as freqtrade builds it: options defaultType swap, every http(s) entry
    of ``urls['api']`` moved to the gateway (what ``ccxt_config``/``ccxt_async_config`` do)."""
    exchange = ccxt.binance({
        "apiKey": gateway.key_id, "secret": gateway.secret, "enableRateLimit": False,
        "options": {"defaultType": "swap"},
    })
    exchange.urls["api"] = {name: gateway.url + urlsplit(url).path for name, url in exchange.urls["api"].items()
                            if isinstance(url, str) and url.startswith("http")}
    try:
        yield exchange
    finally:
        await exchange.close()


def audit_records(gateway) -> list[dict]:
    path = Home.at(gateway.init.home).audit_log
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def decision_for(gateway, client_id: str) -> dict:
    found = [r["data"] for r in audit_records(gateway) if r["type"] == "order.decision" and r["data"]["client_order_id"] == client_id]
    assert len(found) == 1, f"one decision for {client_id}, found {len(found)}"
    return found[0]


async def test_freqtrade_startup_reads(freqtrade_exchange):
    ex = freqtrade_exchange
    markets = await ex.load_markets()
    assert markets[PAIR]["linear"] and markets[PAIR]["swap"] and markets[PAIR]["settle"] == "USDT"
    assert abs(await ex.fetch_time() - ex.milliseconds()) < 5000

    tiers = await ex.fetch_leverage_tiers([PAIR])
    assert tiers[PAIR] and tiers[PAIR][0]["minNotional"] == 0 and tiers[PAIR][0]["maxLeverage"] >= 1
    assert (await ex.fapiPrivateGetPositionSideDual())["dualSidePosition"] is False  # one-way mode
    assert (await ex.fapiPrivateGetMultiAssetsMargin())["multiAssetsMargin"] is False  # freqtrade refuses multi-asset

    balance = await ex.fetch_balance()
    assert balance["USDT"]["free"] == 100000.0
    assert all(p["contracts"] == 0 for p in await ex.fetch_positions([PAIR]))

    candles = await ex.fetch_ohlcv(PAIR, "1m", limit=499)
    assert len(candles) == 499 and candles[1][0] - candles[0][0] == 60_000
    # freqtrade pages history with startTime when it needs more than one call.
    since = candles[0][0] - 1500 * 60_000
    older = await ex.fetch_ohlcv(PAIR, "1m", since=since, limit=1500)
    assert older and older[0][0] >= since and len(older) <= 1500
    book = await ex.fetch_l2_order_book(PAIR, 5)  # freqtrade rounds order_book_top up to a valid depth
    assert book["bids"][0][0] < book["asks"][0][0]


async def test_freqtrade_trade_with_its_stoploss_on_exchange(freqtrade_exchange, gateway, broker):
    ex = freqtrade_exchange
    await ex.load_markets()
    # Before every entry freqtrade sets isolated margin and the leverage.
    await ex.set_margin_mode("isolated", PAIR)
    assert (await ex.set_leverage(1, PAIR))["leverage"] == 1

    entry = await ex.create_order(PAIR, "market", "buy", 0.003, None, {})
    entry = await ex.fetch_order(entry["id"], PAIR)
    assert entry["status"] == "closed" and entry["filled"] == 0.003
    trades = await ex.fetch_my_trades(PAIR, since=entry["timestamp"] - 5000)
    assert [t["order"] for t in trades] == [entry["id"]]
    assert decision_for(gateway, entry["clientOrderId"])["role"] == "entry"

    # The gateway stop (default policy: attach) reaches the broker after the fill.
    async def gateway_stop_open() -> bool:
        return any(o.get("clientAlgoId", "").startswith("gw-stop-") and o.get("algoStatus") == "NEW" for o in await broker.orders())
    deadline = asyncio.get_running_loop().time() + 5
    while not await gateway_stop_open():
        assert asyncio.get_running_loop().time() < deadline, "the gateway's stop never reached the broker"
        await asyncio.sleep(0.05)

    # freqtrade's own stop: STOP_MARKET, reduce-only, queried and cancelled with stop=True.
    stop = await ex.create_order(PAIR, "stop_market", "sell", 0.003, None, {"stopPrice": 57000, "reduceOnly": True})
    decided = decision_for(gateway, stop["clientOrderId"])
    assert (decided["decision"], decided["role"], decided["intent"]["type"]) == ("allow", "exit", "stop")
    queried = await ex.fetch_order(stop["id"], PAIR, {"stop": True})
    assert queried["status"] == "open" and queried["triggerPrice"] == 57000.0
    await ex.cancel_order(stop["id"], PAIR, {"stop": True})
    assert (await ex.fetch_order(stop["id"], PAIR, {"stop": True}))["status"] == "canceled"

    exit_order = await ex.create_order(PAIR, "market", "sell", 0.003, None, {"reduceOnly": True})
    assert (await ex.fetch_order(exit_order["id"], PAIR))["status"] == "closed"
    assert decision_for(gateway, exit_order["clientOrderId"])["role"] == "exit"
    positions = await ex.fetch_positions([PAIR])
    assert all(p["contracts"] == 0 for p in positions)
    # Flat: the gateway cancels its stop at the broker.
    deadline = asyncio.get_running_loop().time() + 5
    while await gateway_stop_open():
        assert asyncio.get_running_loop().time() < deadline, "the gateway's stop outlived the position"
        await asyncio.sleep(0.05)

    # Funding fees, as freqtrade reads them when a trade closes (income, FUNDING_FEE): the paper
    # broker charges none.
    fees = await ex.fetch_funding_history(PAIR, since=entry["timestamp"] - 5000)
    assert fees == []


async def _enter_with_stop(ex, stop_price: float) -> tuple[dict, dict]:
    await ex.load_markets()
    await ex.set_margin_mode("isolated", PAIR)
    await ex.set_leverage(1, PAIR)
    entry = await ex.create_order(PAIR, "market", "buy", 0.003)
    stop = await ex.create_order(PAIR, "stop_market", "sell", 0.003, None, {"stopPrice": stop_price, "reduceOnly": True})
    return entry, stop


async def test_freqtrade_stoploss_on_exchange_fires(freqtrade_exchange, gateway, broker):
    """The price falls through freqtrade's stop at the broker: freqtrade, polling the stop with
    ``stop: True``, sees it closed and the position flat."""
    ex = freqtrade_exchange
    entry, stop = await _enter_with_stop(ex, 57000)
    await broker.set_prices({"BTCUSDT": "56000"})
    deadline = asyncio.get_running_loop().time() + 5
    while (await ex.fetch_order(stop["id"], PAIR, {"stop": True}))["status"] != "closed":
        assert asyncio.get_running_loop().time() < deadline, "freqtrade never saw its stop fire"
        await asyncio.sleep(0.05)
    assert all(p["contracts"] == 0 for p in await ex.fetch_positions([PAIR]))
    assert [r["data"]["client_order_id"] for r in audit_records(gateway) if r["type"] == "order.decision"] == [
        entry["clientOrderId"], stop["clientOrderId"]]


async def test_freqtrade_exit_while_its_stop_is_open_is_an_exit(freqtrade_exchange, gateway):
    """freqtrade with stoploss on exchange leaves its stop open while it sells (it cancels the
    stop after the exit fills)."""
    ex = freqtrade_exchange
    await _enter_with_stop(ex, 57000)
    exit_order = await ex.create_order(PAIR, "market", "sell", 0.003, None, {"reduceOnly": True})
    assert decision_for(gateway, exit_order["clientOrderId"])["role"] == "exit"
