"""Binance USDⓈ-M's user data stream served by the futures paper broker: the listenKey lifecycle
and the websocket, read by ccxt.pro's binanceusdm (``watch_orders``, ``watch_positions``) and by
a bare aiohttp websocket, over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal
from urllib.parse import urlsplit

import aiohttp
import ccxt.pro as ccxtpro
import pytest

from gateway.dialects.binance_user_stream import listen_keys
from gateway.dialects import binance_futures
from gateway.paper_broker import build_binance_paper_broker_app
from gateway.venues.paper import PaperVenue

from .test_binance_paper_broker import BROKER_KEY, BROKER_SECRET, BTC, BinanceBroker

KEY_HEADERS = {"X-MBX-APIKEY": BROKER_KEY}


@pytest.fixture
async def served(serve_app):
    venue = PaperVenue(starting_equity=Decimal(100000), seed_marks=True, futures=True)
    app = build_binance_paper_broker_app(venue, key_id=BROKER_KEY, secret=BROKER_SECRET)
    url = await serve_app(app)
    return BinanceBroker(url, BROKER_KEY, BROKER_SECRET), app[binance_futures.STATE]


@contextlib.asynccontextmanager
async def pro_client(broker: BinanceBroker):
    """ccxt.pro's binanceusdm, unmodified, REST and websocket URLs moved to the paper broker."""
    exchange = ccxtpro.binanceusdm({"apiKey": broker.key, "secret": broker.secret, "enableRateLimit": False})
    api = exchange.urls["api"]
    for name, value in list(api.items()):
        if isinstance(value, str):
            api[name] = broker.url + urlsplit(value).path
    api["ws"]["linear"] = broker.url.replace("http://", "ws://") + "/ws"
    try:
        await exchange.load_markets()
        yield exchange
    finally:
        await exchange.close()


async def call(method: str, url: str, headers=KEY_HEADERS):
    async with aiohttp.ClientSession(headers=headers) as session, session.request(method, url) as resp:
        return resp.status, await resp.json(content_type=None)


async def until_connected(state) -> None:
    """ccxt.pro subscribes in the background: wait (polling, with a deadline) until its socket
    is being served."""
    keys = listen_keys(state)
    deadline = asyncio.get_running_loop().time() + 10
    while not keys.open_sockets():
        assert asyncio.get_running_loop().time() < deadline, "ccxt.pro never connected"
        await asyncio.sleep(0.02)


async def until(predicate, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 5
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.02)


def cached(ex, order_id: str) -> dict | None:
    """The order as ccxt.pro's own order cache holds it (updated by every stream message)."""
    return next((o for o in (ex.orders or []) if o["id"] == order_id), None)


async def next_event(ws, kind: str | None = None) -> dict:
    while True:
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        event = json.loads(msg.data)
        if kind is None or event.get("e") == kind:
            return event


async def test_ccxt_pro_watch_orders_gets_new_fill_and_algo_updates(served):
    broker, state = served
    async with pro_client(broker) as ex:
        watcher = asyncio.create_task(ex.watch_orders(BTC))
        await until_connected(state)
        placed = await ex.create_order(BTC, "limit", "buy", 0.01, 59000)
        orders = await asyncio.wait_for(watcher, 5)
        assert orders[-1]["id"] == placed["id"] and orders[-1]["status"] == "open"
        assert orders[-1]["price"] == 59000.0 and orders[-1]["amount"] == 0.01
        await broker.set_prices({"BTCUSDT": "58900"})
        # Between two watch_orders calls, ccxt.pro keeps what arrives in its cache.
        await until(lambda: (cached(ex, placed["id"]) or {}).get("status") == "closed", "no fill arrived")
        filled = cached(ex, placed["id"])
        assert filled["filled"] == 0.01 and filled["average"] == 59000.0
        stop = await ex.create_order(BTC, "market", "sell", 0.01, None, {"triggerPrice": 55000, "reduceOnly": True})
        await until(lambda: cached(ex, stop["id"]) is not None, "no algo update arrived")
        update = cached(ex, stop["id"])
        assert update["status"] == "open" and update["triggerPrice"] == 55000.0


async def test_ccxt_pro_watch_positions_sees_the_fill(served):
    broker, state = served
    async with pro_client(broker) as ex:
        assert await ex.watch_positions([BTC]) == []  # the first call answers with a REST snapshot
        watcher = asyncio.create_task(ex.watch_positions([BTC]))
        await until_connected(state)
        await ex.create_order(BTC, "market", "sell", 0.02)
        positions = await asyncio.wait_for(watcher, 5)
    position = positions[-1]
    assert position["symbol"] == BTC and position["side"] == "short"
    assert position["contracts"] == 0.02 and position["entryPrice"] == 60000.0


async def test_listen_key_lifecycle_and_errors_in_binances_shape(served):
    broker, _ = served
    url = f"{broker.url}/fapi/v1/listenKey"
    status, opened = await call("POST", url)
    assert status == 200 and len(opened["listenKey"]) == 64
    assert await call("POST", url) == (200, opened)  # one key per API key, extended
    assert await call("PUT", url) == (200, opened)
    assert await call("DELETE", url) == (200, {})
    gone = {"code": -1125, "msg": "This listenKey does not exist."}
    assert await call("PUT", url) == (400, gone)
    assert await call("DELETE", url) == (400, gone)
    assert await call("POST", url, headers={}) == (401, {"code": -2014, "msg": "API-key format invalid."})
    status, body = await call("POST", url, headers={"X-MBX-APIKEY": "NOTTHEKEY"})
    assert (status, body["code"]) == (401, -2015)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(broker.url.replace("http", "ws") + f"/ws/{opened['listenKey']}")
    assert refused.value.status == 400
    status, fresh = await call("POST", url)
    assert status == 200 and fresh["listenKey"] != opened["listenKey"]


async def test_socket_carries_order_trade_update_and_account_update_in_binances_fields(served):
    broker, _ = served
    _, opened = await call("POST", f"{broker.url}/fapi/v1/listenKey")
    async with aiohttp.ClientSession() as session:
        ws_url = broker.url.replace("http", "ws") + f"/private/ws?listenKey={opened['listenKey']}"
        async with session.ws_connect(ws_url) as ws:
            async with broker.client() as ex:
                await ex.load_markets()
                order = await ex.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "bot-buy-1"})
            new = await next_event(ws, "ORDER_TRADE_UPDATE")
            trade = await next_event(ws, "ORDER_TRADE_UPDATE")
            account = await next_event(ws, "ACCOUNT_UPDATE")
    assert new["o"]["x"] == "NEW" and new["o"]["X"] == "NEW" and new["o"]["c"] == "bot-buy-1"
    fill = trade["o"]
    assert (fill["x"], fill["X"], fill["s"], fill["S"], fill["o"]) == ("TRADE", "FILLED", "BTCUSDT", "BUY", "MARKET")
    assert (fill["l"], fill["L"], fill["z"], fill["ap"]) == ("0.01", "60000", "0.01", "60000")
    assert str(fill["i"]) == order["id"] and fill["ps"] == "BOTH" and isinstance(fill["t"], int)
    assert {"E", "T"} <= trade.keys()
    position = account["a"]["P"][0]
    assert account["a"]["m"] == "ORDER"
    assert (position["s"], position["pa"], position["ep"], position["ps"]) == ("BTCUSDT", "0.01", "60000", "BOTH")
    assert account["a"]["B"][0]["a"] == "USDT" and Decimal(account["a"]["B"][0]["wb"]) == Decimal(100000)


async def test_stop_fire_is_algo_triggered_trade_then_finished(served):
    broker, _ = served
    _, opened = await call("POST", f"{broker.url}/fapi/v1/listenKey")
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(broker.url.replace("http", "ws") + f"/ws/{opened['listenKey']}") as ws:
            async with broker.client() as ex:
                await ex.load_markets()
                stop = await ex.create_order(BTC, "market", "buy", 0.01, None, {"triggerPrice": 61000})
                created = await next_event(ws)
                await broker.set_prices({"BTCUSDT": "61500"})
            fired = [await next_event(ws) for _ in range(3)]
    assert created["e"] == "ALGO_UPDATE" and created["o"]["X"] == "NEW" and str(created["o"]["aid"]) == stop["id"]
    assert [e["e"] for e in fired] == ["ALGO_UPDATE", "ORDER_TRADE_UPDATE", "ALGO_UPDATE"]
    assert fired[0]["o"]["X"] == "TRIGGERED" and fired[0]["o"]["ai"] == stop["id"]
    assert fired[1]["o"]["x"] == "TRADE" and fired[1]["o"]["ot"] == "STOP_MARKET" and fired[1]["o"]["L"] == "61500"
    assert fired[2]["o"]["X"] == "FINISHED" and fired[2]["o"]["aq"] == "0.01"


async def test_an_expired_listen_key_tells_its_sockets_and_closes_them(served):
    broker, state = served
    keys = listen_keys(state)
    _, opened = await call("POST", f"{broker.url}/fapi/v1/listenKey")
    keys.ttl_s = 0.3  # instead of 60 minutes
    await call("PUT", f"{broker.url}/fapi/v1/listenKey")
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(broker.url.replace("http", "ws") + f"/ws/{opened['listenKey']}") as ws:
            expired = await next_event(ws)
            closing = await asyncio.wait_for(ws.receive(), 5)
    assert expired["e"] == "listenKeyExpired" and expired["listenKey"] == opened["listenKey"]
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert await call("PUT", f"{broker.url}/fapi/v1/listenKey") == (400, {"code": -1125, "msg": "This listenKey does not exist."})


async def test_delete_closes_the_open_sockets(served):
    broker, _ = served
    _, opened = await call("POST", f"{broker.url}/fapi/v1/listenKey")
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(broker.url.replace("http", "ws") + f"/ws/{opened['listenKey']}") as ws:
            assert await call("DELETE", f"{broker.url}/fapi/v1/listenKey") == (200, {})
            closing = await asyncio.wait_for(ws.receive(), 5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
