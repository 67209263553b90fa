"""An unmodified ccxt ``binanceusdm`` against the standalone paper broker's Binance futures
dialect, over real sockets: in-process for most checks, and as a `gatewayctl paper-broker
--dialect binance-futures` process. The helpers here are shared with the gateway tests."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlencode, urlsplit

import aiohttp
import ccxt.async_support as ccxt
import pytest
from yarl import URL

from gateway.paper_broker import build_binance_paper_broker_app
from gateway.venues.paper import PaperVenue

from .support import paper_broker_subprocess

BROKER_KEY = "BNUPSTREAM0000000042"
BROKER_SECRET = "binance-upstream-secret-do-not-leak-8d1f"
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


# ---------------------------------------------------------------------------------------
# Helpers (also used by test_binance_gateway.py)


def binance_client(url: str, key: str, secret: str, **options) -> ccxt.binanceusdm:
    """ccxt's binanceusdm, unmodified, with every ``urls['api']`` entry moved to ``url`` (and
    its client-side rate limiter off: it only slows a local test down)."""
    exchange = ccxt.binanceusdm({"apiKey": key, "secret": secret, "options": options, "enableRateLimit": False})
    exchange.urls["api"] = {name: url + urlsplit(value).path for name, value in exchange.urls["api"].items()}
    return exchange


def sign(params: dict, secret: str) -> str:
    query = urlencode({**params, "timestamp": int(time.time() * 1000)})
    return query + "&signature=" + hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()


@dataclass
class BinanceBroker:
    url: str
    key: str
    secret: str

    async def set_prices(self, prices: dict) -> dict:
        """POST /_paper/prices, signed the Binance way (signature over the query and the JSON body)."""
        import orjson

        body = orjson.dumps(prices)
        query = urlencode({"timestamp": int(time.time() * 1000)})
        signature = hmac.new(self.secret.encode(), query.encode() + body, hashlib.sha256).hexdigest()
        async with aiohttp.ClientSession() as session:
            async with session.post(
                URL(f"{self.url}/_paper/prices?{query}&signature={signature}", encoded=True),
                data=body,
                headers={"X-MBX-APIKEY": self.key, "Content-Type": "application/json"},
            ) as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json()

    async def orders(self) -> list[dict]:
        """Every order the broker holds, plain and conditional."""
        found = []
        async with aiohttp.ClientSession(headers={"X-MBX-APIKEY": self.key}) as session:
            for path in ("/fapi/v1/allOrders", "/fapi/v1/allAlgoOrders"):
                async with session.get(URL(f"{self.url}{path}?{sign({}, self.secret)}", encoded=True)) as resp:
                    assert resp.status == 200, await resp.text()
                    found += await resp.json()
        return found

    def client(self, **options) -> ccxt.binanceusdm:
        return binance_client(self.url, self.key, self.secret, **options)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def broker_process(equity: str = "100000") -> Iterator[BinanceBroker]:
    """`gatewayctl paper-broker --dialect binance-futures` as its own process."""
    port = _free_port()
    args = ("--dialect", "binance-futures", "--equity", equity, "--key-id", BROKER_KEY, "--secret", BROKER_SECRET)
    with paper_broker_subprocess(port, *args):
        yield BinanceBroker(f"http://127.0.0.1:{port}", BROKER_KEY, BROKER_SECRET)


@contextlib.asynccontextmanager
async def client_of(broker: BinanceBroker, **options) -> AsyncIterator[ccxt.binanceusdm]:
    exchange = broker.client(**options)
    try:
        await exchange.load_markets()
        yield exchange
    finally:
        await exchange.close()


# ---------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
async def broker(serve_app) -> BinanceBroker:
    venue = PaperVenue(starting_equity=Decimal(100000), seed_marks=True, futures=True)
    url = await serve_app(build_binance_paper_broker_app(venue, key_id=BROKER_KEY, secret=BROKER_SECRET))
    return BinanceBroker(url, BROKER_KEY, BROKER_SECRET)


# ---------------------------------------------------------------------------------------
# Tests


async def test_markets_balance_and_time(broker):
    async with client_of(broker) as ex:
        assert {BTC, ETH} <= set(ex.markets)
        market = ex.market(BTC)
        assert market["swap"] and market["linear"] and market["precision"]["amount"] == 0.001
        assert abs(await ex.fetch_time() - time.time() * 1000) < 5000
        balance = await ex.fetch_balance()
        assert balance["USDT"] == {"free": 100000.0, "used": 0.0, "total": 100000.0}
        assert (await ex.fetch_ticker(BTC))["last"] == 60000.0


async def test_orders_of_every_kind(broker):
    async with client_of(broker) as ex:
        bought = await ex.create_order(BTC, "market", "buy", 0.01)
        assert bought["status"] == "closed" and bought["filled"] == 0.01 and bought["average"] == 60000.0
        resting = await ex.create_order(BTC, "limit", "buy", 0.01, 50000, {"clientOrderId": "my-limit-1"})
        assert resting["status"] == "open" and resting["clientOrderId"] == "my-limit-1"
        stop = await ex.create_order(BTC, "market", "sell", 0.01, None, {"stopLossPrice": 55000, "reduceOnly": True})
        assert (
            stop["status"] == "open" and stop["triggerPrice"] == 55000.0 and stop["info"]["orderType"] == "STOP_MARKET"
        )
        trailing = await ex.create_order(BTC, "market", "sell", 0.005, None, {"trailingPercent": 2, "reduceOnly": True})
        assert trailing["info"]["orderType"] == "TRAILING_STOP_MARKET"

        assert [o["id"] for o in await ex.fetch_open_orders(BTC)] == [resting["id"]]
        triggers = await ex.fetch_open_orders(BTC, params={"trigger": True})
        assert {o["id"] for o in triggers} == {stop["id"], trailing["id"]}
        assert (await ex.fetch_order(resting["id"], BTC))["status"] == "open"
        assert (await ex.fetch_order("", BTC, {"clientOrderId": "my-limit-1"}))["id"] == resting["id"]
        assert (await ex.fetch_order(stop["id"], BTC, {"trigger": True}))["status"] == "open"

        assert (await ex.cancel_order(resting["id"], BTC))["status"] == "canceled"
        await ex.cancel_order(trailing["id"], BTC, {"trigger": True})
        assert (await ex.fetch_order(trailing["id"], BTC, {"trigger": True}))["status"] == "canceled"

        # The mark falls through the stop: it fills and the position is closed.
        await broker.set_prices({"BTCUSDT": "54000"})
        assert (await ex.fetch_order(stop["id"], BTC, {"trigger": True}))["status"] == "closed"
        assert await ex.fetch_positions() == []
        history = await ex.fetch_orders(BTC)
        assert {bought["id"], resting["id"]} <= {o["id"] for o in history}

        await ex.create_order(ETH, "limit", "buy", 0.1, 2000)
        await ex.create_order(ETH, "market", "sell", 0.1, None, {"stopLossPrice": 2500})
        await ex.cancel_all_orders(ETH)
        await ex.cancel_all_orders(ETH, {"trigger": True})
        assert await ex.fetch_open_orders(ETH) == [] and await ex.fetch_open_orders(ETH, params={"trigger": True}) == []


async def test_leverage_margin_mode_shorts_and_positions(broker):
    async with client_of(broker) as ex:
        assert (await ex.fetch_leverage(BTC))["longLeverage"] == 1  # the paper default
        assert (await ex.set_leverage(5, BTC))["leverage"] == 5
        await ex.set_margin_mode("isolated", BTC)
        leverage = await ex.fetch_leverage(BTC)
        assert leverage["longLeverage"] == 5 and leverage["marginMode"] == "isolated"
        tiers = await ex.fetch_leverage_tiers([BTC])
        assert tiers[BTC][0]["maxLeverage"] == 125
        await ex.create_order(BTC, "market", "sell", 0.05)  # a short: futures allow it
        (position,) = await ex.fetch_positions()
        assert position["symbol"] == BTC and position["side"] == "short" and position["contracts"] == 0.05
        assert position["leverage"] == 5 and position["marginMode"] == "isolated" and position["entryPrice"] == 60000.0
        balance = await ex.fetch_balance()
        assert balance["USDT"]["used"] == 600.0  # 3000 notional at 5x
        await broker.set_prices({"BTC/USDT": "59000"})
        (position,) = await ex.fetch_positions()
        assert position["unrealizedPnl"] == 50.0
        with pytest.raises(ccxt.ExchangeError):  # no change of margin type with a position open
            await ex.set_margin_mode("cross", BTC)


async def test_errors_map_to_ccxt_exceptions(broker):
    async with client_of(broker) as ex:
        with pytest.raises(ccxt.InsufficientFunds):
            await ex.create_order(BTC, "market", "buy", 5)  # 300k notional at 1x on 100k
        with pytest.raises(ccxt.OrderNotFound):
            await ex.fetch_order("no-such-order", BTC)
        with pytest.raises(ccxt.OrderNotFound):
            await ex.cancel_order("no-such-order", BTC)
        for quantity in ("NaN", "-1", "1e308", "0"):
            with pytest.raises(ccxt.InvalidOrder):
                await ex.fapiPrivatePostOrder(
                    {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": quantity}
                )
        with pytest.raises(ccxt.InvalidOrder):
            await ex.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "BUY", "type": "JUMP", "quantity": "1"})
        with pytest.raises(ccxt.BadRequest):
            await ex.fapiPrivatePostLeverage({"symbol": "BTCUSDT", "leverage": 126})
        with pytest.raises(ccxt.BadSymbol):
            await ex.fapiPrivateV2GetPositionRisk({"symbol": "NOTASYMBOL"})
    assert await broker.orders() == []


async def test_bad_credentials_and_stale_requests(broker):
    async with client_of(broker) as good:
        markets = good.markets
    for options, secret in (({}, "wrong-secret"), ({"timeDifference": 120_000}, BROKER_SECRET)):
        ex = binance_client(broker.url, BROKER_KEY, secret, fetchCurrencies=False, **options)
        ex.set_markets(markets.values())
        try:
            with pytest.raises(ccxt.AuthenticationError):
                await ex.create_order(BTC, "market", "buy", 0.01)
            with pytest.raises(ccxt.AuthenticationError):
                await ex.fetch_balance()
        finally:
            await ex.close()
    assert await broker.orders() == []


async def test_prices_endpoint_needs_a_signature(broker):
    assert await broker.set_prices({"ETHUSDT": "3100", "DOGE/USDT": "0.2"}) == {"ETHUSDT": "3100", "DOGEUSDT": "0.2"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{broker.url}/_paper/prices", json={"BTCUSDT": "1"}) as resp:
            assert resp.status == 401 and (await resp.json())["code"] == -2014
        async with session.get(f"{broker.url}/health") as resp:
            assert (await resp.json())["dialect"] == "binance-futures"
    async with client_of(broker) as ex:
        assert "DOGE/USDT:USDT" in ex.markets and (await ex.fetch_ticker(ETH))["last"] == 3100.0


async def test_the_cli_process_serves_ccxt():
    with broker_process() as broker:
        await broker.set_prices({"BTCUSDT": "61000"})
        async with client_of(broker) as ex:
            order = await ex.create_order(BTC, "market", "buy", 0.002)
            assert order["status"] == "closed" and order["average"] == 61000.0
            assert len(await broker.orders()) == 1
