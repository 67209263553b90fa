"""ccxt.pro's binanceusdm through the gateway (embedded paper venue): ``watch_orders`` hears the
bot's own order from the gateway's user data stream, fed from the ledger."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

import ccxt.pro as ccxtpro
import pytest


@contextlib.asynccontextmanager
async def pro_bot(gateway):
    exchange = ccxtpro.binanceusdm({"apiKey": gateway.key_id, "secret": gateway.secret, "enableRateLimit": False,
                                    "options": {"fetchCurrencies": False}})
    api = exchange.urls["api"]
    for name, value in list(api.items()):
        if isinstance(value, str):
            api[name] = gateway.url + urlsplit(value).path
    api["ws"]["linear"] = gateway.url.replace("http://", "ws://") + "/ws"
    try:
        await exchange.load_markets()
        yield exchange
    finally:
        await exchange.close()


@pytest.mark.compat("ccxt.pro binanceusdm", "watch_orders", "works")
@pytest.mark.compat("ccxt.pro binanceusdm", "create_order", "works")
async def test_ccxt_pro_watch_orders_through_the_gateway(paper_gateway):
    async with pro_bot(paper_gateway) as bot:
        symbol = "BTC/USD:USD"
        watching = asyncio.create_task(bot.watch_orders(symbol))
        # ccxt.pro subscribes in the background and says nothing when it is listening: place a
        # resting order until one is heard (polling, with a deadline).
        placed: set[str] = set()
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            order = await bot.create_order(symbol, "limit", "buy", 0.001, 30000)
            placed.add(order["id"])
            done, _ = await asyncio.wait({watching}, timeout=0.5)
            if done:
                break
            assert asyncio.get_running_loop().time() < deadline, "ccxt.pro heard no order"
        heard = watching.result()
        assert heard and all(o["symbol"] == symbol for o in heard)
        assert {o["id"] for o in heard} <= placed
