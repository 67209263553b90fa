"""An unmodified ccxt ``binanceusdm`` bot through the gateway, end to end over real sockets:
bot -> gateway (Binance futures dialect, risk pipeline, --venue ccxt) -> `gatewayctl paper-broker
--dialect binance-futures` process.

Leverage "within policy": the pipeline allows the tightest of ``account.max_leverage`` and
``asset_classes.crypto.leverage`` (1x in the default policy while per-asset-class rules exist;
10x before). The tests set 1x, which holds under either, and ask for 50x, which neither allows.
"""

from __future__ import annotations

import ccxt.async_support as ccxt
import pytest

from gateway.home import Home
from gateway.keys.broker import BrokerKeys
from gateway.keys.vault import Vault

from .support import start_gateway
from .test_binance_paper_broker import BTC, binance_client, broker_process, client_of

POLICY_CODES = ("max_position_pct", "asset_class_allocation", "max_exposure_pct", "max_order_notional")


@pytest.fixture
def broker():
    with broker_process() as running:
        yield running


@pytest.fixture(params=["mechanics", "default"])
async def gateway(request, broker):
    """Under the mechanics policy, and under the shipped default (crypto stops attached)."""
    home = request.getfixturevalue("gateway_home" if request.param == "mechanics" else "default_policy_home")
    BrokerKeys(Vault.open(Home.at(home.home))).set("ccxt", broker.key, broker.secret)
    running = await start_gateway(home, venue="ccxt", upstream_url=broker.url)
    try:
        yield running
    finally:
        await running.gateway.stop()


@pytest.fixture
async def bot(gateway):
    """The bot: ccxt with the gateway home's bot credential, every API URL at the gateway."""
    exchange = binance_client(gateway.url, gateway.key_id, gateway.secret)
    try:
        await exchange.load_markets()
        yield exchange
    finally:
        await exchange.close()


@pytest.mark.compat('ccxt binanceusdm', 'load_markets', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'create_order', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'cancel_order', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'fetch_balance', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'fetch_leverage', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'fetch_leverage_tiers', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'fetch_open_orders', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'fetch_order', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'fetch_positions', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'fetch_ticker', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'set_leverage', 'works')
@pytest.mark.compat('ccxt binanceusdm', 'set_margin_mode', 'works')
async def test_a_ccxt_bot_trades_through_the_gateway(gateway, bot, broker):
    assert BTC in bot.markets
    balance = await bot.fetch_balance()
    assert balance["USDT"]["total"] == 100000.0
    assert await bot.fetch_positions() == []

    assert (await bot.set_leverage(1, BTC))["leverage"] == 1
    await bot.set_margin_mode("cross", BTC)
    assert (await bot.fetch_leverage(BTC))["longLeverage"] == 1
    tiers = await bot.fetch_leverage_tiers([BTC])
    assert 1 <= tiers[BTC][0]["maxLeverage"] <= 125  # the policy's ceiling once RiskGateway reports it

    bought = await bot.create_order(BTC, "market", "buy", 0.01)
    assert bought["status"] == "closed" and bought["filled"] == 0.01
    attach = gateway.gateway.active_policy.policy.asset_classes.crypto.stop_loss.mode == "attach"
    assert ("attached a protective stop" in bought["info"].get("gatewayNote", "")) == attach
    if attach:  # the gateway placed the protective stop at the broker itself
        stops = await bot.fetch_open_orders(BTC, params={"trigger": True})
        assert [(o["side"], o["amount"]) for o in stops] == [("sell", 0.01)]
    resting = await bot.create_order(BTC, "limit", "buy", 0.011, 55000)
    assert resting["status"] == "open" and resting["price"] == 55000.0
    stop = await bot.create_order(BTC, "market", "sell", 0.005, None, {"stopLossPrice": 57000, "reduceOnly": True})
    assert stop["status"] == "open" and stop["triggerPrice"] == 57000.0

    assert [o["id"] for o in await bot.fetch_open_orders(BTC)] == [resting["id"]]
    triggers = await bot.fetch_open_orders(BTC, params={"trigger": True})
    assert stop["id"] in {o["id"] for o in triggers}
    assert (await bot.fetch_order(resting["id"], BTC))["status"] == "open"
    assert (await bot.cancel_order(resting["id"], BTC))["status"] == "canceled"
    await bot.cancel_order(stop["id"], BTC, {"trigger": True})
    assert (await bot.fetch_order(stop["id"], BTC, {"trigger": True}))["status"] == "canceled"
    assert await bot.fetch_open_orders(BTC) == []

    (position,) = await bot.fetch_positions()
    assert position["symbol"] == BTC and position["contracts"] == 0.01 and position["side"] == "long"
    assert (await bot.fetch_ticker(BTC))["last"] == 60000.0

    # What reached the broker: the three orders, any protective stop the policy attached, no more.
    upstream = await broker.orders()
    assert {o.get("orderId") or o.get("algoId") for o in upstream} >= {bought["id"], resting["id"], stop["id"]}


@pytest.mark.compat('ccxt binanceusdm', 'set_leverage', 'refused', why="leverage above the policy's limit")
async def test_leverage_above_the_policy_is_refused(bot, broker):
    with pytest.raises(ccxt.ExchangeError) as info:
        await bot.set_leverage(50, BTC)
    message = str(info.value)
    assert "50x" in message and "limit" in message and "leverage" in message
    async with client_of(broker) as direct:
        assert (await direct.fetch_leverage(BTC))["longLeverage"] == 1  # the broker never heard of it


@pytest.mark.compat('ccxt binanceusdm', 'create_order', 'refused', why="orders beyond the signed policy's limits are rejected with the rule's code")
async def test_orders_beyond_the_policy_are_refused_with_the_rule(bot, broker):
    for amount in (0.1, 1):  # 6,000 and 60,000 notional on 100,000 equity
        with pytest.raises((ccxt.InsufficientFunds, ccxt.InvalidOrder)) as info:
            await bot.create_order(BTC, "market", "buy", amount)
        assert any(code in str(info.value) for code in POLICY_CODES), str(info.value)
    assert await broker.orders() == []


async def test_bad_signatures_and_stale_requests_never_reach_the_broker(bot, gateway, broker):
    for secret, options in (("not-the-bot-secret", {}), (gateway.secret, {"timeDifference": 120_000})):
        impostor = binance_client(gateway.url, gateway.key_id, secret, fetchCurrencies=False, **options)
        impostor.set_markets(bot.markets.values())
        try:
            with pytest.raises(ccxt.AuthenticationError):
                await impostor.create_order(BTC, "market", "buy", 0.01)
            with pytest.raises(ccxt.AuthenticationError):
                await impostor.fetch_positions()
        finally:
            await impostor.close()
    stranger = binance_client(gateway.url, "GKNOTAKEY0000000000", gateway.secret)
    stranger.set_markets(bot.markets.values())
    try:
        with pytest.raises(ccxt.AuthenticationError):
            await stranger.create_order(BTC, "market", "buy", 0.01)
    finally:
        await stranger.close()
    assert await broker.orders() == []


async def test_malformed_orders_are_invalid_and_not_forwarded(bot, broker):
    for quantity in ("NaN", "-0.01", "1e308", "Infinity"):
        with pytest.raises(ccxt.InvalidOrder):
            await bot.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": quantity})
    with pytest.raises(ccxt.InvalidOrder):
        await bot.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "BUY", "type": "YOLO", "quantity": "0.01"})
    with pytest.raises(ccxt.InvalidOrder):
        await bot.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "SIDEWAYS", "type": "MARKET", "quantity": "0.01"})
    assert await broker.orders() == []


async def test_the_venues_own_leverage_is_lowered_to_the_policy_before_the_first_order(gateway, bot, broker):
    """Exchanges default high (Binance: 20x). The bot never asked for leverage; the gateway must
    still not let an order run at a setting above the policy."""
    direct = binance_client(broker.url, broker.key, broker.secret)  # the account, seen at the broker
    try:
        await direct.load_markets()
        await direct.set_leverage(20, BTC)
        limit = await gateway.gateway.pipeline.leverage_limit(None, "BTC/USDT")
        assert limit < 20
        await bot.create_order(BTC, "market", "buy", 0.001)
        assert (await direct.fetch_leverage(BTC))["longLeverage"] <= limit
    finally:
        await direct.close()
    log = (gateway.gateway.home.audit_log).read_bytes()
    assert b'"leverage.enforced"' in log
