"""On the ccxt venue, an order whose answer is lost after it reached the exchange (a 5xx from a
real proxy that forwarded it) is resolved by client id: the bot gets the order, and its retry
with the same client id is the same order, never a rejection or a duplicate."""

from __future__ import annotations

import pytest

from gateway.home import Home
from gateway.keys.broker import BrokerKeys
from gateway.keys.vault import Vault

from .faulty_proxy import AFTER, FaultyProxy
from .support import start_gateway
from .test_binance_paper_broker import BTC, binance_client, broker_process, client_of


@pytest.fixture
def broker():
    with broker_process() as running:
        yield running


async def test_a_5xx_after_placement_is_resolved_and_a_retry_is_the_same_order(gateway_home, broker, serve_app):
    proxy = FaultyProxy(broker.url)
    url = await serve_app(proxy.app())
    BrokerKeys(Vault.open(Home.at(gateway_home.home))).set("ccxt", broker.key, broker.secret)
    gw = await start_gateway(gateway_home, venue="ccxt", upstream_url=url)
    bot = binance_client(gw.url, gw.key_id, gw.secret)
    try:
        await bot.load_markets()
        proxy.fail("POST", "/fapi/v1/order", AFTER)
        params = {"newClientOrderId": "bot-ccxt-retry-1"}
        first = await bot.create_order(BTC, "limit", "buy", 0.01, 50000, params)
        again = await bot.create_order(BTC, "limit", "buy", 0.01, 50000, params)
        assert first["id"] == again["id"] and first["clientOrderId"] == "bot-ccxt-retry-1"
        async with client_of(broker) as direct:
            at_exchange = await direct.fetch_open_orders(BTC)
        assert [o["clientOrderId"] for o in at_exchange] == ["bot-ccxt-retry-1"]
        assert str(gw.gateway.portfolio.book("BTC/USDT").pending_buy_qty) == "0.01"
    finally:
        await bot.close()
        await gw.gateway.stop()
